"""Precomputed text embeddings for a latent text-conditioned pipeline (``--embeddings FILE``).

A file (``.safetensors``; ``.pt`` / ``.pth`` / ``.bin`` read with ``torch.load(weights_only=True)``;
``.npz`` read without pickles) of named tensors, the names those of diffusers' pipeline arguments:

- ``prompt_embeds`` (L, D) or (1, L, D): one condition for every image;
- ``prompt_embeds/FILE_NAME`` (L, D): the condition of the image FILE_NAME (its path relative to
  the data folder, as ``metadata.jsonl``'s ``file_name``), one per image;
- ``pooled_prompt_embeds`` (D') and ``pooled_prompt_embeds/FILE_NAME``: the pooled embedding
  beside each, for the models that take one (SD3, Flux; not SD);
- ``negative_prompt_embeds`` / ``negative_pooled_prompt_embeds``: the null condition of
  classifier-free guidance (default: the text encoders' embedding of the empty prompt).

D must be the network's text width (SD: ``cross_attention_dim``; SD3 / Flux:
``joint_attention_dim``), D' its ``pooled_projection_dim``, and every L the same (conditional and
null rows are batched together). A precomputed condition is named by a :class:`Precomputed` key
in the pipeline's embedding table, so it never collides with a prompt text.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import safeload

__all__ = ["Precomputed", "read_embeddings", "register_embeddings", "EMBEDDING_SUFFIXES"]

EMBEDDING_SUFFIXES = safeload.SAFETENSORS_SUFFIXES + safeload.PICKLE_SUFFIXES + (".npz",)
_TEXT, _POOLED, _NULL = "prompt_embeds", "pooled_prompt_embeds", "negative_"


@dataclass(frozen=True)
class Precomputed:
    """The key of a precomputed condition (``name``: ``prompt_embeds`` or
    ``prompt_embeds/FILE_NAME``) in :attr:`LatentPipeline._embeddings`."""

    name: str

    def __str__(self) -> str:
        return f"<embeddings {self.name}>"


def read_embeddings(path) -> dict[str, torch.Tensor]:
    """name -> float32 tensor of an embeddings file (module docstring), read safely."""
    path = Path(path).expanduser()
    if path.suffix.lower() not in EMBEDDING_SUFFIXES:
        raise ValueError(f"--embeddings {path}: unsupported file type {path.suffix!r}; give "
                         f"{', '.join(EMBEDDING_SUFFIXES)}")
    if not path.is_file():
        raise FileNotFoundError(f"--embeddings {path}: no such file")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                table = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        except ValueError as e:
            raise ValueError(f"--embeddings {path}: not an array archive without pickles: {e}") from None
    else:
        table = safeload.read_state_dict(path)
    return {k: v.float() for k, v in table.items()}


def _expected(pipe) -> tuple[int, int | None]:
    """(text width D, pooled width D' or None) the pipeline's network takes."""
    cfg = pipe.net.unet.config
    keywords = pipe.net.keywords
    if "encoder_hidden_states" not in keywords:
        raise ValueError(f"--embeddings applies to text-conditioned pipelines; {pipe.folder} is "
                         "class-conditional (give labels or --class-label)")
    width = getattr(cfg, "joint_attention_dim", None) or getattr(cfg, "cross_attention_dim", None)
    pooled = getattr(cfg, "pooled_projection_dim", None) if "pooled_projections" in keywords else None
    return int(width), (None if pooled is None else int(pooled))


def _check(name: str, v: torch.Tensor, dims: int, width: int, path) -> torch.Tensor:
    v = v[0] if v.ndim == dims + 1 and v.shape[0] == 1 else v
    what = "(L, D) with D" if dims == 2 else "(D',) with D'"
    if v.ndim != dims or v.shape[-1] != width:
        raise ValueError(f"--embeddings {path}: {name} has shape {tuple(v.shape)}; the model takes "
                         f"{what} = {width}")
    return v


def register_embeddings(pipe, table: dict, files: list[str] | None = None, path="FILE") -> list:
    """Check ``table`` (:func:`read_embeddings`) against ``pipe``'s network and put its conditions
    in ``pipe``'s embedding table; returns the condition key of each image of ``files`` (relative
    names; None: one condition for all, a list of one key). The null condition becomes
    ``negative_*`` when given. ValueError (one line) for a wrong shape, a missing image or pooled
    embedding, a pooled one the model does not take, or an unknown name."""
    width, pooled_width = _expected(pipe)
    unknown = sorted(k for k in table if k.removeprefix(_NULL).split("/")[0] not in (_TEXT, _POOLED)
                     or (k.startswith(_NULL) and "/" in k))
    if unknown:
        raise ValueError(f"--embeddings {path}: unknown name {unknown[0]!r}; expected prompt_embeds, "
                         "prompt_embeds/FILE_NAME, pooled_prompt_embeds[/FILE_NAME], negative_prompt_embeds, "
                         "negative_pooled_prompt_embeds")
    if pooled_width is None and any(_POOLED in k for k in table):
        raise ValueError(f"--embeddings {path}: this model takes no pooled embedding; drop "
                         f"{next(k for k in table if _POOLED in k)!r}")
    per_image = sorted(k for k in table if k.startswith(_TEXT + "/"))
    if per_image and _TEXT in table:
        raise ValueError(f"--embeddings {path}: give prompt_embeds (one for all) or "
                         "prompt_embeds/FILE_NAME (per image), not both")
    if files is None or not per_image:
        if _TEXT not in table:
            raise ValueError(f"--embeddings {path}: no prompt_embeds (one condition for all)"
                             + ("; the per-image ones apply to an image folder" if per_image else ""))
        names = [_TEXT]
    else:
        missing = [f for f in files if f"{_TEXT}/{f}" not in table]
        if missing:
            raise ValueError(f"--embeddings {path}: no prompt_embeds/{missing[0]} ({len(missing)} of "
                             f"{len(files)} images have none)")
        names = [f"{_TEXT}/{f}" for f in dict.fromkeys(files)]
    if _NULL + _POOLED in table and _NULL + _TEXT not in table:
        raise ValueError(f"--embeddings {path}: give negative_prompt_embeds and "
                         "negative_pooled_prompt_embeds together")
    keys = names + ([_NULL + _TEXT] if _NULL + _TEXT in table else [])
    lengths = set()
    for key in keys:
        parts = [_check(key, table[key], 2, width, path)]
        if pooled_width is not None:
            pkey = key.replace(_TEXT, _POOLED, 1)
            if pkey not in table:
                raise ValueError(f"--embeddings {path}: {key} has no {pkey} (this model takes a pooled "
                                 f"embedding of width {pooled_width})")
            parts.append(_check(pkey, table[pkey], 1, pooled_width, path))
        lengths.add(parts[0].shape[0])
        pipe._embeddings[Precomputed(key)] = tuple(parts)
    if len(lengths) > 1:
        raise ValueError(f"--embeddings {path}: the embeddings have token lengths "
                         f"{sorted(lengths)}; they must all have one length L")
    if _NULL + _TEXT in table:
        pipe.null_condition = Precomputed(_NULL + _TEXT)
    else:
        null = pipe.embed([pipe.null_condition])[0].shape[1]
        if lengths != {null}:
            raise ValueError(f"--embeddings {path}: the embeddings have {lengths.pop()} tokens and the "
                             f"empty prompt's {null}; give negative_prompt_embeds of that length too")
    if files is None:
        return [Precomputed(_TEXT)]
    return [Precomputed(_TEXT if not per_image else f"{_TEXT}/{f}") for f in files]
