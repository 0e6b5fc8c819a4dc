"""Precomputed text embeddings (--embeddings, biaskit.loaders.embeddings): the same conditions as
the text encoders give exactly, and one-line errors for files that do not fit the model."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers")
sys.path.insert(0, str(Path(__file__).parent))
import latent_fixtures as F  # noqa: E402

from biaskit.latent import load_captioned, probe_latent, sample_latent  # noqa: E402
from biaskit.loaders.embeddings import Precomputed, read_embeddings, register_embeddings  # noqa: E402
from biaskit.loaders.latent import load_latent_pipeline  # noqa: E402


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("emb")
    folder = F.save_sd_pipeline(root / "sd")
    caps = F.write_captioned_images(root / "images", n=6)
    return folder, root / "images", caps


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return F.save_sd3_pipeline(tmp_path_factory.mktemp("emb3") / "sd3")


def _save(path: Path, table: dict) -> Path:
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file
        save_file({k: v.contiguous() for k, v in table.items()}, str(path))
    elif path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in table.items()})
    else:
        torch.save(table, path)
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_per_image_embeddings_equal_the_text_encoder_path(sd, tmp_path, suffix):
    """Per-image embeddings computed by the text encoder (by hand, with transformers' CLIP on the
    tokenizer's ids) and read back give the probe's frames exactly, at a scale that uses the null."""
    folder, images, caps = sd
    pipe = load_latent_pipeline(folder)
    tok = pipe.tokenizer(caps, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                         truncation=True, return_tensors="pt")
    with torch.no_grad():
        hidden = pipe.text_encoder(tok.input_ids)[0]
    path = _save(tmp_path / f"e{suffix}", {f"prompt_embeds/img{i:02d}.png": hidden[i] for i in range(6)})
    kw = dict(guidance_scale=2.5, n=6, timesteps=[100, 900], progress=False, cache_root=tmp_path)
    data = load_captioned(images, 16)
    ref, ref_pix = probe_latent(pipe, data, **kw)
    pipe2 = load_latent_pipeline(folder)
    data.captions = register_embeddings(pipe2, read_embeddings(path), [f.name for f in data.files])
    assert data.captions[1] == Precomputed("prompt_embeds/img01.png")
    ours, pix = probe_latent(pipe2, data, **kw)
    cols = [c for c in ref if c.startswith(("x0_", "eps_"))]
    assert len(cols) > 4 and ours[cols].equals(ref[cols])
    assert pix[["estimate", "lo", "hi"]].equals(ref_pix[["estimate", "lo", "hi"]])
    assert ours.attrs["metadata"]["latent"]["distinct_prompts"] == 6


def test_one_for_all_pooled_embeddings_sd3_sample_exactly(sd3, tmp_path):
    """SD3 (text + pooled, a .pt file read with weights_only): sampling with the precomputed
    one-for-all embedding and negative embedding equals sampling with the prompt."""
    pipe = load_latent_pipeline(sd3)
    (e, p), (ne, npool) = pipe.embed(["a dog"]), pipe.embed([""])
    path = _save(tmp_path / "e.pt", {"prompt_embeds": e, "pooled_prompt_embeds": p[0],
                                     "negative_prompt_embeds": ne[0],
                                     "negative_pooled_prompt_embeds": npool})
    ref = sample_latent(pipe, ["a dog"] * 2, steps=3, guidance_scale=4.0, seed=1, decode=False)
    pipe2 = load_latent_pipeline(sd3)
    keys = register_embeddings(pipe2, read_embeddings(path))
    ours = sample_latent(pipe2, keys * 2, steps=3, guidance_scale=4.0, seed=1, decode=False)
    assert pipe2.null_condition == Precomputed("negative_prompt_embeds")
    assert torch.equal(ours["latents"], ref["latents"])
    other = sample_latent(pipe, ["blue sky"] * 2, steps=3, guidance_scale=4.0, seed=1, decode=False)
    assert not torch.allclose(other["latents"], ref["latents"], atol=1e-4)  # conditions matter


def test_cli_embeddings_equal_prompt(sd, tmp_path, monkeypatch):
    from biaskit.cli import main
    folder, images, _ = sd
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    pipe = load_latent_pipeline(folder)
    path = _save(tmp_path / "one.npz", {"prompt_embeds": pipe.embed(["a cat"])[0]})
    common = ["--data", str(images), "--timesteps", "10,990", "--samples", "4", "--guidance-scale", "3",
              "--no-plots", "--no-progress"]
    assert main(["probe", str(folder), "--prompt", "a cat", "--out", str(tmp_path / "a"), *common]) == 0
    assert main(["probe", str(folder), "--embeddings", str(path), "--out", str(tmp_path / "b"), *common]) == 0
    a, b = (pd.read_csv(tmp_path / d / "pixel_bias.csv") for d in "ab")
    assert a.equals(b)
    for d, flag in (("c", ["--prompt", "a cat"]), ("d", ["--embeddings", str(path)])):
        assert main(["sample", str(folder), *flag, "--steps", "2", "--n", "2", "--out", str(tmp_path / d),
                     "--no-progress"]) == 0
    assert np.array_equal(np.load(tmp_path / "c" / "samples.npz")["latents"],
                          np.load(tmp_path / "d" / "samples.npz")["latents"])


def test_embedding_errors(sd, sd3, tmp_path, capsys):
    from biaskit.cli import main
    folder, images, _ = sd
    pipe, pipe3 = load_latent_pipeline(folder), load_latent_pipeline(sd3)
    files = [f"img{i:02d}.png" for i in range(6)]
    good = torch.zeros(16, 16)
    cases = [
        (pipe, {"prompt_embeds": torch.zeros(16, 8)}, None, r"prompt_embeds has shape \(16, 8\); .*D = 16"),
        (pipe, {"prompt_embeds": good, "pooled_prompt_embeds": torch.zeros(4)}, None, "takes no pooled"),
        (pipe, {"prompt_embeds/img00.png": good}, files, r"no prompt_embeds/img01.png \(5 of 6"),
        (pipe, {"prompt_embeds/img00.png": good}, None, "per-image ones apply to an image folder"),
        (pipe, {"prompt_embed": good}, None, "unknown name 'prompt_embed'"),
        (pipe, {"prompt_embeds": torch.zeros(5, 16)}, None, "5 tokens and the empty prompt's 16"),
        (pipe3, {"prompt_embeds": torch.zeros(272, 32)}, None, "has no pooled_prompt_embeds"),
        (pipe3, {"prompt_embeds": torch.zeros(272, 32), "pooled_prompt_embeds": torch.zeros(16)}, None,
         r"pooled_prompt_embeds has shape \(16,\); .*D' = 32"),
    ]
    for p, table, f, message in cases:
        with pytest.raises(ValueError, match=message):
            register_embeddings(p, table, f)
    (tmp_path / "e.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type '.txt'"):
        read_embeddings(tmp_path / "e.txt")
    dit = F.save_dit_pipeline(tmp_path / "dit")
    path = _save(tmp_path / "e.safetensors", {"prompt_embeds": good})
    rc = main(["probe", str(dit), "--data", str(images), "--embeddings", str(path), "--out", str(tmp_path / "o")])
    assert rc != 0 and "--embeddings applies to text-conditioned pipelines" in capsys.readouterr().err
    rc = main(["probe", "oracle:gmm2d", "--data", "gmm2d", "--embeddings", str(path), "--out", str(tmp_path / "o")])
    assert rc != 0 and "--embeddings applies to latent pipelines" in capsys.readouterr().err
