"""The probe under torch.distributed (2 gloo processes on CPU) equals the single-process probe."""

import socket

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from biaskit.denoiser import Denoiser
from biaskit.probe import compare, probe
from biaskit.schedules import get_schedule


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(2, 6, 3, padding=1)
        self.b = nn.Conv2d(6, 2, 3, padding=1)

    def forward(self, x, t):
        return self.b(torch.relu(self.a(x)) * (1 + t.float().view(-1, 1, 1, 1) / 1000))


def setup():
    torch.manual_seed(0)
    a = Denoiser(Net(), get_schedule("cosine", 100), "v", name="a")
    b = Denoiser(Net(), get_schedule("cosine", 100), "v", name="b")
    x0 = torch.randn(50, 2, 6, 6, generator=torch.Generator().manual_seed(1)).clamp(-1, 1)
    return a, b, x0


# n * K = 350 pairs: the two shards (175 each) cut through the samples of one t
KW = dict(num_timesteps=7, n=50, seed=3, batch_size=32, progress=False)


def worker(rank, port, out):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        a, b, x0 = setup()
        p = probe(a, x0, **KW)
        c = compare({"a": a, "b": b}, x0, **KW)
        assert p.attrs["metadata"]["world_size"] == 2
        if rank == 0:
            p.to_pickle(f"{out}/probe.pkl")
            c.to_pickle(f"{out}/compare.pkl")
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_equal_one(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b, x0 = setup()
    for name, single in (("probe", probe(a, x0, **KW)), ("compare", compare({"a": a, "b": b}, x0, **KW))):
        multi = pd.read_pickle(tmp_path / f"{name}.pkl")
        num = single.select_dtypes("number").columns
        assert list(multi.columns) == list(single.columns)
        assert (multi.select_dtypes(exclude="number") == single.select_dtypes(exclude="number")).all().all()
        np.testing.assert_allclose(multi[num], single[num], rtol=1e-6, atol=1e-9)
