"""Probing and sampling latent, text-conditioned pipelines (:mod:`biaskit.loaders.latent`).

Data: an image folder whose captions come from a ``.txt`` beside each image (fine-tuning folders),
a ``metadata.jsonl`` with ``file_name`` and ``text`` (Hugging Face image folders), or one
``prompt`` for all. The images are encoded once by the pipeline's VAE (the posterior mean,
:data:`~biaskit.loaders.latent.LATENT_MEAN`) and the latents cached by (VAE weights sha256, the
images' sha256, size, encoding rule).

:func:`probe_latent` runs the ordinary probe (:func:`biaskit.probe.probe`) on the latents, every
sample conditioned on its caption, so every latent statistic is the pixel probe's (per-t x0 error,
per-latent-channel bias, bands). :func:`pixel_bias` is what a person sees: at chosen t the x0
estimate decoded, x_hat = decode(x0_hat(x_t)), against the decoded clean latent decode(z0) and
against the image x, per sample i

    brightness_i = mean_{c,h,w} (x_hat_i - ref_i),   channel_c,i = mean_{h,w} (x_hat_i - ref_i)_c,

in the data range [-1, 1], reported as means over samples with t-intervals; x_t is drawn exactly
as the probe draws it (:func:`biaskit.probe.draws.draw_noise`), so the two tables share draws.
:func:`sample_latent` samples with the pipeline's own scheduler (the loop of diffusers' Stable
Diffusion pipeline) or any biaskit sampler, and decodes at the end.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import parameterization as P
from .image_files import image_files
from .pixels import open_image as _open_image
from .intervals import LEVEL, t_interval
from .loaders.latent import LATENT_MEAN, LatentPipeline
from .processes import Flow
from .safeload import file_sha256

__all__ = ["captions", "CaptionedImages", "load_captioned", "encode_cached", "probe_latent",
           "pixel_bias", "probe_plugin_latent", "sample_latent", "PIXEL_REFERENCES"]

PIXEL_REFERENCES = ("decoded_latent", "image")


def _metadata_captions(folder: Path, key: str = "text") -> dict[str, str]:
    meta = folder / "metadata.jsonl"
    if not meta.is_file():
        return {}
    out = {}
    for k, line in enumerate(meta.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{meta} line {k} is not JSON: {e}") from None
        if not isinstance(row, dict) or "file_name" not in row or key not in row:
            raise ValueError(f"{meta} line {k}: expected an object with file_name and {key}")
        out[str(row["file_name"])] = str(row[key])
    return out


def captions(folder, files: list[Path], prompt: str | None = None, key: str = "text") -> list[str]:
    """One caption per image: ``prompt`` for all when given, else ``metadata.jsonl`` (file_name
    relative to ``folder``, the caption under ``key``: ``text``, or ``label`` for the class of a
    class-conditional model), else the ``.txt`` beside each image. An image without a caption is
    a ValueError naming it (and the three ways to give one)."""
    if prompt is not None:
        return [str(prompt)] * len(files)
    folder = Path(folder).expanduser()
    meta = _metadata_captions(folder, key)
    out = []
    for f in files:
        rel = f.relative_to(folder).as_posix()
        if rel in meta:
            out.append(meta[rel])
        elif f.with_suffix(".txt").is_file():
            out.append(f.with_suffix(".txt").read_text().strip())
        else:
            raise ValueError(f"no {'caption' if key == 'text' else 'class label'} for {f}: give a "
                             f"{f.with_suffix('.txt').name} beside it, a metadata.jsonl line with "
                             f"file_name {rel!r} and {key}, or "
                             f"{'--prompt' if key == 'text' else '--class-label'}")
    return out


@dataclass
class CaptionedImages:
    """images (N, 3, S, S) in [-1, 1], their captions, the files and their sha256."""

    images: torch.Tensor
    captions: list[str]
    files: list[Path]
    sha256: list[str]


def load_captioned(folder, size: int, prompt: str | None = None, key: str = "text") -> CaptionedImages:
    """Every PNG/JPEG under ``folder`` (sorted), read as size x size RGB in [-1, 1], captioned
    (:func:`captions`)."""
    files = image_files(folder)
    texts = captions(folder, files, prompt, key)
    x = np.stack([_open_image(f, int(size), "RGB") for f in files])
    return CaptionedImages(torch.from_numpy(x) * 2 - 1, texts, files, [file_sha256(f) for f in files])


def encode_cached(pipe: LatentPipeline, data: CaptionedImages, cache_root=None) -> torch.Tensor:
    """The latents of ``data`` (N, c, h, w), encoded once: cached under ``cache_root`` (default
    $XDG_CACHE_HOME/biaskit, else ~/.cache/biaskit) by (VAE weights sha256, images sha256, image
    size, encoding rule)."""
    from .study.cache import Cache
    vae = {k: v for k, v in pipe.sha256.items() if k.startswith("vae")}
    config = {"vae": vae, "images": data.sha256, "size": list(data.images.shape[1:]),
              "latent": LATENT_MEAN, "scaling_factor": pipe.scaling_factor,
              "shift_factor": pipe.shift_factor}
    if cache_root is None:
        cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "biaskit"
    root = Path(cache_root)
    return Cache(root).tensors("latents", config, lambda: {"z": pipe.encode(data.images)},
                               label="latents")["z"]


def _select(N: int, n: int, seed: int) -> np.ndarray:
    # the probe's own rule (biaskit.probe.draws.select_samples): the first n of a seeded permutation
    return np.arange(N) if n >= N else np.sort(np.random.default_rng(seed).permutation(N)[:n])


def probe_latent(pipe: LatentPipeline, data: CaptionedImages, *, guidance_scale=1.0,
                 n: int = 512, seed: int = 0, pixel_timesteps=None, cache_root=None,
                 **settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latent probe frame, pixel-bias frame) of ``pipe`` on ``data``: each sample conditioned on
    its caption at ``guidance_scale`` (a number: :func:`biaskit.probe.probe`; a list of several:
    :func:`biaskit.probe.compare` of the scales on the same draws, models named ``w=...``, the
    first the reference); ``settings`` go to the probe. The pixel frame is :func:`pixel_bias` at
    ``pixel_timesteps`` (default: the highest probed t), one block per scale."""
    from .probe import compare, probe
    scales = [float(w) for w in np.ravel(guidance_scale)]
    if not scales or any(not w >= 0 for w in scales):
        raise ValueError(f"guidance scales must be >= 0, got {guidance_scale}")
    z_all = encode_cached(pipe, data, cache_root)
    idx = _select(len(data.captions), int(n), seed)
    z0, x = z_all[idx], data.images[idx]
    pipe.condition([data.captions[i] for i in idx], scales[0])
    models = {f"w={w:g}": pipe.at_scale(w) for w in scales}
    if len(scales) == 1:
        df = probe(pipe.denoiser, z0, n=len(idx), seed=seed, **settings)
    else:
        df = compare(models, z0, n=len(idx), seed=seed, **settings)
    meta = df.attrs["metadata"]
    meta["latent"] = {**pipe.describe(), "guidance_scale": scales if len(scales) > 1 else scales[0],
                      "images": len(data.captions), "encoded_once": True,
                      "distinct_prompts": len(set(data.captions[i] for i in idx))}
    ts = [int(df["t"].max())] if pixel_timesteps is None else list(pixel_timesteps)
    batch = settings.get("batch_size", 8)
    pix = pd.concat([pixel_bias(pipe, z0, x, ts, seed=seed, batch_size=batch, denoiser=den)
                     .assign(guidance_scale=w) for w, den in zip(scales, models.values())],
                    ignore_index=True)
    return df, pix


