"""The sampler table: one frozen :class:`SamplerSpec` per sampler, looked up by name.

A row carries a sampler's facts, so that :func:`biaskit.sampling.sample` reads them and branches
on no name:

  function  ``f(model, x, grid, *, generator, callback, progress, **options) -> x0`` (the common
            signature: :class:`~biaskit.sampling.chain.ModelCall`, x (B, ...) at the noisiest
            kept step of ``grid``, returns x0 (B, ...)).
  options   which of ``sample()``'s keyword arguments it takes (:data:`OPTIONS`).
  calls     ``calls(grid, parameterization, options) -> int``: model calls of one chain on
            ``grid`` (n kept steps: n for a one-call-per-step sampler, 2n - 1 for Heun).
  grid      which noise levels it walks (:data:`GRIDS`):
              ``schedule``   the kept steps of ``spacing`` on the denoiser's schedule;
              ``process``    a process model's own grid (``on_process_grid``: EDM's Karras
                             sigmas, the shifted flow times), else the kept steps;
              ``scheduler``  a diffusers scheduler's own sigmas on a model evaluable at any
                             logsnr (``with_schedule``), else the kept steps.
  models    which models it samples (:data:`MODELS`): ``any`` (every model, read as a VP
            denoiser) or ``process`` (only models evaluable at any noise level,
            ``on_process_grid``).

The sampler modules register their rows (:mod:`.native`, :mod:`.ode`,
:mod:`.diffusers_adapter`, :mod:`.process_schedulers`); a family of names that no table lists
(any diffusers ``*Scheduler`` class name) is answered by a resolver those modules register.
Adding a sampler is one function and one ``register(SamplerSpec(...))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .chain import Grid

__all__ = ["SamplerSpec", "OPTIONS", "GRIDS", "MODELS", "register", "unregister",
           "register_family", "lookup", "sampler_names", "one_call_per_step"]

OPTIONS = ("eta", "variance", "scheduler_kwargs")
GRIDS = ("schedule", "process", "scheduler")
MODELS = ("any", "process")


def one_call_per_step(grid: Grid, parameterization: str, options: dict) -> int:
    """n model calls for n kept steps."""
    return grid.n


@dataclass(frozen=True)
class SamplerSpec:
    """One sampler's facts (see the module docstring)."""

    name: str
    function: Callable
    options: tuple[str, ...] = ()
    calls: Callable[[Grid, str, dict], int] = one_call_per_step
    grid: str = "schedule"
    models: str = "any"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"a sampler's name is a non-empty string, got {self.name!r}")
        if not callable(self.function) or not callable(self.calls):
            raise ValueError(f"sampler {self.name}: function and calls must be callable")
        object.__setattr__(self, "options", tuple(self.options))
        unknown = [o for o in self.options if o not in OPTIONS]
        if unknown:
            raise ValueError(f"sampler {self.name}: unknown option {unknown[0]!r}; valid: {', '.join(OPTIONS)}")
        if self.grid not in GRIDS:
            raise ValueError(f"sampler {self.name}: unknown grid kind {self.grid!r}; valid: {', '.join(GRIDS)}")
        if self.models not in MODELS:
            raise ValueError(f"sampler {self.name}: unknown models {self.models!r}; valid: {', '.join(MODELS)}")

    def own_options(self, **values) -> dict:
        """The keyword arguments of ``function`` among ``sample()``'s ``values``."""
        return {k: values[k] for k in self.options}


_TABLE: dict[str, SamplerSpec] = {}
_FAMILIES: list[tuple[Callable[[str], SamplerSpec | None], str | None]] = []


def register(spec: SamplerSpec) -> SamplerSpec:
    """Add ``spec`` to the table (ValueError when its name is taken); returns it."""
    if spec.name in _TABLE:
        raise ValueError(f"sampler {spec.name!r} is already registered")
    _TABLE[spec.name] = spec
    return spec


def unregister(name: str) -> SamplerSpec:
    """Remove and return the row of ``name`` (KeyError when there is none)."""
    return _TABLE.pop(name)


def register_family(resolve: Callable[[str], SamplerSpec | None], described: str | None = None) -> None:
    """``resolve(name)`` answers names no row lists (None: not one of its family), tried in the
    order of registration; ``described`` names the family in the unknown-name error."""
    _FAMILIES.append((resolve, described))


def lookup(name: str) -> SamplerSpec:
    """The row of ``name``, from the table or a family; ValueError listing the valid names."""
    spec = _TABLE.get(name) if isinstance(name, str) else None
    if spec is None and isinstance(name, str):
        spec = next((s for s in (resolve(name) for resolve, _ in _FAMILIES) if s is not None), None)
    if spec is None:
        families = "".join(f" or {described}" for _, described in _FAMILIES if described)
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(sampler_names())}{families}")
    return spec


def sampler_names() -> list[str]:
    """Every row's name, in the order of registration."""
    return list(_TABLE)
