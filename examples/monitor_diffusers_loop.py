"""A diffusers-style training loop (UNet2DModel + DDPMScheduler + AdamW, as in diffusers'
``train_unconditional.py``) with a biaskit Monitor: the validation loss per timestep bucket at fixed
timesteps and fixed noise that fine-tuning scripts lack, with intervals and the paired change since
the previous record.

    python examples/monitor_diffusers_loop.py --steps 1000 --every 100 --out runs/monitor-diffusers

The monitor reads the UNet's ``UNet2DOutput.sample`` and the scheduler's betas and prediction type
itself: ``biaskit.Monitor(unet, data, scheduler=noise_scheduler, ...)``. Digits (8x8, one channel,
in [-1, 1]) keep it small; use your own held-out images as ``data`` (a tensor (N, C, H, W)).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, UNet2DModel

import biaskit

TIMESTEPS = (50, 250, 500, 750, 999)


def make_unet(width: int = 32, size: int = 8) -> UNet2DModel:
    return UNet2DModel(sample_size=size, in_channels=1, out_channels=1, block_out_channels=(width, 2 * width),
                       layers_per_block=1, norm_num_groups=8,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"))


def main(steps: int = 1000, every: int = 100, out=None, n: int = 128, batch: int = 64, lr: float = 1e-3,
         seed: int = 0, width: int = 32, prediction_type: str = "epsilon"):
    torch.manual_seed(seed)
    data = biaskit.data.load_dataset("digits", seed=seed)
    unet = make_unet(width)
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr)
    monitor = biaskit.Monitor(unet, data, scheduler=noise_scheduler, timesteps=TIMESTEPS, n=n,
                              every=every, out=out, seed=seed)
    print(f"monitor: {monitor.cost['forward_passes_per_record']} forward passes per record")
    unet.train()
    for step in range(1, steps + 1):
        clean = data.train[torch.randint(len(data.train), (batch,))]
        noise = torch.randn_like(clean)
        timesteps = torch.randint(noise_scheduler.config.num_train_timesteps, (batch,))
        noisy = noise_scheduler.add_noise(clean, noise, timesteps)
        target = noise if prediction_type == "epsilon" else noise_scheduler.get_velocity(clean, noise, timesteps)
        loss = F.mse_loss(unet(noisy, timesteps).sample, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        record = monitor.step(step)
        if record is not None:
            r = record[record.kind == "model"].set_index("t")
            print(f"step {step}: loss {loss.item():.4f}; eps-MSE per t: "
                  + ", ".join(f"{t}: {v:.4f}" for t, v in r.eps_mse.items()))
    return monitor, unet, noise_scheduler, data


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--out", default="runs/monitor-diffusers")
    a = p.parse_args()
    main(a.steps, a.every, a.out)
