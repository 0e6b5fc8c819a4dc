"""The text encoders of latent pipelines, read from their folders (weights through
:mod:`biaskit.safeload`, tokenizers from local files only), and SD3's conditions computed from them
as diffusers' StableDiffusion3Pipeline computes them."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import safeload
from .build import read_json

__all__ = ["load_text_encoder", "sd3_embeddings", "flux_embeddings", "t5_states", "SD3_T5_TOKENS"]

SD3_T5_TOKENS = 256  # diffusers' max_sequence_length default: the zero T5 states of a pipeline without T5


@torch.no_grad()
def sd3_embeddings(tokenizers, encoders, prompts: list[str], config, device) -> tuple:
    """SD3's conditions as diffusers' StableDiffusion3Pipeline.encode_prompt computes them: each
    CLIP's penultimate hidden state (both tokenized to the first tokenizer's length) concatenated
    on features and zero-padded to ``config.joint_attention_dim``, then the T5 tokens appended:
    with a third encoder (T5EncoderModel) its last hidden state on the ids padded to
    :data:`SD3_T5_TOKENS`, without one that many zero tokens; pooled_projections = both CLIPs'
    projected pooled outputs concatenated. Returns (prompt_embeds (P, L + 256, D), pooled (P, D'))."""
    states, pooled = [], []
    length = tokenizers[0].model_max_length
    for tok, enc in zip(tokenizers[:2], encoders[:2]):
        ids = tok(prompts, padding="max_length", max_length=length, truncation=True,
                  return_tensors="pt").input_ids.to(device)
        out = enc(ids, output_hidden_states=True)
        pooled.append(out[0])
        states.append(out.hidden_states[-2])
    clip = torch.cat(states, -1)
    if len(encoders) > 2:
        t5 = t5_states(tokenizers[2], encoders[2], prompts, SD3_T5_TOKENS, device).to(clip.dtype)
    else:
        t5 = torch.zeros(len(prompts), SD3_T5_TOKENS, config.joint_attention_dim, device=device,
                         dtype=clip.dtype)
    clip = torch.nn.functional.pad(clip, (0, t5.shape[-1] - clip.shape[-1]))
    return torch.cat([clip, t5], -2), torch.cat(pooled, -1)


@torch.no_grad()
def t5_states(tokenizer, encoder, prompts: list[str], length: int, device) -> torch.Tensor:
    """The T5 encoder's last hidden state (P, length, D) on the prompts' ids padded (and truncated)
    to ``length``, end-of-sequence token added, no attention mask: as diffusers' SD3 and Flux
    pipelines call it."""
    ids = tokenizer(prompts, padding="max_length", max_length=length, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids.to(device)
    return encoder(ids)[0]


_ARCHS = {"CLIPTextModel": ("CLIPTextConfig", "CLIPTokenizer"),
          "CLIPTextModelWithProjection": ("CLIPTextConfig", "CLIPTokenizer"),
          "T5EncoderModel": ("T5Config", "T5TokenizerFast")}


def load_text_encoder(folder: Path, map_location="cpu", name: str = "text_encoder",
                      tok_name: str = "tokenizer"):
    """(text model, its tokenizer, [weights file]) of ``folder / name`` and ``folder / tok_name``:
    a CLIP text model (CLIPTokenizer) or a T5 encoder (T5TokenizerFast, its ``tokenizer.json``);
    ValueError without transformers or for another architecture."""
    try:
        import transformers
    except ImportError:
        raise ValueError(f"{folder} has a text encoder: install transformers (pip install "
                         "'biaskit[latent]')") from None
    config = read_json(folder / name / "config.json")
    arch = (config.get("architectures") or ["CLIPTextModel"])[0]
    if arch not in _ARCHS:
        raise ValueError(f"{folder / name} holds a {arch!r}; biaskit loads text encoders "
                         f"{', '.join(_ARCHS)}")
    config_cls, tok_cls = (getattr(transformers, c) for c in _ARCHS[arch])
    model = getattr(transformers, arch)(config_cls(**{
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}))
    weights = [folder / name / n for n in ("model.safetensors", "pytorch_model.bin")]
    found = [w for w in weights if w.is_file()]
    if not found:
        raise FileNotFoundError(f"no text encoder weights in {folder / name}: expected "
                                f"{' or '.join(w.name for w in weights)}")
    sd = safeload.read_state_dict(found[0], map_location)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    if arch == "T5EncoderModel" and "shared.weight" in sd:  # tied to the encoder's token embedding
        sd.setdefault("encoder.embed_tokens.weight", sd["shared.weight"])
    safeload.load_into(model, sd, strict=arch == "T5EncoderModel", what=f"weights in {found[0].name}")
    tokenizer = tok_cls.from_pretrained(str(folder / tok_name), local_files_only=True)
    return model.eval().requires_grad_(False), tokenizer, found


@torch.no_grad()
def flux_embeddings(tokenizers, encoders, prompts: list[str], length: int, device) -> tuple:
    """Flux's conditions as diffusers' FluxPipeline.encode_prompt computes them: prompt_embeds the
    T5's last hidden state on ids padded to ``length`` (512), pooled_projections the CLIP text
    model's pooled output on ids padded to its tokenizer's length. Returns ((P, length, D), (P, D'))."""
    ids = tokenizers[0](prompts, padding="max_length", max_length=tokenizers[0].model_max_length,
                        truncation=True, return_tensors="pt").input_ids.to(device)
    pooled = encoders[0](ids, output_hidden_states=False).pooler_output
    return t5_states(tokenizers[1], encoders[1], prompts, length, device), pooled
