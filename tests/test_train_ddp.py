"""DDP: 2 gloo processes with batch B each end with the same parameters as 1 process with batch 2B
(same global data order, same t and eps), here on CPU."""

import os
import socket

import torch
import torch.multiprocessing as mp

from biaskit import checkpoint as C
from biaskit.train import run_training


def _config(out):
    # global batch 16: 2 ranks x 8 or 1 rank x 16; clipping and EMA act on the all-reduced gradient
    return {"model": {"name": "mlp", "config": {"hidden": 16, "blocks": 1, "emb_dim": 16, "freq_dim": 8}},
            "batch_size": 16, "steps": 5, "ckpt_every": 5, "log_every": 1, "out": str(out),
            "optim": {"lr": 1e-2, "grad_clip": 0.5}, "ema": {"decay": 0.5}, "device": "cpu"}


def _data():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0)) * 0.5  # 40 % 16 != 0: epochs wrap
    return x, x[:8]


def _worker(rank, world, port, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    import torch.distributed as dist
    try:
        run_training(_config(out), data=_data(), progress=False)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_equal_one_process_with_double_batch(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = run_training(_config(tmp_path / "single"), data=_data(), progress=False)
    finally:
        torch.set_num_threads(n)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)
    for ema in (False, True):
        ddp = C.load_run(tmp_path / "ddp", ema=ema).net.state_dict()
        ref = (single.ema if ema else single.net).state_dict()
        for k, v in ref.items():
            torch.testing.assert_close(ddp[k], v, rtol=1e-5, atol=1e-6)
    init = run_training({**_config(tmp_path / "init"), "steps": 1}, data=_data(), progress=False).net
    moved = any(not torch.allclose(init.state_dict()[k], v) for k, v in single.net.state_dict().items())
    assert moved
    import pandas as pd
    log_1, log_2 = pd.read_csv(tmp_path / "single" / "log.csv"), pd.read_csv(tmp_path / "ddp" / "log.csv")
    # the logged loss is the mean over both ranks, i.e. the single-process loss
    pd.testing.assert_series_equal(log_2.loss, log_1.loss, rtol=1e-5)
