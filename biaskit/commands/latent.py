"""The latent-pipeline branch of ``biaskit probe`` and ``biaskit sample``: a diffusers pipeline
folder with a VAE (:mod:`biaskit.loaders.latent`: SD-, SD3- or DiT-like), conditioned by captions
or ``--prompt`` (DiT: labels or ``--class-label``) at ``--guidance-scale``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..loaders.latent import is_latent_pipeline
from .common import _given, flag


def add_condition_arguments(p, what: str) -> None:
    """--prompt (latent pipelines only)."""
    g = p.add_argument_group("latent text-conditioned pipelines (a diffusers folder with a VAE)")
    g.add_argument("--prompt", default=None,
                   help=f"one prompt for every {what} (default: each image's caption, from a .txt "
                   "beside it or metadata.jsonl with file_name and text)" if what == "image" else
                   "the prompt of every sample (default: the empty prompt)")
    g.add_argument("--embeddings", default=None, metavar="FILE",
                   help="precomputed text embeddings (.safetensors, .pt, .npz) instead of the text "
                   "encoders: prompt_embeds (one for all) or prompt_embeds/FILE_NAME per image, "
                   "pooled_prompt_embeds[/FILE_NAME] where the model takes them, optional "
                   "negative_prompt_embeds (the null condition; default the empty prompt's)")
    g.add_argument("--guidance-embed", type=float, default=None, metavar="G",
                   help="the guidance embedding of a guidance-distilled Flux, an input of the network "
                   "(default 3.5), apart from classifier-free guidance --guidance-scale")
    if what != "image":
        g.add_argument("--decode-steps", action="store_true",
                       help="also save every step's x0_hat decoded to pixels (x0_hat_decoded, "
                       "(steps, n, 3, H, W); one step count only)")
    if what == "image":
        from .latent_plugin import add_plugin_latent_arguments
        add_plugin_latent_arguments(p)
    # --guidance-scale is the loader table's (biaskit.loaders.options), shared with class-conditional models


def check_latent_flags(args) -> bool:
    """Whether ``args.model`` is a latent pipeline; ValueError for loader flags given to one, or
    --prompt / --guidance-scale given to any other model."""
    from .latent_plugin import is_plugin_latent
    if is_plugin_latent(args):  # a plugin denoiser with its own encoder and decoder
        from .common import check_model_flags
        check_model_flags(args)
        return True
    latent = not str(args.model).startswith("oracle:") and is_latent_pipeline(args.model)
    if latent:
        # --class-label is the condition of every sample of a class-conditional pipeline (DiT)
        bad = [k for k in _given(args) if k not in ("class_label", "guidance_scale")] + \
            (["any_size"] if getattr(args, "any_size", False) else [])
        if bad:
            raise ValueError(f"{flag(bad[0])} does not apply to a latent pipeline ({args.model}): "
                             "it reads its settings from its folder; drop it")
        if args.guidance_scale is not None:
            w = args.guidance_scale
            args.guidance_scale = list(w) if isinstance(w, tuple) else [w]
            if any(not w >= 0 for w in args.guidance_scale):
                raise ValueError(f"--guidance-scale must be >= 0, got {','.join(map(str, args.guidance_scale))}")
    else:
        for name in ("prompt", "embeddings", "guidance_embed", "decode_steps"):
            if getattr(args, name, None) not in (None, False):
                raise ValueError(f"--{name.replace('_', '-')} applies to latent pipelines (a diffusers "
                                 f"folder with a VAE); {args.model} is not one")
    return latent


def run_probe(args, device, timesteps) -> int:
    """``biaskit probe FOLDER --data IMAGE_DIR``: latent probe, pixel bias, report (a plugin
    latent model: :func:`biaskit.commands.latent_plugin.run_plugin_probe`)."""
    from .latent_plugin import is_plugin_latent, run_plugin_probe
    if is_plugin_latent(args):
        return run_plugin_probe(args, device, timesteps)
    from ..data import is_image_folder
    from ..latent import load_captioned, probe_latent
    from ..loaders.latent import load_latent_pipeline
    from ..report import write_report
    from ..results import METADATA, TABLE, save_results
    if not is_image_folder(args.data):
        raise ValueError(f"--data {args.data}: a latent pipeline is probed on a folder of images")
    from .common import data_options
    opts = data_options(args.data_option)
    if set(opts) - {"size"}:
        raise ValueError(f"--data-option {sorted(set(opts) - {'size'})[0]} does not apply to a latent "
                         "pipeline's image folder; valid: size=N (default: the pipeline's image size)")
    pipe = load_latent_pipeline(args.model, device=device, guidance_embed=args.guidance_embed)
    size = int(opts.get("size", pipe.image_size))
    if getattr(args, "embeddings", None) is None:
        data = load_captioned(args.data, size, *_condition(args, pipe))
    else:  # conditions from the file, keyed by file name: no captions needed
        data = load_captioned(args.data, size, "")
        root = Path(args.data).expanduser()
        data.captions = _embedding_conditions(args, pipe, [f.relative_to(root).as_posix() for f in data.files])
    print(f"{args.data}: {len(data.captions)} images at {size}x{size} RGB, "
          f"{len(set(data.captions))} distinct prompts, encoded once by the VAE "
          f"(posterior mean, scaling {pipe.scaling_factor:g}, shift {pipe.shift_factor:g})",
          file=sys.stderr)
    w = 1.0 if args.guidance_scale is None else args.guidance_scale
    w = w[0] if isinstance(w, list) and len(w) == 1 else w
    df, pix = probe_latent(pipe, data, guidance_scale=w, n=args.samples, seed=args.seed,
                           timesteps=timesteps, num_timesteps=args.num_timesteps,
                           stratified=args.stratified, batch_size=args.batch_size, device=device,
                           bootstrap=args.bootstrap, progress=not args.no_progress, amp=args.amp,
                           bands=args.bands)
    meta = dict(df.attrs["metadata"])
    meta.update(model_spec=args.model, data_folder=args.data,
                pixel_bias="pixel_bias.csv: decode(x0_hat) - reference, data range [-1, 1]")
    out = save_results(df, args.out, meta)
    pix.to_csv(out / "pixel_bias.csv", index=False)
    written = [out / TABLE, out / METADATA, out / "pixel_bias.csv"]
    if not args.no_plots:
        written += _figures(df, out)
    written.append(write_report(out.resolve(), df, meta))
    cols = [c for c in ("model", "t", "snr", "x0_mse", "eps_mse", "x0_bias_l2") if c in df]
    print(df[cols].to_string(index=False, max_rows=12, float_format="{:.4g}".format))
    print(pix.to_string(index=False, float_format="{:.4g}".format))
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0


def _embedding_conditions(args, pipe, files=None) -> list:
    """The conditions of ``--embeddings`` (:func:`biaskit.loaders.embeddings.register_embeddings`):
    one per file of ``files``, or one for all."""
    from ..loaders.embeddings import read_embeddings, register_embeddings
    if args.prompt is not None:
        raise ValueError("--prompt and --embeddings both give the condition; give one")
    return register_embeddings(pipe, read_embeddings(args.embeddings), files, args.embeddings)


def _sample_size(args, pipe) -> int:
    """The image side of ``biaskit sample``: from ``--shape C,h,w`` (the latent shape, h = w) or
    the pipeline's default."""
    if args.shape is None:
        return pipe.image_size
    from .common import parse_list
    shape = tuple(parse_list("--shape", args.shape))
    C = pipe.denoiser.shape[0]
    if len(shape) != 3 or shape[0] != C or shape[1] != shape[2] or shape[1] < 1:
        raise ValueError(f"--shape {args.shape}: a latent pipeline samples square latents C,h,h with "
                         f"C = {C}, e.g. --shape {C},64,64")
    return int(shape[1]) * pipe.vae_scale


