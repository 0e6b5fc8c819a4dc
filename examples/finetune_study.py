"""The fine-tuning study shared by ``finetune_mnist.py`` and ``finetune_adm.py``: a trained model
(read by :func:`biaskit.load` with its loader options) is fine-tuned with constant and with debias
weighting for the same number of steps (same data order and noise: common random numbers in
training too), then the original and both tuned models are probed on common random numbers
(:func:`biaskit.compare`):

  - high-noise x0 error and bias: x0_mse and x0_bias_l2 at the noisiest probed steps, each tuned
    model minus the original and debias minus constant, with 95% intervals on paired draws;
  - low-noise cost: the same at the least noisy probed steps;
  - samples: from the same x_T for the three models (the study's sampler), their mean pixel value
    against the data's, and one image grid.

It writes OUT/{constant,debias}/ (biaskit runs that load with biaskit.load), OUT/compare.csv (every
statistic, every probed t), OUT/summary.csv (the numbers the README quotes) and OUT/samples.png/.pdf.
One seed of fine-tuning: the intervals cover probe noise only, not seed-to-seed variance.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

WEIGHTINGS = ("constant", "debias")
STATS = ("x0_mse", "x0_bias_l2")


@dataclass(frozen=True)
class Original:
    """The model a study fine-tunes: its file, the loader options that read it right, the data
    it was trained on ({name, n_train, n_test, options}, in the model's ``data_range``), its
    target, and how the sample grid samples it (:func:`biaskit.sampling.sample` keywords)."""
    path: Path
    loader: dict
    data: dict
    target: str
    sampling: dict = field(default_factory=lambda: {"sampler": "ddim", "clip": True})

    @property
    def data_range(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.loader.get("data_range", (-1.0, 1.0)))


def add_arguments(p: argparse.ArgumentParser, steps: int = 100, batch_size: int = 32,
                  lr: float = 2e-4, sample_steps: int = 20) -> argparse.ArgumentParser:
    """The study's options (every front-end shares them; defaults per front-end)."""
    p.add_argument("--steps", type=int, default=steps, help="fine-tuning steps per weighting")
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--n", type=int, default=256, help="held-out images per probed t")
    p.add_argument("--num-timesteps", type=int, default=8, help="probed t, evenly over the schedule")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=sample_steps)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    return p


def finetune_config(original: Original, weighting: str, args) -> dict:
    """The fine-tuning run of one weighting: everything but loss.weighting is shared."""
    return {"init": {"path": str(original.path), "options": original.loader},
            "data": dict(original.data),
            # as guided-diffusion and the Debias fork: raw weights, no gradient clipping
            "loss": {"target": original.target, "weighting": weighting, "normalize": "none"},
            "optim": {"lr": args.lr, "grad_clip": None}, "ema": {"decay": 0.99, "start": 0},
            "batch_size": args.batch_size, "steps": args.steps, "ckpt_every": args.steps,
            "log_every": 25, "seed": args.seed, "device": "cpu", "threads": args.threads,
            "out": str(args.out / weighting)}


def tuned_models(original: Original, args) -> dict:
    """{name: Denoiser}: the original and each fine-tuned model (trained unless already there)."""
    import biaskit
    from biaskit.checkpoint import checkpoint_steps
    from biaskit.train import run_training
    models = {"original": biaskit.load(original.path, **original.loader)}
    for w in WEIGHTINGS:
        run = args.out / w
        if args.steps not in checkpoint_steps(run):
            run_training(finetune_config(original, w, args), progress=False)
        models[w] = biaskit.load(run)
    return models


def summary(df: pd.DataFrame, high: int, low: int) -> pd.DataFrame:
    """Rows of the difference frames at the ``high`` noisiest and ``low`` least noisy probed t,
    with the reference model's own value of each statistic beside."""
    ts = sorted(df.t.unique())
    rows = df[(df.kind == "difference") & df.t.isin(ts[:low] + ts[-high:])]
    keep = ["model", "reference", "t", "snr"] + [c for s in STATS for c in (s, f"{s}_lo", f"{s}_hi")]
    ref = df[df.kind == "model"][["model", "t", *STATS]].rename(
        columns={"model": "reference", **{s: f"reference_{s}" for s in STATS}})
    out = rows[keep].merge(ref, on=["reference", "t"], how="left")
    return out.assign(noise=np.where(out.t.isin(ts[-high:]), "high", "low"))


def _mean_interval(x: torch.Tensor) -> tuple[float, float, float]:
    """Mean pixel value of a set (n, ...) with a 95% normal interval over its samples."""
    m = x.flatten(1).mean(1)
    mean, half = float(m.mean()), 1.96 * float(m.std()) / np.sqrt(len(m))
    return mean, mean - half, mean + half


def sample_grid(original: Original, models: dict, data, args):
    """Samples of every model from the same x_T; (figure, {name: mean pixel (value, lo, hi)})."""
    from biaskit.plot_images import plot_image_table
    from biaskit.sampling import sample
    g = torch.Generator().manual_seed(args.seed)
    noise = torch.randn((args.samples, *data.shape), generator=g)
    label = f"{original.sampling['sampler']} {args.sample_steps} steps"
    table, means = {}, {}
    for name, d in models.items():
        with torch.no_grad():
            x = sample(d, noise, steps=args.sample_steps, progress=False, seed=args.seed,
                       **original.sampling).x0
        table[name] = x[:16]
        means[name] = _mean_interval(x)
    means["data"] = _mean_interval(data.test)
    fig = plot_image_table({k: {label: v} for k, v in table.items()}, data_range=original.data_range,
                           columns=4, reference=data.test[:16])
    return fig, means


def run(original: Original, args) -> tuple[pd.DataFrame, dict]:
    """The whole study into ``args.out``; (summary table, mean pixel per model and the data)."""
    from biaskit import compare
    from biaskit.data import load_dataset
    from biaskit.plot_style import save
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    models = tuned_models(original, args)
    spec = original.data
    data = load_dataset(spec["name"], seed=args.seed, n_train=spec.get("n_train"),
                        n_test=spec.get("n_test"), data_range=original.data_range,
                        **spec.get("options", {}))
    frames = [compare(models, data, reference=ref, num_timesteps=args.num_timesteps, n=args.n,
                      seed=args.seed, progress=False) for ref in ("original", "constant")]
    df = pd.concat([frames[0], frames[1][frames[1].model == "debias - constant"]], ignore_index=True)
    df.to_csv(args.out / "compare.csv", index=False, float_format="%.6g")
    table = summary(df, high=2, low=2)
    fig, means = sample_grid(original, models, data, args)
    save(fig, args.out / "samples")
    table.to_csv(args.out / "summary.csv", index=False, float_format="%.6g")
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    for name, (m, lo, hi) in means.items():
        print(f"mean pixel {name:9s} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    return table, means
