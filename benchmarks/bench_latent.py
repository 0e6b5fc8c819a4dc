"""Latent pipelines: the probe's cost against bare forward passes, and agreement with diffusers.

1. Cost, on a small random Stable-Diffusion-like pipeline (UNet2DConditionModel, AutoencoderKL,
   CLIPTextModel; built here from the test fixtures, nothing downloaded): the wall time of
   :func:`biaskit.latent.probe_latent` over K timesteps x n images (one prompt each, G distinct),
   split into its parts, against the same number of bare ``unet(x, t, encoder_hidden_states)``
   forward passes of the same batch plus one VAE encode pass of the n images and the decodes of
   the pixel-bias step (n x_hat and n clean latents). Guidance w = 1 (one forward per pair) and
   w = 3 (two, batched) are both measured; encoded latents come from the cache on the second run.
2. Agreement: ``sample_latent(sampler="pipeline")`` against ``StableDiffusionPipeline(...,
   output_type="latent")``, ``StableDiffusion3Pipeline(..., output_type="latent")`` (without and
   with a T5 text_encoder_3), ``FluxPipeline(..., output_type="latent")`` (guidance embedding g,
   true CFG w with the empty negative prompt; packed latents compared) and
   ``DiTPipeline(..., output_type="pt")``, max |difference|.

Usage: python benchmarks/bench_latent.py [--n 64] [--K 10] [--batch 64] [--repeats 3] [--threads 1]
       [--agreement-only]
Timings take the minimum over repeats.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import latent_fixtures as F  # noqa: E402

from biaskit.latent import encode_cached, load_captioned, probe_latent, sample_latent  # noqa: E402
from biaskit.loaders.latent import load_latent_pipeline  # noqa: E402


def _best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def cost(root: Path, n: int, K: int, batch: int, repeats: int) -> None:
    folder = F.save_sd_pipeline(root / "sd")
    F.write_captioned_images(root / "img", n=n)
    pipe = load_latent_pipeline(folder)
    data = load_captioned(root / "img", pipe.image_size)
    cache = root / "cache"
    t_encode = _best(lambda: pipe.encode(data.images, batch), repeats)
    encode_cached(pipe, data, cache)
    ts = torch.linspace(0, 999, K).round().long()
    for w in (1.0, 3.0):
        pipe.condition(data.captions, w)
        z = torch.randn(n, 4, 8, 8)

        def bare():
            with torch.inference_mode():
                for t in ts:
                    for i in range(0, n, batch):
                        pipe.net(z[i:i + batch], t.expand(z[i:i + batch].shape[0]))

        def decodes():
            pipe.decode(z, batch)
            pipe.decode(z, batch)

        def bare_pixel():  # the pixel-bias step: n forwards at one t
            with torch.inference_mode():
                for i in range(0, n, batch):
                    pipe.net(z[i:i + batch], ts[-1].expand(z[i:i + batch].shape[0]))

        t_bare, t_dec, t_pix = _best(bare, repeats), _best(decodes, repeats), _best(bare_pixel, repeats)
        t_probe = _best(lambda: probe_latent(pipe, data, guidance_scale=w, n=n, num_timesteps=K,
                                             batch_size=batch, progress=False, cache_root=cache,
                                             bands=4), repeats)
        floor = t_bare + t_pix + t_dec
        print(f"w={w:g}: probe {t_probe:.3f} s over {K} t x {n} images; bare forwards {t_bare:.3f} s "
              f"+ pixel step forwards {t_pix:.3f} s + decodes {t_dec:.3f} s = {floor:.3f} s "
              f"(ratio {t_probe / floor:.2f}); one encode pass {t_encode:.3f} s (cached after the first)")


def _latent_agreement(ref, pipe, scales, kind: str, steps: str, peer: str) -> None:
    """Largest difference of our pipeline sampler's latents from the diffusers pipeline ``ref``'s
    (same prompts, generator seed 0, 10 steps) at each guidance scale."""
    prompts = ["a red cat", "blue sky"]
    for w in scales:
        a = ref(prompts, num_inference_steps=10, guidance_scale=w, output_type="latent",
                height=16, width=16, generator=torch.Generator().manual_seed(0)).images
        b = sample_latent(pipe, prompts, steps=10, guidance_scale=w, seed=0)["latents"]
        print(f"{kind}, w={w:g}, {steps}: max |ours - {peer}| = "
              f"{(a - b).abs().max().item():.3g} (latents of scale {a.abs().max().item():.3g})")


def agreement(root: Path) -> None:
    from diffusers import DiTPipeline, StableDiffusionPipeline
    folder = root / "sd"
    ref = StableDiffusionPipeline.from_pretrained(str(folder))
    ref.set_progress_bar_config(disable=True)
    pipe = load_latent_pipeline(folder)
    _latent_agreement(ref, pipe, (1.0, 7.5), "SD-like", "10 DDIM steps", "StableDiffusionPipeline")
    from diffusers import StableDiffusion3Pipeline
    sd3_folder = F.save_sd3_pipeline(root / "sd3")
    ref = StableDiffusion3Pipeline.from_pretrained(str(sd3_folder), text_encoder_3=None, tokenizer_3=None)
    ref.set_progress_bar_config(disable=True)
    pipe = load_latent_pipeline(sd3_folder)
    _latent_agreement(ref, pipe, (1.0, 5.0), "SD3-like", "10 flow Euler steps", "StableDiffusion3Pipeline")
    t5_folder = F.save_sd3_pipeline(root / "sd3t5", t5=True)
    ref = StableDiffusion3Pipeline.from_pretrained(str(t5_folder))
    ref.set_progress_bar_config(disable=True)
    _latent_agreement(ref, load_latent_pipeline(t5_folder), (1.0, 5.0), "SD3-like with T5",
                      "10 flow Euler steps", "StableDiffusion3Pipeline")
    flux_agreement(root)
    dit_folder = F.save_dit_pipeline(root / "dit")
    ref = DiTPipeline.from_pretrained(str(dit_folder))
    ref.set_progress_bar_config(disable=True)
    pipe = load_latent_pipeline(dit_folder)
    for w in (1.0, 4.0):
        a = ref([3, 7], guidance_scale=w, num_inference_steps=10, output_type="pt",
                generator=torch.Generator().manual_seed(0)).images
        b = sample_latent(pipe, ["3", "7"], steps=10, guidance_scale=w, seed=0)["images"]
        print(f"DiT-like, w={w:g}, 10 DDIM steps: max |ours - DiTPipeline| (decoded, [0, 1]) = "
              f"{((b / 2 + 0.5).clamp(0, 1) - a).abs().max().item():.3g}")


def flux_agreement(root: Path) -> None:
    from diffusers import FluxPipeline
    from biaskit.loaders.flux import pack
    folder = F.save_flux_pipeline(root / "flux")
    ref = FluxPipeline.from_pretrained(str(folder))
    ref.set_progress_bar_config(disable=True)
    prompts = ["a red cat", "blue sky"]
    for w, g in ((1.0, 3.5), (4.0, 2.0)):
        a = ref(prompts, num_inference_steps=10, guidance_scale=g, true_cfg_scale=w,
                negative_prompt=["", ""] if w != 1 else None, output_type="latent", height=16,
                width=16, generator=torch.Generator().manual_seed(0)).images
        b = pack(sample_latent(load_latent_pipeline(folder, guidance_embed=g), prompts, steps=10,
                               guidance_scale=w, seed=0, size=16, decode=False)["latents"])
        print(f"Flux-like, w={w:g}, g={g:g}, 10 flow Euler steps: max |ours - FluxPipeline| = "
              f"{(a - b).abs().max().item():.3g} (latents of scale {a.abs().max().item():.3g})")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--K", type=int, default=10)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--agreement-only", action="store_true", help="skip the cost part")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        if a.agreement_only:
            F.save_sd_pipeline(Path(tmp) / "sd")
        else:
            cost(Path(tmp), a.n, a.K, a.batch, a.repeats)
        agreement(Path(tmp))


if __name__ == "__main__":
    main()
