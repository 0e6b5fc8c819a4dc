"""The fine-tuning study on a guided-diffusion-layout model with a learned variance, trained here:
the paper's recipe (preset ``celebahq-constant``: ADM UNet with learn_sigma, L_hybrid, linear
T = 1000, eps target; its quick size on the built-in 16 px photo patches) is trained with the
usual constant weighting, saved as guided-diffusion saves a model (a plain state dict, ``.pt``),
read back by the ADM loader with guided-diffusion's script flags like any third-party file, then
fine-tuned with constant and with debias weighting (L_hybrid kept: the variance term trains too)
and probed before and after on common random numbers (``finetune_study.py``). Samples: DDPM with
the learned variance and x0_hat clipped (the paper's sampler: guided-diffusion's default
clip_denoised), from the same x_T for the three models.

Run from the repository root (the base run is the slow part: about 5 minutes on one CPU thread):

    python examples/finetune_adm.py --out runs/adm-finetune

OUT/base/ is the base run and OUT/base/model.pt its guided-diffusion file; the rest as in
``finetune_study.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from finetune_study import Original, add_arguments, run  # noqa: E402

PRESET = "celebahq-constant"
# guided-diffusion's script flags for the preset's quick network (what a user of that repository
# passes to its sampling script); the rest is read from the state dict
FLAGS = {"noise_schedule": "linear", "diffusion_steps": 1000, "image_size": 16, "num_heads": 4,
         "learn_sigma": True, "data_range": [-1.0, 1.0]}


def base_config(args) -> dict:
    """The base run: the preset's quick size, ``--base-steps`` steps."""
    from biaskit.config import get_preset, to_dict
    d = to_dict(get_preset(PRESET, "quick"))
    d.update(steps=args.base_steps, ckpt_every=args.base_steps, out=str(args.out / "base"),
             seed=args.seed, threads=args.threads)
    return d


def guided_diffusion_file(args) -> Path:
    """Train the base run unless it is there, save its (EMA) network as a guided-diffusion state
    dict, and check that the ADM loader reads the file back to the same outputs (exactly)."""
    import biaskit
    from biaskit.checkpoint import checkpoint_steps
    from biaskit.train import run_training
    base = args.out / "base"
    if args.base_steps not in checkpoint_steps(base):
        run_training(base_config(args), progress=False)
    run_model = biaskit.load(base)
    path = base / "model.pt"
    torch.save(run_model.net.state_dict(), path)
    loaded = biaskit.load(path, **FLAGS)
    x = torch.randn((4, *loaded.shape), generator=torch.Generator().manual_seed(args.seed))
    t = torch.tensor([0, 300, 700, 999])
    with torch.no_grad():
        a, b = run_model(x, t), loaded(x, t)
    if not (torch.equal(a.x0_hat, b.x0_hat) and loaded.schedule.same_as(run_model.schedule)):
        raise SystemExit(f"error: {path} does not read back as the run it was saved from")
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/adm-finetune"))
    p.add_argument("--base-steps", type=int, default=1000, help="training steps of the base model")
    args = add_arguments(p, steps=200, batch_size=32, lr=2e-4, sample_steps=100).parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    from biaskit.config import get_preset
    data = get_preset(PRESET, "quick").data
    original = Original(guided_diffusion_file(args), FLAGS,
                        {"name": data.name, "n_train": data.n_train, "n_test": data.n_test,
                         "options": dict(data.options)},
                        target="eps", sampling={"sampler": "ddpm", "variance": "learned", "clip": True})
    return run(original, args)


if __name__ == "__main__":
    main()
