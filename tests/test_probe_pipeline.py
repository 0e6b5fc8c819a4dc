"""The probe's summaries by groups of t and on a worker thread give the same bits as all at once."""

import numpy as np
import pytest
import torch

from biaskit.denoiser import Denoiser
from biaskit.intervals import bootstrap_weights
from biaskit.probe import compare
from biaskit.probe.pipeline import Summaries
from biaskit.probe.statistics import GROUP, Sample, Setup, columns, summarise, summarise_samples


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        for x, y in zip(a[name], b[name]):
            assert (x is None) == (y is None), name
            if x is not None:
                assert x.dtype == y.dtype and np.array_equal(x.view(np.uint8), y.view(np.uint8)), name


@pytest.mark.parametrize("C,bands,oracle,boot", [(1, 0, True, False), (2, 0, False, True), (3, 4, False, False),
                                                 (3, 0, True, True)])
def test_any_grouping_of_t_gives_the_same_bits(C, bands, oracle, boot):
    """Each statistic of a t reads that t's rows alone: summarising all K positions in one call
    (no grouping), in GROUP-sized groups (summarise) and in arbitrary pieces agree bit for bit,
    for one model and for a paired difference."""
    rng = np.random.default_rng(C * 10 + bands)
    setup = Setup(C=C, bands=bands, oracle=oracle)
    S = columns(setup)["width"]
    K, n = 2 * GROUP + 3, 57
    Z = rng.standard_normal((K, n, S)) * rng.uniform(0.01, 3, S) + rng.uniform(-1, 1, S)
    Z2 = Z + 0.1 * rng.standard_normal((K, n, S))
    W = bootstrap_weights(n, 40, 1) if boot else None
    for signs, Zs in (([1.0], [Z]), ([1.0, -1.0], [Z, Z2])):
        whole = summarise_samples([Sample(z, W) for z in Zs], signs, setup, 0, 0.95)
        _same(summarise(Zs, signs, setup, W, 0), whole)
        cuts = [0, 1, 5, 6, K]
        pieces = [summarise([z[a:b] for z in Zs], signs, setup, W, 0) for a, b in zip(cuts, cuts[1:])]
        joined = {k: tuple(None if v is None else np.concatenate([p[k][i] for p in pieces])
                           for i, v in enumerate(whole[k])) for k in whole}
        _same(joined, whole)


class _Net(torch.nn.Module):
    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, x, t):
        return self.scale * x + 0.01 * t.float().reshape(-1, *[1] * (x.ndim - 1)) / 1000


