"""SD3 / SD3.5 folders with a T5 text encoder (text_encoder_3, tokenizer_3): a tiny random
T5EncoderModel and a Unigram tokenizer written here, checked against diffusers' own pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent))
import latent_fixtures as F  # noqa: E402

from biaskit.latent import sample_latent  # noqa: E402
from biaskit.loaders.latent import load_latent_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def sd3t5(tmp_path_factory):
    torch.set_num_threads(1)
    return F.save_sd3_pipeline(tmp_path_factory.mktemp("sd3t5") / "sd3", t5=True)


def _diffusers(folder):
    from diffusers import StableDiffusion3Pipeline
    p = StableDiffusion3Pipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


def test_t5_embeddings_equal_diffusers_encode_prompt(sd3t5):
    ref = _diffusers(sd3t5)
    assert ref.text_encoder_3 is not None
    with torch.no_grad():  # as the pipeline's __call__ (sdpa picks another kernel with grad on)
        emb, neg, pooled, neg_pooled = ref.encode_prompt(["a dog", "blue sky"], None, None,
                                                         device="cpu", negative_prompt=["", ""])
    pipe = load_latent_pipeline(sd3t5)
    assert len(pipe.text_encoder) == 3 and any("text_encoder_3" in k for k in pipe.sha256)
    e, p = pipe.embed(["a dog", "blue sky"])
    assert e.shape == (2, 16 + 256, 32)
    assert torch.equal(e, emb) and torch.equal(p, pooled)
    n, _ = pipe.embed([""])
    assert torch.equal(n[0], neg[0])
    assert e[:, 16:].abs().max() > 1e-3  # the T5 tokens are not the zeros of a folder without T5


@pytest.mark.parametrize("w", [5.0, 1.0])
def test_sd3_t5_sampler_equals_diffusers_pipeline(sd3t5, w):
    ref = _diffusers(sd3t5)(["a red cat", "blue sky"], num_inference_steps=4, guidance_scale=w,
                            output_type="latent", height=16, width=16,
                            generator=torch.Generator().manual_seed(4)).images
    ours = sample_latent(load_latent_pipeline(sd3t5), ["a red cat", "blue sky"], steps=4,
                         guidance_scale=w, seed=4)
    err = float((ours["latents"] - ref).abs().max())
    assert err <= 1e-4, err
