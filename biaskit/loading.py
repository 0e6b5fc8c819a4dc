"""``biaskit.load(spec)``: any model spec -> :class:`biaskit.Denoiser`.

Specs: ``oracle:NAME`` (exact posterior mean of a built-in dataset's distribution, see
:mod:`biaskit.oracle`), a biaskit run directory (holds ``biaskit.json``, see
:mod:`biaskit.checkpoint`), or a third-party checkpoint (diffusers folder, ADM ``.pt``, plugin;
see :mod:`biaskit.thirdparty`).
"""

from __future__ import annotations

from pathlib import Path


def load(spec, **kwargs):
    """Build the denoiser that ``spec`` names; keyword options go to the format's loader."""
    from .denoiser import Denoiser
    if isinstance(spec, Denoiser):
        return spec
    text = str(spec)
    if text.startswith("oracle:"):
        from .oracle import from_spec
        return from_spec(text, **kwargs)
    path = Path(text)
    if path.is_dir() and (path / "biaskit.json").is_file():
        from .checkpoint import load_run
        return load_run(path, **kwargs)
    from .thirdparty import load_thirdparty
    return load_thirdparty(text, **kwargs)