@torch.no_grad()
def pixel_bias(pipe: LatentPipeline, z0: torch.Tensor, x: torch.Tensor, timesteps, *, seed: int = 0,
               batch_size: int = 8, level: float = LEVEL, denoiser=None) -> pd.DataFrame:
    """Pixel-space bias of the decoded x0 estimate at each timestep t (module docstring): rows
    (t, snr, reference in :data:`PIXEL_REFERENCES`, statistic in brightness / channel_c, n,
    estimate, lo, hi); for point data (N, D) the statistics are mean (over dimensions) and dim_j.
    ``pipe``: a :class:`LatentPipeline` or a
    :class:`~biaskit.loaders.latent_plugin.PluginLatent`. Row i of ``z0`` / ``x`` is conditioned as ``pipe.condition`` set it;
    ``denoiser``: one of ``pipe.at_scale(w)`` (default ``pipe.denoiser``)."""
    from .probe.draws import draw_noise, schedule_indices
    den = pipe.denoiser if denoiser is None else denoiser
    s = den.schedule
    dec0 = pipe.decode(z0)  # the VAE in batches of 8 (an SD VAE at 512 px)
    refs = {"decoded_latent": dec0, "image": x.to(dec0)}
    rows = []
    for k in schedule_indices(s, timesteps):
        t_value = int(s.timesteps[k])
        eps = draw_noise(seed, t_value, 0, z0.shape[0], z0.shape[1:], den.device).cpu()
        x0_hat = []
        for i in range(0, z0.shape[0], batch_size):
            sl = slice(i, i + batch_size)
            t = torch.full((eps[sl].shape[0],), int(k), dtype=torch.long)
            alpha, sigma = (c.reshape(-1, *[1] * (z0.ndim - 1)) for c in s.coefficients(t))
            x_t = P.noisy(z0[sl], eps[sl], alpha, sigma).to(den.device)  # in float32 (no autocast)
            which = {"rows": torch.arange(i, i + x_t.shape[0], device=den.device)} if getattr(
                den, "takes_rows", False) else {}
            x0_hat.append(den(x_t, t.to(den.device), **which).x0_hat.cpu())
        x_hat = pipe.decode(torch.cat(x0_hat)).to(dec0)
        for ref, target in refs.items():
            d = (x_hat - target).double()
            if d.ndim == 4:  # images: brightness and colour
                per = {"brightness": d.mean(dim=(1, 2, 3))}
                per.update({f"channel_{c}": d[:, c].mean(dim=(1, 2)) for c in range(d.shape[1])})
            else:  # points (N, D): the mean over dimensions and each dimension
                per = {"mean": d.reshape(d.shape[0], -1).mean(1)}
                per.update({f"dim_{j}": d[:, j] for j in range(d.shape[1])} if d.ndim == 2 else {})
            for stat, v in per.items():
                v = v.numpy()
                lo, hi = t_interval(v.mean(), v - v.mean(), level)
                rows.append({"t": t_value, "snr": float(s.snr[k]), "reference": ref, "statistic": stat,
                             "n": v.size, "estimate": float(v.mean()), "lo": float(lo), "hi": float(hi)})
    return pd.DataFrame(rows)


