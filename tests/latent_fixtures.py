"""Tiny random-weight latent pipelines built here from the diffusers and transformers classes and
saved with ``save_pretrained`` (nothing is downloaded): an SD-like one (UNet2DConditionModel,
AutoencoderKL, CLIPTextModel with a character-level CLIP tokenizer written below)."""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

LETTERS = string.ascii_lowercase


def write_clip_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer whose tokens are single letters (no merges), and a few merges' worth
    of nothing else: vocab.json, merges.txt, then CLIPTokenizer.save_pretrained."""
    from transformers import CLIPTokenizer
    folder.mkdir(parents=True, exist_ok=True)
    tokens = ["<|startoftext|>", "<|endoftext|>", "!"] + list(LETTERS) + [c + "</w>" for c in LETTERS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16,
                        pad_token="!")
    tok.save_pretrained(str(folder))


def sd_components(seed: int = 0, prediction_type: str = "epsilon"):
    """(unet, vae, text_encoder, tokenizer folder maker, scheduler) of a tiny SD-like pipeline."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
                                block_out_channels=(8, 16), norm_num_groups=4, cross_attention_dim=16,
                                attention_head_dim=2,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=16,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), scaling_factor=0.7)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=3 + 2 * len(LETTERS), hidden_size=16,
                                        intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                        max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
                                        pad_token_id=2))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                              prediction_type=prediction_type)
    return unet.eval(), vae.eval(), text.eval(), scheduler


def save_sd_pipeline(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """A tiny StableDiffusionPipeline saved to ``folder`` (no safety checker)."""
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTokenizer
    unet, vae, text, scheduler = sd_components(seed, prediction_type)
    write_clip_tokenizer(folder / "_tok")
    tok = CLIPTokenizer.from_pretrained(str(folder / "_tok"))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(str(folder))
    return folder


def write_captioned_images(folder: Path, n: int = 6, size: int = 16, layout: str = "txt",
                           seed: int = 0) -> list[str]:
    """n random RGB PNGs with captions, as a ``.txt`` beside each image or a ``metadata.jsonl``."""
    import numpy as np
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    captions, rows = [], []
    for i in range(n):
        name = f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / name)
        caption = ["a red cat", "a dog", "blue sky"][i % 3]
        captions.append(caption)
        if layout == "txt":
            (folder / f"img{i:02d}.txt").write_text(caption + "\n")
        else:
            rows.append(json.dumps({"file_name": name, "text": caption}))
    if layout == "jsonl":
        (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return captions


def save_dit_pipeline(folder: Path, seed: int = 0) -> Path:
    """A tiny DiTPipeline (class-conditional DiTTransformer2DModel with learned sigma: 2C outputs,
    1000 classes and the null class 1000, as diffusers' DiT pipeline assumes) saved to ``folder``."""
    from diffusers import DDIMScheduler, DiTPipeline, DiTTransformer2DModel
    _, vae, _, _ = sd_components(seed)
    torch.manual_seed(seed + 1)
    dit = DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=4, in_channels=4,
                                out_channels=8, num_layers=1, sample_size=8, patch_size=2,
                                num_embeds_ada_norm=1000)
    scheduler = DDIMScheduler(beta_schedule="linear", clip_sample=False)
    DiTPipeline(transformer=dit.eval(), vae=vae, scheduler=scheduler).save_pretrained(str(folder))
    return folder


def write_t5_tokenizer(folder: Path) -> None:
    """A T5 (Unigram) tokenizer whose pieces are the single letters, with and without the word
    marker, written by transformers' tokenizers-backed T5 tokenizer (no sentencepiece model)."""
    from transformers import T5TokenizerFast
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    pieces += [(c, -3.0) for c in LETTERS] + [("\u2581" + c, -2.5) for c in LETTERS]
    T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=512).save_pretrained(str(folder))


def t5_encoder(seed: int = 0, d_model: int = 32):
    """A tiny random T5EncoderModel on :func:`write_t5_tokenizer`'s vocabulary."""
    from transformers import T5Config, T5EncoderModel
    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=4 + 2 * len(LETTERS), d_model=d_model, d_ff=32, d_kv=8,
                                   num_layers=1, num_heads=2, relative_attention_num_buckets=8,
                                   relative_attention_max_distance=16, pad_token_id=0,
                                   eos_token_id=1, decoder_start_token_id=0)).eval()


def save_sd3_pipeline(folder: Path, seed: int = 0, t5: bool = False) -> Path:
    """A tiny StableDiffusion3Pipeline (SD3Transformer2DModel, two CLIPTextModelWithProjection
    encoders, a T5 encoder when ``t5`` else none, FlowMatchEulerDiscreteScheduler with shift 3, a
    VAE with a shift factor)."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel,
                           StableDiffusion3Pipeline)
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer
    torch.manual_seed(seed)
    dit = SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=4, num_layers=1,
                                attention_head_dim=4, num_attention_heads=2, joint_attention_dim=32,
                                caption_projection_dim=8, pooled_projection_dim=32, out_channels=4,
                                pos_embed_max_size=8)
    encoders = [CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=3 + 2 * len(LETTERS), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
        pad_token_id=2, projection_dim=16)).eval() for _ in range(2)]
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=16,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), scaling_factor=1.5,
                        shift_factor=0.1)
    write_clip_tokenizer(folder / "_tok")
    tok = CLIPTokenizer.from_pretrained(str(folder / "_tok"))
    pipe = StableDiffusion3Pipeline(transformer=dit.eval(), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                    vae=vae.eval(), text_encoder=encoders[0], tokenizer=tok,
                                    text_encoder_2=encoders[1], tokenizer_2=tok,
                                    text_encoder_3=t5_encoder(seed + 2) if t5 else None,
                                    tokenizer_3=_t5_tokenizer(folder / "_t5tok") if t5 else None)
    pipe.save_pretrained(str(folder))
    return folder


def _t5_tokenizer(folder: Path):
    from transformers import T5TokenizerFast
    write_t5_tokenizer(folder)
    return T5TokenizerFast.from_pretrained(str(folder))


def save_flux_pipeline(folder: Path, seed: int = 0, guidance_embeds: bool = True) -> Path:
    """A tiny FluxPipeline: FluxTransformer2DModel (16 = 4 x 4 packed channels, a guidance
    embedding when ``guidance_embeds``), CLIPTextModel (pooled 16), T5 (d_model 32), a VAE with a
    shift factor, FlowMatchEulerDiscreteScheduler with Flux's resolution-dependent shift."""
    from diffusers import (AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           FluxTransformer2DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer
    torch.manual_seed(seed)
    flux = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=16, guidance_embeds=guidance_embeds,
                                  axes_dims_rope=(2, 2, 4))
    clip = CLIPTextModel(CLIPTextConfig(vocab_size=3 + 2 * len(LETTERS), hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=16,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=2))
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=16,
                        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
                        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), scaling_factor=0.6,
                        shift_factor=0.05)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=4, max_image_seq_len=64)
    write_clip_tokenizer(folder / "_tok")
    pipe = FluxPipeline(scheduler=scheduler, vae=vae.eval(), text_encoder=clip.eval(),
                        tokenizer=CLIPTokenizer.from_pretrained(str(folder / "_tok")),
                        text_encoder_2=t5_encoder(seed + 3), tokenizer_2=_t5_tokenizer(folder / "_t5tok"),
                        transformer=flux.eval())
    pipe.save_pretrained(str(folder))
    return folder