def test_compare_with_the_worker_equals_summaries_computed_afterwards():
    """compare() (summaries on the worker while the forwards run, batches straddling t) gives the
    frame the serial path gives: the same Z summarised after the evaluation."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(37, 3, generator=g) * 2 - 1
    models = {"a": Denoiser(_Net(0.3), "linear", "eps", name="a"), "b": Denoiser(_Net(0.5), "linear", "eps", name="b")}
    kw = dict(num_timesteps=GROUP * 2 + 1, n=37, batch_size=50, progress=False, oracle=False, bootstrap=20)
    piped = compare(models, x0, **kw)
    after = compare(models, x0, **kw, overlap=False)  # Evaluation.summary computes them afterwards
    assert piped.shape == after.shape and piped.shape[0] == 3 * (GROUP * 2 + 1)
    assert piped.to_csv() == after.to_csv()


def test_a_model_returning_nan_is_named_not_summarised():
    """A NaN at one t of the second model still stops the probe naming that model and that t, the
    same with the worker (which records finiteness per (model, t) and skips the group) and without."""
    class Bad(torch.nn.Module):
        def forward(self, x, t):
            out = x.clone()
            out[t == 454] = float("nan")  # one middle t of the 12-step grid (0, 91, .., 999)
            return out
    x0 = torch.rand(20, 2) * 2 - 1
    models = {"good": Denoiser(_Net(0.3), "linear", "eps", name="good"),
              "bad": Denoiser(Bad(), "linear", "eps", name="bad")}
    for overlap in (True, False):
        with pytest.raises(ValueError, match=r"model 'bad' returned NaN or inf at t=454 "):
            compare(models, x0, num_timesteps=12, n=20, batch_size=16, progress=False, oracle=False,
                    overlap=overlap)


def test_the_workers_float64_rows_equal_the_whole_conversion():
    """Z as the worker converts it group by group (two models, batches straddling t) is the
    array the serial path converts whole, byte for byte."""
    from biaskit.probe.api import ProbeOptions, _evaluate
    x0 = torch.rand(37, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    models = {"a": Denoiser(_Net(0.3), "linear", "eps", name="a"), "b": Denoiser(_Net(0.5), "linear", "eps", name="b")}
    o = ProbeOptions(num_timesteps=GROUP * 2 + 3, n=37, batch_size=50, progress=False, oracle=False)
    piped = _evaluate(models, x0, o, jobs=[(0, None), (1, 0)])
    serial = _evaluate(models, x0, o)
    assert piped.Z.shape == serial.Z.shape == (2, GROUP * 2 + 3, 37, serial.Z.shape[-1])
    assert piped.Z.dtype == serial.Z.dtype == np.float64 and piped.Z.tobytes() == serial.Z.tobytes()


def test_an_error_on_the_worker_reaches_the_caller(monkeypatch):
    """An exception while summarising is raised by results(), not lost on the thread."""
    import biaskit.probe.pipeline as pl

    def boom(*args, **kwargs):
        raise ArithmeticError("summary failed")
    monkeypatch.setattr(pl, "summarise_samples", boom)
    s = Summaries([(0, None)], K=3, n=4, setup=Setup(C=1, bands=0, oracle=False), W=None, seed=0)
    s.ready(torch.zeros(1, 12, columns(Setup(C=1, bands=0, oracle=False))["width"]), 3)
    with pytest.raises(ArithmeticError, match="summary failed"):
        s.results()


def test_group_bounds_cover_every_position_once_and_end_in_one():
    """Groups tile 0..K-1 in order, none larger than GROUP, and the last is one position."""
    from biaskit.probe.pipeline import group_bounds
    for K in range(1, 4 * GROUP + 3):
        b = group_bounds(K)
        assert b[0][0] == 0 and b[-1][1] == K and b[-1][1] - b[-1][0] == 1
        assert all(k1 == k0 for (_, k1), (k0, _) in zip(b, b[1:]))
        assert all(0 < k1 - k0 <= GROUP for k0, k1 in b)


@pytest.mark.parametrize("shape", [(3, 32, 32), (1, 28, 28), (2,), (3,), (3, 5, 7)])
def test_noise_drawn_for_n_samples_equals_the_whole_chunks(shape):
    """A noise cache told it serves n samples draws only the rows it needs where that is the
    prefix of the whole chunk, and gives the very numbers the whole chunks give (any n, any
    shape: those whose row count is not a multiple of 16 numbers draw whole chunks)."""
    from biaskit.probe.draws import NoiseCache, chunk_rows
    R = chunk_rows(shape)
    for n in (1, 2, 8, 24, R, R + 5):
        full, part = NoiseCache(3, shape, "cpu"), NoiseCache(3, shape, "cpu", n=n)
        for t in (0, 500, 999):
            assert torch.equal(full(t, 0, n), part(t, 0, n))
            assert torch.equal(full(t, n // 2, n), part(t, n // 2, n))
    with pytest.raises(ValueError, match="noise cache for 8 samples"):
        NoiseCache(3, shape, "cpu", n=8)(0, 0, 9)


def test_per_batch_jobs_run_in_order_and_their_errors_reach_drain():
    """submit() runs jobs on the worker in order, before groups handed over later; at most
    PENDING wait; drain() raises a job's error."""
    from biaskit.probe.pipeline import PENDING
    s = Summaries([(0, None)], K=1, n=2, setup=Setup(C=1, bands=0, oracle=False), W=None, seed=0)
    seen = []
    for i in range(3 * PENDING):
        s.submit(seen.append, i)
        assert len(s.jobs_pending) <= PENDING
    s.drain()
    assert seen == list(range(3 * PENDING))
    s.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        s.drain()
    s.close()