def _condition(args, pipe) -> tuple:
    """(the condition for every sample or None, the metadata.jsonl key) for ``pipe``: --prompt
    for a text pipeline, --class-label for a class-conditional one."""
    given = getattr(args, "class_label", None)
    if pipe.class_conditional:
        if args.prompt is not None:
            raise ValueError(f"--prompt does not apply to the class-conditional pipeline {args.model}; "
                             "give --class-label K or labels in the data folder")
        return (None if given is None else str(given)), "label"
    if given is not None:
        raise ValueError(f"--class-label does not apply to the text-conditioned pipeline {args.model}; "
                         "give --prompt or captions in the data folder")
    return args.prompt, "text"


def _figures(df, out: Path) -> list[Path]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from .. import plots
    written = []
    df = df[df["kind"] == "model"] if "kind" in df else df
    figs = {"per_timestep": plots.plot_per_timestep(df, ["x0_mse", "eps_mse"], x=("t", "logsnr")),
            "colour_bias": plots.plot_colour_bias(df)}
    for name, fig in figs.items():
        written += plots.save(fig, out / name)
        plt.close(fig)
    return written


def run_sample(args, device, steps: list[int], against_data) -> int:
    """``biaskit sample FOLDER --prompt P``: latents and decoded images (every step's latent x0_hat
    with --trajectory); with ``--data IMAGE_DIR`` their pixel statistics beside the images
    (``against_data``: :func:`biaskit.commands.sample.against_data`)."""
    from ..latent import sample_latent
    from ..loaders.latent import load_latent_pipeline
    from ..data import is_image_folder
    if args.data is not None and not is_image_folder(args.data):
        raise ValueError(f"--data {args.data}: the decoded samples of a latent pipeline are compared "
                         "with a folder of images")
    pipe = load_latent_pipeline(args.model, device=device, guidance_embed=args.guidance_embed)
    size = _sample_size(args, pipe)
    if args.decode_steps and len(steps) > 1:
        raise ValueError("--decode-steps takes one step count (--steps N)")
    if getattr(args, "embeddings", None) is not None:
        prompts = _embedding_conditions(args, pipe) * args.n
    else:
        given, _ = _condition(args, pipe)
        prompts = [given if given is not None else ("0" if pipe.class_conditional else "")] * args.n
    if args.guidance_scale is not None and len(args.guidance_scale) > 1:
        raise ValueError("--guidance-scale: sample takes one scale")
    w = 7.5 if args.guidance_scale is None else args.guidance_scale[0]
    sampler = "pipeline" if args.sampler == "pipeline" else args.sampler
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    arrays, images_of = {}, {}
    for n in steps:
        r = sample_latent(pipe, prompts, steps=n, guidance_scale=w, seed=args.seed, sampler=sampler,
                          eta=args.eta, progress=not args.no_progress, size=size,
                          decode_steps=args.decode_steps)
        suffix = "" if len(steps) == 1 else f"_{n}"
        arrays[f"latents{suffix}"] = r["latents"].float().cpu().numpy()
        arrays[f"x0{suffix}"] = r["images"].float().cpu().numpy()
        ts = np.asarray(r["t"], dtype=np.float64)  # flow (SD3, Flux): s N, not an integer
        arrays[f"timesteps{suffix}"] = ts.astype(np.int64) if (ts == ts.round()).all() else ts
        if args.trajectory:
            arrays["x0_hat"] = r["x0_hat"].float().cpu().numpy()
        if args.decode_steps:
            arrays["x0_hat_decoded"] = r["x0_hat_decoded"].float().cpu().numpy()
        x = images_of[n] = r["images"]
        print(f"{n:>5} steps: image channel means "
              f"{', '.join(f'{v:.3f}' for v in x.mean(dim=(0, 2, 3)).tolist())} (data range [-1, 1])")
    np.savez_compressed(out / "samples.npz", **arrays)
    written = [out / "samples.npz", out / "sample_meta.json"]
    if args.data is not None:  # pixel-space statistics of the decoded samples beside the images
        import pandas as pd
        from ..latent import load_captioned
        images = load_captioned(args.data, size, prompt="").images
        stats = pd.concat([against_data(images_of[n], images, (-1.0, 1.0), args.seed).assign(steps=n)
                           for n in steps])
        stats[["steps", "statistic", "samples", "lo", "hi", "data"]].to_csv(out / "sample_stats.csv", index=False)
        written.append(out / "sample_stats.csv")
    meta = {"model": args.model, "latent": pipe.describe(), "condition": str(prompts[0]),
            "guidance_scale": w, "sampler": sampler, "steps": steps, "n": args.n, "seed": args.seed,
            "eta": args.eta, "x0": "decoded images (N, 3, H, W) in [-1, 1]; latents: the sampled latents",
            "x0_hat_decoded": "every step's x0_hat decoded, (steps, N, 3, H, W)" if args.decode_steps else None,
            "size": size,
            "data": args.data, "sample_stats": "decoded samples beside the data folder's images, "
            "pixel space [-1, 1]" if args.data else None}
    (out / "sample_meta.json").write_text(json.dumps(meta, indent=2, default=str))
    for p in written:
        print(f"wrote {p}", file=sys.stderr)
    return 0
