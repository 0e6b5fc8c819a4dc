"""A worked fine-tuning study: the real third-party MNIST DDPM (../shared/checkpoints/mnist-ddpm-cnn/,
eps target, trained with the usual constant weighting) fine-tuned on MNIST with constant and with
debias weighting for the same number of steps (same data order and noise: common random numbers in
training too), then probed before and after on common random numbers (biaskit.compare):

  - high-noise x0 error and bias: x0_mse and x0_bias_l2 at the noisiest probed steps, each tuned
    model minus the original and debias minus constant, with 95% intervals on paired draws;
  - low-noise cost: the same at the least noisy probed steps;
  - samples: DDIM (x0_hat clipped, the paper's protocol) from the same x_T for the three models,
    their mean pixel value against the data's, and one image grid.

Run from the repository root (about 3 minutes on one CPU thread with the defaults):

    python examples/finetune_mnist.py --out runs/mnist-finetune

It writes OUT/{constant,debias}/ (biaskit runs that load with biaskit.load), OUT/compare.csv (every
statistic, every probed t), OUT/summary.csv (the numbers the README quotes) and OUT/samples.png/.pdf.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

HERE = Path(__file__).resolve().parent
CHECKPOINT = HERE.parent / ".." / "shared" / "checkpoints" / "mnist-ddpm-cnn" / "ddpm_mnist_starter.pth"
# how the checkpoint is read (examples/mnist_ddpm_cnn.py says why)
LOADER = {"model_spec": f"{HERE / 'mnist_ddpm_cnn.py'}:factory", "state_dict_prefix": "gt.",
          "abar_key": "alpha_t", "time_input": "scaled", "time_scale": 0.001,
          "data_range": [-0.5, 0.5], "trained_timesteps": [1, 999]}
WEIGHTINGS = ("constant", "debias")
STATS = ("x0_mse", "x0_bias_l2")


def finetune_config(weighting: str, args) -> dict:
    """The fine-tuning run of one weighting: everything but loss.weighting is shared."""
    return {"init": {"path": str(args.checkpoint), "options": LOADER},
            "data": {"name": "mnist", "n_train": 4000, "n_test": 1000},
            # as guided-diffusion and the Debias fork: raw weights, no gradient clipping
            "loss": {"target": "eps", "weighting": weighting, "normalize": "none"},
            "optim": {"lr": args.lr, "grad_clip": None}, "ema": {"decay": 0.99, "start": 0},
            "batch_size": args.batch_size, "steps": args.steps, "ckpt_every": args.steps,
            "log_every": 25, "seed": args.seed, "device": "cpu", "threads": args.threads,
            "out": str(args.out / weighting)}


def tuned_models(args) -> dict:
    """{name: Denoiser}: the original and each fine-tuned model (trained unless already there)."""
    import biaskit
    from biaskit.checkpoint import checkpoint_steps
    from biaskit.train import run_training
    models = {"original": biaskit.load(args.checkpoint, **LOADER)}
    for w in WEIGHTINGS:
        run = args.out / w
        if args.steps not in checkpoint_steps(run):
            run_training(finetune_config(w, args), progress=False)
        models[w] = biaskit.load(run)
    return models


def summary(df: pd.DataFrame, high: int, low: int) -> pd.DataFrame:
    """Rows of the difference frames at the ``high`` noisiest and ``low`` least noisy probed t,
    with the reference model's own value of each statistic (``REF_STAT``) beside."""
    ts = sorted(df.t.unique())
    rows = df[(df.kind == "difference") & df.t.isin(ts[:low] + ts[-high:])]
    keep = ["model", "reference", "t", "snr"] + [c for s in STATS for c in (s, f"{s}_lo", f"{s}_hi")]
    ref = df[df.kind == "model"][["model", "t", *STATS]].rename(
        columns={"model": "reference", **{s: f"reference_{s}" for s in STATS}})
    out = rows[keep].merge(ref, on=["reference", "t"], how="left")
    return out.assign(noise=np.where(out.t.isin(ts[-high:]), "high", "low"))


def sample_grid(models: dict, data, args):
    """Samples of every model from the same x_T; (figure, {name: mean pixel [lo, hi]})."""
    from biaskit.plot_images import plot_image_table
    from biaskit.sampling import sample
    noise = torch.randn((args.samples, 1, 28, 28), generator=torch.Generator().manual_seed(args.seed))
    table, means = {}, {}
    for name, d in models.items():
        with torch.no_grad():
            x = sample(d, noise, sampler="ddim", steps=args.sample_steps, clip=True, progress=False).x0
        table[name] = x[:16]
        m = x.flatten(1).mean(1)
        half = 1.96 * float(m.std()) / np.sqrt(len(m))
        means[name] = (float(m.mean()), float(m.mean()) - half, float(m.mean()) + half)
    m = data.test.flatten(1).mean(1)
    means["data"] = (float(m.mean()), float(m.mean() - 1.96 * m.std() / np.sqrt(len(m))),
                     float(m.mean() + 1.96 * m.std() / np.sqrt(len(m))))
    fig = plot_image_table({k: {f"DDIM {args.sample_steps} steps, clipped": v} for k, v in table.items()},
                           data_range=(-0.5, 0.5), columns=4, reference=data.test[:16])
    return fig, means


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=CHECKPOINT)
    p.add_argument("--out", type=Path, default=Path("runs/mnist-finetune"))
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps per weighting")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--n", type=int, default=256, help="held-out images per probed t")
    p.add_argument("--num-timesteps", type=int, default=8, help="probed t, evenly over the schedule")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--sample-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not args.checkpoint.is_file():
        raise SystemExit(f"error: --checkpoint: {args.checkpoint} not found (the MNIST DDPM of "
                         "../shared/checkpoints/mnist-ddpm-cnn/)")
    from biaskit import compare
    from biaskit.plot_style import save
    from biaskit.data import load_dataset
    args.out.mkdir(parents=True, exist_ok=True)
    models = tuned_models(args)
    data = load_dataset("mnist", seed=args.seed, n_train=4000, n_test=1000, data_range=(-0.5, 0.5))
    frames = [compare(models, data, reference=ref, num_timesteps=args.num_timesteps, n=args.n,
                      seed=args.seed, progress=False) for ref in ("original", "constant")]
    df = pd.concat([frames[0], frames[1][frames[1].model == "debias - constant"]], ignore_index=True)
    df.to_csv(args.out / "compare.csv", index=False, float_format="%.6g")
    table = summary(df, high=2, low=2)
    fig, means = sample_grid(models, data, args)
    save(fig, args.out / "samples")
    table.to_csv(args.out / "summary.csv", index=False, float_format="%.6g")
    with pd.option_context("display.width", 200, "display.float_format", "{:.4g}".format):
        print(table.to_string(index=False))
    for name, (m, lo, hi) in means.items():
        print(f"mean pixel {name:9s} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]")


if __name__ == "__main__":
    main()
