"""Flux folders (biaskit.loaders.flux): a tiny FluxTransformer2DModel + CLIP + T5 pipeline saved
here, sampled against diffusers' FluxPipeline; the guidance embedding apart from CFG."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent))
import latent_fixtures as F  # noqa: E402

from biaskit.latent import sample_latent  # noqa: E402
from biaskit.loaders.flux import pack, unpack  # noqa: E402
from biaskit.loaders.latent import load_latent_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    torch.set_num_threads(1)
    return F.save_flux_pipeline(tmp_path_factory.mktemp("flux") / "flux")


def _diffusers(folder):
    from diffusers import FluxPipeline
    p = FluxPipeline.from_pretrained(str(folder))
    p.set_progress_bar_config(disable=True)
    return p


def test_pack_is_diffusers_pack_and_unpack_inverts_it():
    from diffusers import FluxPipeline
    z = torch.randn(2, 4, 6, 8)
    assert torch.equal(pack(z), FluxPipeline._pack_latents(z, 2, 4, 6, 8))
    assert torch.equal(unpack(pack(z), 6, 8), z)


def test_flux_embeddings_equal_diffusers_encode_prompt(flux):
    ref = _diffusers(flux)
    with torch.no_grad():
        emb, pooled, _ = ref.encode_prompt(["a dog", "blue sky"], None, device="cpu")
    e, p = load_latent_pipeline(flux).embed(["a dog", "blue sky"])
    assert e.shape == (2, 512, 32) and p.shape == (2, 16)
    assert torch.equal(e, emb) and torch.equal(p, pooled)


@pytest.mark.parametrize("w, g", [(1.0, 3.5), (4.0, 2.0)])
def test_flux_sampler_equals_diffusers_pipeline(flux, w, g):
    """Our loop on unpacked latents = FluxPipeline(guidance_scale=g, true_cfg_scale=w,
    negative_prompt="") on packed ones (w = 1: diffusers runs the conditional model alone)."""
    prompts = ["a red cat", "blue sky"]
    ref = _diffusers(flux)(prompts, num_inference_steps=4, guidance_scale=g, true_cfg_scale=w,
                           negative_prompt=["", ""] if w != 1 else None, output_type="latent",
                           height=16, width=16, generator=torch.Generator().manual_seed(3)).images
    pipe = load_latent_pipeline(flux, guidance_embed=g)
    ours = sample_latent(pipe, prompts, steps=4, guidance_scale=w, seed=3, size=16)
    assert ours["latents"].shape == (2, 4, 8, 8) and ours["images"].shape == (2, 3, 16, 16)
    err = float((pack(ours["latents"]) - ref).abs().max())
    assert err <= 1e-4, err
    other = sample_latent(load_latent_pipeline(flux, guidance_embed=g + 5), prompts, steps=4,
                          guidance_scale=w, seed=3, size=16, decode=False)
    assert not torch.allclose(other["latents"], ours["latents"], atol=1e-3)  # g is an input


def test_guidance_embed_is_refused_without_guidance_embeds(tmp_path):
    folder = F.save_flux_pipeline(tmp_path / "schnell", guidance_embeds=False)
    assert load_latent_pipeline(folder).net.unet.guidance is None
    with pytest.raises(ValueError, match="--guidance-embed applies to a guidance-distilled Flux"):
        load_latent_pipeline(folder, guidance_embed=3.5)


def test_cli_flux_probe_and_sample_with_decoded_steps(flux, tmp_path, monkeypatch, capsys):
    """Flux through the commands: probe on a caption folder, sample at --shape with the guidance
    embedding and every step's x0_hat decoded (equal to decoding the saved latent x0_hat)."""
    import json
    import numpy as np
    from biaskit.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = tmp_path / "images"
    F.write_captioned_images(images, n=4)
    assert main(["probe", str(flux), "--data", str(images), "--data-option", "size=16", "--out",
                 str(tmp_path / "p"), "--timesteps", "10,990", "--samples", "4", "--guidance-scale", "2",
                 "--guidance-embed", "2.5", "--no-plots", "--no-progress"]) == 0
    meta = json.loads((tmp_path / "p" / "metadata.json").read_text())
    assert meta["latent"]["guidance_embed"] == 2.5 and meta["latent"]["guidance_scale"] == 2.0
    assert main(["sample", str(flux), "--prompt", "a cat", "--steps", "3", "--n", "2", "--shape", "4,8,8",
                 "--guidance-embed", "2.5", "--guidance-scale", "1", "--decode-steps", "--trajectory",
                 "--out", str(tmp_path / "s"), "--no-progress"]) == 0
    z = np.load(tmp_path / "s" / "samples.npz")
    assert z["latents"].shape == (2, 4, 8, 8) and z["x0_hat_decoded"].shape == (3, 2, 3, 16, 16)
    assert z["timesteps"].dtype == np.float64 and z["timesteps"][0] == 1000.0  # s N, kept fractional
    pipe = load_latent_pipeline(flux)
    want = pipe.decode(torch.from_numpy(z["x0_hat"][1])).numpy()
    assert np.allclose(z["x0_hat_decoded"][1], want, atol=1e-5)
    ref = sample_latent(load_latent_pipeline(flux, guidance_embed=2.5), ["a cat"] * 2, steps=3,
                        guidance_scale=1.0, seed=0, size=16, decode=False)
    assert np.array_equal(z["latents"], ref["latents"].numpy())
    capsys.readouterr()
    assert main(["sample", str(flux), "--shape", "4,8,6", "--steps", "2", "--n", "1",
                 "--out", str(tmp_path / "x"), "--no-progress"]) != 0
    assert "a latent pipeline samples square latents C,h,h with C = 4" in capsys.readouterr().err
    assert main(["probe", "oracle:gmm2d", "--data", "gmm2d", "--guidance-embed", "3", "--out",
                 str(tmp_path / "o")]) != 0
    assert "--guidance-embed applies to latent pipelines" in capsys.readouterr().err


def test_flux_precomputed_embeddings_equal_the_prompt(flux):
    """--embeddings on Flux: T5 states (512, 32) and CLIP pooled (16,) read back sample the same
    latents as the prompt, exactly; a wrong T5 width is refused."""
    from biaskit.loaders.embeddings import register_embeddings
    pipe = load_latent_pipeline(flux)
    (e, p), (ne, npool) = pipe.embed(["a dog"]), pipe.embed([""])
    table = {"prompt_embeds": e[0], "pooled_prompt_embeds": p[0], "negative_prompt_embeds": ne[0],
             "negative_pooled_prompt_embeds": npool[0]}
    ref = sample_latent(pipe, ["a dog"] * 2, steps=3, guidance_scale=3.0, seed=2, size=16, decode=False)
    pipe2 = load_latent_pipeline(flux)
    keys = register_embeddings(pipe2, table)
    ours = sample_latent(pipe2, keys * 2, steps=3, guidance_scale=3.0, seed=2, size=16, decode=False)
    assert torch.equal(ours["latents"], ref["latents"])
    with pytest.raises(ValueError, match=r"prompt_embeds has shape \(512, 16\); .*D = 32"):
        register_embeddings(load_latent_pipeline(flux), {**table, "prompt_embeds": torch.zeros(512, 16)})
