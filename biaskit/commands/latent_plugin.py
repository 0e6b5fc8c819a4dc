"""``biaskit probe MODEL --encoder-spec F.py:E --decoder-spec F.py:D --data DATA``: a plugin
latent model outside diffusers (:mod:`biaskit.loaders.latent_plugin`), on images or points."""

from __future__ import annotations

import sys

PLUGIN_LATENT_FLAGS = ("encoder_spec", "decoder_spec", "encoder_weights", "decoder_weights",
                       "latent_norm", "latent_shift", "latent_scale")


def add_plugin_latent_arguments(p) -> None:
    g = p.add_argument_group("plugin latent models (a denoiser on the latents of your own encoder "
                             "and decoder)")
    g.add_argument("--encoder-spec", default=None, metavar="FILE.py:FACTORY",
                   help="the encoder E: data -> latents (its mean where it returns a distribution)")
    g.add_argument("--decoder-spec", default=None, metavar="FILE.py:FACTORY", help="the decoder D")
    g.add_argument("--encoder-weights", default=None, metavar="PATH", help="state dict of the encoder")
    g.add_argument("--decoder-weights", default=None, metavar="PATH", help="state dict of the decoder")
    g.add_argument("--latent-norm", default=None, choices=("global", "channel", "given"),
                   help="z = scale (E(x) - shift): global (default) / channel: mean and 1/std of "
                   "the encoded training split; given: --latent-shift / --latent-scale")
    g.add_argument("--latent-shift", default=None, metavar="M[,M...]",
                   help="given latent shift, one number or one per channel")
    g.add_argument("--latent-scale", default=None, metavar="S[,S...]",
                   help="given latent scale, one number or one per channel")


def is_plugin_latent(args) -> bool:
    """Whether the flags name a plugin latent model; ValueError for latent flags without both
    specs."""
    given = [k for k in PLUGIN_LATENT_FLAGS if getattr(args, k, None) is not None]
    if not given:
        return False
    missing = [k for k in ("encoder_spec", "decoder_spec") if getattr(args, k, None) is None]
    if missing:
        raise ValueError(f"--{given[0].replace('_', '-')} is for a plugin latent model: give both "
                         f"--encoder-spec and --decoder-spec (missing --{missing[0].replace('_', '-')})")
    return True


def run_plugin_probe(args, device, timesteps) -> int:
    """Encode the data once, probe the latent denoiser, write per_timestep.csv, metadata.json and
    data_bias.csv (the decoded x0 estimate against the decoded clean latent and the data)."""
    from ..data import image_files, is_image_folder, load_dataset
    from ..latent import probe_plugin_latent
    from ..loaders.formats import plugin_spec
    from ..loaders.latent_plugin import load_latent_plugin
    from ..results import METADATA, TABLE, save_results
    from .common import data_options, flag, loader_kwargs, parse_list
    kwargs = loader_kwargs(args, device)
    spec, weights = plugin_spec(args.model, kwargs.pop("model_spec", None), kwargs.pop("weights", None))
    if spec is None:
        raise ValueError(f"--encoder-spec / --decoder-spec go with a plugin denoiser: give "
                         f"--model-spec FILE.py:FACTORY (or the spec as the model); {args.model} is not one")
    opts = data_options(args.data_option)
    if is_image_folder(args.data) and "n_train" not in opts and "n_test" not in opts:
        opts.update(n_train=0, n_test=len(image_files(args.data)))  # a folder is the evaluation set
    ds = load_dataset(args.data, seed=args.data_seed, **opts)
    if ds.test is None or not len(ds.test):
        raise ValueError(f"--data {args.data} has no held-out samples to probe")
    fit = ds.train if ds.train is not None and len(ds.train) else ds.test
    values = {k: parse_list(flag(k), getattr(args, k), float) if getattr(args, k) else None
              for k in ("latent_shift", "latent_scale")}
    norm = args.latent_norm or ("given" if any(v is not None for v in values.values()) else "global")
    model = load_latent_plugin(spec, weights, encoder_spec=args.encoder_spec,
                               decoder_spec=args.decoder_spec, encoder_weights=args.encoder_weights,
                               decoder_weights=args.decoder_weights, normalisation=norm,
                               fit_data=fit, **values, **kwargs)
    split = None if norm == "given" else "train" if fit is ds.train else "held-out"
    print(f"{args.data}: latent normalisation {model.normalisation}"
          f"{f' ({split} split)' if split else ''}; "
          f"{len(ds.test)} held-out samples encoded once", file=sys.stderr)
    df, bias = probe_plugin_latent(model, ds.test, n=args.samples, seed=args.seed, timesteps=timesteps,
                                   num_timesteps=args.num_timesteps, stratified=args.stratified,
                                   batch_size=args.batch_size, device=device, bootstrap=args.bootstrap,
                                   progress=not args.no_progress, amp=args.amp, bands=args.bands)
    meta = dict(df.attrs["metadata"])
    meta.update(model_spec=spec, data=args.data, normalisation_split=split,
                data_bias="data_bias.csv: decode(x0_hat) - reference, in the data's space")
    out = save_results(df, args.out, meta)
    bias.to_csv(out / "data_bias.csv", index=False)
    cols = [c for c in ("t", "snr", "x0_mse", "eps_mse", "x0_bias_l2") if c in df]
    print(df[cols].to_string(index=False, max_rows=12, float_format="{:.4g}".format))
    print(bias.to_string(index=False, float_format="{:.4g}".format))
    for p in (out / TABLE, out / METADATA, out / "data_bias.csv"):
        print(f"wrote {p}", file=sys.stderr)
    return 0
