"""The text encoders of latent pipelines, read from their folders (weights through
:mod:`biaskit.safeload`, tokenizers from local files only), and SD3's conditions computed from them
as diffusers' StableDiffusion3Pipeline computes them."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import safeload
from .build import read_json

__all__ = ["load_text_encoder", "sd3_embeddings", "SD3_T5_TOKENS"]

SD3_T5_TOKENS = 256  # diffusers' max_sequence_length default: the zero T5 states of a pipeline without T5


@torch.no_grad()
def sd3_embeddings(tokenizers, encoders, prompts: list[str], config, device) -> tuple:
    """SD3's conditions as diffusers' StableDiffusion3Pipeline.encode_prompt computes them without
    a T5 encoder: each CLIP's penultimate hidden state (both tokenized to the first tokenizer's
    length) concatenated on features and zero-padded to ``config.joint_attention_dim``, then 256
    zero T5 tokens appended; pooled_projections = both CLIPs' projected pooled outputs
    concatenated. Returns (prompt_embeds (P, L + 256, D), pooled (P, D'))."""
    states, pooled = [], []
    length = tokenizers[0].model_max_length
    for tok, enc in zip(tokenizers, encoders):
        ids = tok(prompts, padding="max_length", max_length=length, truncation=True,
                  return_tensors="pt").input_ids.to(device)
        out = enc(ids, output_hidden_states=True)
        pooled.append(out[0])
        states.append(out.hidden_states[-2])
    clip = torch.cat(states, -1)
    t5 = torch.zeros(len(prompts), SD3_T5_TOKENS, config.joint_attention_dim, device=device, dtype=clip.dtype)
    clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5], -2), torch.cat(pooled, -1)


def load_text_encoder(folder: Path, map_location="cpu", name: str = "text_encoder",
                      tok_name: str = "tokenizer"):
    """(CLIP text model, its CLIPTokenizer, [weights file]) of ``folder / name`` and
    ``folder / tok_name``; ValueError without transformers or for another architecture."""
    try:
        import transformers
    except ImportError:
        raise ValueError(f"{folder} has a text encoder: install transformers (pip install "
                         "'biaskit[latent]')") from None
    config = read_json(folder / name / "config.json")
    arch = (config.get("architectures") or ["CLIPTextModel"])[0]
    if arch not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        raise ValueError(f"{folder / name} holds a {arch!r}; biaskit loads CLIP text encoders")
    model = getattr(transformers, arch)(transformers.CLIPTextConfig(**{
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}))
    weights = [folder / name / n for n in ("model.safetensors", "pytorch_model.bin")]
    found = [w for w in weights if w.is_file()]
    if not found:
        raise FileNotFoundError(f"no text encoder weights in {folder / name}: expected "
                                f"{' or '.join(w.name for w in weights)}")
    sd = safeload.read_state_dict(found[0], map_location)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    safeload.load_into(model, sd, strict=False, what=f"weights in {found[0].name}")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder / tok_name), local_files_only=True)
    return model.eval().requires_grad_(False), tokenizer, found
