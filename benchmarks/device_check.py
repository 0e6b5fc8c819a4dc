"""One short accelerator check, prepared for a session that is lent a GPU (also runs on a CPU).

Measures, in one run on the device at hand:
  1. training steps/s and peak memory of a full-size preset (default patches-debias full:
     32 px RGB UNet, batch 256, bf16 on CUDA) over a few hundred steps after warm-up;
  2. probe() against the same number of bare forward passes, with and without bf16 autocast;
  3. DDIM sampling (50 steps) against bare forward passes.
Prints a table and writes JSON to --json (e.g. $OUT/device_check.json on the device machine).

    python benchmarks/device_check.py --json $OUT/device_check.json          # GPU, ~3-5 min
    python benchmarks/device_check.py --profile quick --steps 20 --n 64      # CPU smoke

``--profile`` is a preset size here. The figure study's own GPU check is the ``gpu-smoke`` study
profile (``biaskit figures --profile gpu-smoke --device cuda``, see biaskit/study/profiles.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

from biaskit.config import apply_overrides, get_preset
from biaskit.probe import probe
from biaskit.sampling import sample
from biaskit.train import Trainer


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - t0, out


def _bare_forwards(den, shape, n_calls, batch, device, amp):
    x = torch.randn((batch, *shape), device=device)
    t = torch.randint(0, den.schedule.T, (batch,), device=device)
    ctx = torch.autocast("cuda", dtype=torch.bfloat16) if amp else torch.autocast("cpu", enabled=False)

    def run():
        with torch.inference_mode(), ctx:
            for _ in range(n_calls):
                den.net(x, den.time_features(t))
    return _timed(run, device)[0]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="patches-debias")
    p.add_argument("--profile", default="full")
    p.add_argument("--steps", type=int, default=300, help="timed training steps (after 20 warm-up)")
    p.add_argument("--n", type=int, default=1024, help="probe samples per t")
    p.add_argument("--num-timesteps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=1024, help="probe / sampling batch")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    report = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
              "torch": torch.__version__, "preset": f"{args.preset} ({args.profile})"}

    warm = 20
    with tempfile.TemporaryDirectory() as out:
        cfg = apply_overrides(get_preset(args.preset, args.profile),
                              [f"steps={warm + args.steps}", f"out={out}", "ckpt_every=1000000",
                               "log_every=1000000", "probe_every=0", f"device={device.type}"])
        trainer = Trainer(cfg)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        it = trainer.run(progress=False)
        for _ in range(warm):
            next(it)
        dt, _ = _timed(lambda: [s for s in it], device)
        report["train_steps_per_s"] = args.steps / dt
        report["train_images_per_s"] = args.steps * cfg.batch_size / dt
        report["train_peak_mem_GiB"] = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        report["precision"] = cfg.precision
        den = trainer.denoiser(ema=True).eval()

    from biaskit.data import load_dataset
    data = load_dataset(cfg.data.name, **cfg.data.options)
    shape, B = tuple(data.shape), args.batch_size
    pairs = args.num_timesteps * min(args.n, len(data.test))
    calls = -(-pairs // B)
    for amp in ([False, True] if cuda else [False]):
        kw = dict(num_timesteps=args.num_timesteps, n=args.n, batch_size=B, device=device,
                  progress=False, amp=amp, oracle=False)
        probe(den, data, **kw)  # warm-up (cudnn autotune, allocator)
        t_probe, _ = _timed(lambda: probe(den, data, **kw), device)
        t_bare = _bare_forwards(den, shape, calls, B, device, amp)
        tag = "bf16" if amp else "fp32"
        report[f"probe_{tag}_s"], report[f"bare_{tag}_s"] = t_probe, t_bare
        report[f"probe_over_bare_{tag}"] = t_probe / t_bare
    sample(den, (B, *shape), sampler="ddim", steps=5, progress=False, device=device)
    t_sample, _ = _timed(lambda: sample(den, (B, *shape), sampler="ddim", steps=50, progress=False,
                                        device=device), device)
    t_bare = _bare_forwards(den, shape, 50, B, device, False)
    report.update(sample_ddim50_s=t_sample, sample_bare50_s=t_bare, sample_over_bare=t_sample / t_bare)

    width = max(map(len, report))
    for k, v in report.items():
        print(f"{k:<{width}}  {v:.4g}" if isinstance(v, float) else f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