def probe_plugin_latent(model, x: torch.Tensor, *, n: int = 512, seed: int = 0,
                        pixel_timesteps=None, **settings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(latent probe frame, data-space bias frame) of a plugin latent model
    (:class:`~biaskit.loaders.latent_plugin.PluginLatent`) on samples ``x`` (images or points):
    x encoded once, the ordinary probe on the normalised latents, :func:`pixel_bias` of the
    decoded estimate at ``pixel_timesteps`` (default the highest probed t)."""
    from .probe import probe
    idx = _select(x.shape[0], int(n), seed)
    z0, x = model.encode(x[idx]), x[idx]
    df = probe(model.denoiser, z0, n=len(idx), seed=seed, **settings)
    df.attrs["metadata"]["latent"] = {**model.describe(), "samples": len(idx), "encoded_once": True}
    ts = [int(df["t"].max())] if pixel_timesteps is None else list(pixel_timesteps)
    return df, pixel_bias(model, z0, x, ts, seed=seed, batch_size=settings.get("batch_size", 8))


def _step_kwargs(scheduler, generator, eta: float) -> dict:
    import inspect
    accepted = set(inspect.signature(scheduler.step).parameters)
    return {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepted}


@torch.no_grad()
def sample_latent(pipe: LatentPipeline, prompts: list[str], *, steps: int = 50,
                  guidance_scale: float = 7.5, seed: int = 0, generator=None, sampler: str = "pipeline",
                  eta: float = 0.0, latents: torch.Tensor | None = None, decode: bool = True,
                  callback=None, progress: bool = False, size: int | None = None,
                  decode_steps: bool = False) -> dict:
    """Samples for ``prompts`` (one each): {"latents" (B, c, h, w), "images" (B, 3, H, W) when
    ``decode``, "t" the model's timesteps visited (flow: the scheduler's s N), "x0_hat"
    (S, B, c, h, w) every step's latent estimate, and with ``decode_steps`` "x0_hat_decoded"
    (S, B, 3, H, W) each of them decoded}.

    ``sampler="pipeline"``: the pipeline's own scheduler in the loop of diffusers'
    StableDiffusionPipeline, StableDiffusion3Pipeline and DiTPipeline (x_T = randn *
    init_noise_sigma from ``generator``, default seeded by ``seed``; scale_model_input; the guided
    output, its mean half for a learned variance; scheduler.step with eta and the generator), so
    it equals ``pipeline(prompts, output_type="latent")`` (diffusers runs the conditional model
    alone at guidance_scale <= 1; here 0 < w < 1 mixes as written). ``callback(t, x_in, x0_hat,
    x_next)`` after each step. Any other name is a biaskit sampler
    (:func:`biaskit.sampling.sample`). ``size``: the image side in pixels (default the
    pipeline's). Flux (:mod:`biaskit.loaders.flux`): FluxPipeline's loop, its resolution-shifted
    sigmas, equal to ``pipeline(prompts, guidance_scale=g, true_cfg_scale=w, negative_prompt="")``
    on the unpacked latents."""
    pipe.condition(list(prompts), guidance_scale)
    den = pipe.denoiser
    B, (C, h, w) = len(prompts), den.shape
    if size is not None:
        h = w = int(size) // pipe.vae_scale
    device = den.device
    if sampler != "pipeline":
        from .sampling import sample
        shape = (B, C, h, w) if latents is None else latents
        r = sample(den, shape, sampler=sampler, steps=steps, eta=eta, seed=seed,
                   return_trajectory=True, progress=progress, callback=callback)
        z, ts, traj = r.x0, list(r.timesteps), r.trajectory.x0_hat
    else:
        import diffusers
        from .loaders.flux import FluxNet, flux_set_timesteps
        cfg = pipe.scheduler_config
        flux_net = isinstance(getattr(den.net, "unet", None), FluxNet)
        if cfg.get("use_dynamic_shifting") and not flux_net:
            raise ValueError(f"{cfg['_class_name']} with use_dynamic_shifting (a resolution-dependent "
                             "shift) is not supported by the pipeline sampler")
        scheduler = getattr(diffusers, cfg["_class_name"]).from_config(cfg)
        if flux_net:
            flux_set_timesteps(scheduler, steps, h, w, device)
        else:
            scheduler.set_timesteps(steps, device=device)
        g = generator if generator is not None else torch.Generator(device).manual_seed(int(seed))
        z = (torch.randn((B, C, h, w), generator=g, device=device) if latents is None
             else latents.to(device)) * getattr(scheduler, "init_noise_sigma", 1.0)
        kw = _step_kwargs(scheduler, g, eta)
        flow = isinstance(getattr(den, "process", None), Flow)  # FlowMatchEuler: net fed s N
        N = int(cfg.get("num_train_timesteps", 1000))
        ts, traj = [], []
        for t in scheduler.timesteps:
            x_in = scheduler.scale_model_input(z, t) if hasattr(scheduler, "scale_model_input") else z
            if not flow and float(t) != int(t):
                raise ValueError(f"{cfg['_class_name']} visits timestep {float(t)}; the pipeline "
                                 "sampler takes VP schedulers of integer timesteps")
            # the network's own time input is the scheduler's timestep (VP: the step; flow: s N)
            raw = den.net(x_in, t.expand(B) if flow else t.expand(B).long())
            out, _ = P.split_learned_variance(raw, C)
            if flow:  # x = (1 - s) x0 + s eps, u = eps - x0: x0 = x - s u
                x0_hat = x_in - (float(t) / N) * out
            else:
                alpha, sigma = (c.reshape(-1, 1, 1, 1).to(x_in) for c in
                                den.schedule.coefficients(t.expand(B).long().cpu()))
                x0_hat = P.to_x0_eps(den.parameterization, out, x_in, alpha, sigma)[0]
            z = scheduler.step(out, t, z, **kw).prev_sample
            ts.append(float(t) if flow else int(t))
            traj.append(x0_hat.cpu())
            if callback is not None:
                callback(ts[-1], x_in, x0_hat, z)
        traj = torch.stack(traj)
    out = {"latents": z, "t": ts, "x0_hat": traj}
    if decode:
        out["images"] = pipe.decode(z)
    if decode_steps:
        out["x0_hat_decoded"] = torch.stack([pipe.decode(x).cpu() for x in traj])
    return out
