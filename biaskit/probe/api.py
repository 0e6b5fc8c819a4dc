"""The probe's one entry point: :func:`compare` runs any number of models on the same draws and
differences them against a reference; :func:`probe` is its one-model case. Both take the
settings of :class:`ProbeOptions`, as an object or as keywords."""

from __future__ import annotations

import dataclasses
import platform
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import __version__
from ..denoiser import Denoiser
from ..distributed import rank_world
from ..formulations import on_common_logsnr
from ..intervals import LEVEL, bootstrap_weights
from ..safeload import file_sha256
from .draws import chunk_rows, held_out, schedule_indices, select_labelled, timestep_grid
from .evaluate import check_finite, evaluate
from .pipeline import Summaries
from .statistics import CLIP_TOL, Setup, columns, names, summarise

METHODS = {
    "level": LEVEL,
    "means": "t-interval: mean +- t_{0.975,n-1} * sd / sqrt(n) over the n per-sample values (CLT)",
    "nonlinear_delta": "x0_var: delta method, the t-interval of its per-sample influence values",
    "nonlinear_bootstrap": "x0_var: percentile interval over bootstrap resamples of the n samples",
    "bias_sq": "x0_bias_sq = ||b_hat||^2 - tr(S)/n, unbiased for ||b||^2 (x0_var uses it)",
    "bias_l2": "x0_bias_l2 = sqrt(max(0, x0_bias_sq)); interval by test inversion of "
               "Q = ||b_hat||^2 / tr(S), whose law under ||b|| = r (Sigma = S, Wishart trace) is "
               "simulated with 8192 draws, r kept if kept along b_hat's direction or S's least- "
               "or most-spread eigenvector; Neyman construction with lower-tail share "
               "(a/2)(1 - exp(-r^2 n / tr S)), one-sided at r = 0; x0_bias_sq: its square",
    "bias_p": "x0_bias_p: Hotelling T^2 test of b = 0, F(q, n - q), q = rank S",
    "bias_difference": "difference rows of x0_bias_l2 / x0_bias_sq: test inversion of "
                       "T = stat_B - stat_A, whose law is simulated from the joint Gaussian law "
                       "of both models' channel means (Sigma = joint S, Wishart traces, 8192 "
                       "draws) at a profiled nuisance: the pair of means nearest b_hat in the "
                       "(S/n)^+ metric with the unbiased norms, moved along the constrained "
                       "(Lagrange) curve to the candidate difference (x0_bias_l2: or the "
                       "nuisance with one norm at 0, whichever keeps it); equal tails",
    "paired": "differences: the same rules applied to per-sample differences of the two models "
              "on the same draws (common random numbers)",
}


@dataclass(frozen=True)
class ProbeOptions:
    """How to probe; every field is also a keyword of :func:`probe` and :func:`compare`.

    timesteps: the model's timesteps to probe (see :func:`~biaskit.probe.draws.schedule_indices`);
        else num_timesteps / stratified: the grid over the schedule's steps
        (:func:`~biaskit.probe.draws.timestep_grid`).
    n: held-out samples per t (all of them if fewer). seed: samples, noise, grid, bootstrap.
    batch_size: (t, sample) pairs per forward pass; the results do not depend on it.
    oracle: a Denoiser giving E[x0 | x_t] (same schedule); None builds it from ``data.mixture``
        when the Dataset has one; False turns it off. Adds oracle_mse and excess_mse.
    device: where to run (default: the first model's device). The models are moved there.
    bootstrap: B > 0 gives x0_var percentile-bootstrap intervals (else delta method).
    progress: a progress bar on rank 0.
    amp, channels_last: bf16 autocast and channels_last inputs (default on for cuda, off on cpu).
    bands: spatial-frequency bands for x0_err_band{j} (images only).
    by_class: one set of rows per class of a labelled data set (column ``label``), each over
        that class's held-out samples (n per class, same seed); needs labels.
    overlap: compute the summaries on a worker thread while the forwards run
        (:class:`~.pipeline.Summaries`); False: after them, in this thread. The numbers are the
        same either way.
    """

    timesteps: object = None
    num_timesteps: int | None = None
    stratified: bool = False
    n: int = 512
    seed: int = 0
    batch_size: int = 256
    oracle: object = None
    device: object = None
    bootstrap: int = 0
    progress: bool = True
    amp: bool | None = None
    channels_last: bool | None = None
    bands: int = 4
    by_class: bool = False
    overlap: bool = True


def _options(options: ProbeOptions | None, settings: dict) -> ProbeOptions:
    known = {f.name for f in dataclasses.fields(ProbeOptions)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown probe option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(options or ProbeOptions(), **settings)


@dataclass
class Evaluation:
    """Per-sample statistics Z (M, K, n, S) of the named models at schedule positions ts (K,),
    with the setup that decides the statistics, bootstrap weights W (B, n) or None, and metadata."""

    names: list
    Z: np.ndarray
    ts: np.ndarray
    n: int
    schedule: object
    setup: Setup
    W: np.ndarray | None
    metadata: dict
    process_t: dict = dataclasses.field(default_factory=dict)
    summaries: dict = dataclasses.field(default_factory=dict)  # {(m, reference or None): summary}

    def frame(self, model: str, summary: dict, process_t=None) -> pd.DataFrame:
        """One row per t: model, t, schedule_index, snr, logsnr, [process_t,] n, then each
        statistic and its interval. ``process_t`` (K,): a process model's own time at each t."""
        idx = torch.as_tensor(self.ts)
        cols = {"model": model, "t": self.schedule.timesteps[idx].numpy().astype(np.int64),
                "schedule_index": np.asarray(self.ts, dtype=np.int64), "snr": self.schedule.snr[idx].numpy(),
                "logsnr": self.schedule.logsnr[idx].numpy()}
        if process_t is not None:
            cols["process_t"] = process_t
        cols["n"] = self.n
        for name in names(self.setup):
            est, lo, hi = summary[name]
            cols[name] = est
            if lo is not None:
                cols[f"{name}_lo"], cols[f"{name}_hi"] = lo, hi
        return pd.DataFrame(cols)

    def summary(self, m: int, reference: int | None = None) -> dict:
        """Model m's statistics, or with ``reference`` those of model m minus the reference's
        (computed while the forwards ran when the probe asked for them, else now)."""
        if (m, reference) in self.summaries:
            return self.summaries[(m, reference)]
        if reference is None:
            return summarise([self.Z[m]], [1.0], self.setup, self.W, self.metadata["seed"], LEVEL)
        return summarise([self.Z[m], self.Z[reference]], [1.0, -1.0], self.setup, self.W,
                         self.metadata["seed"], LEVEL)


def _default_oracle(data, schedule, x0_shape):
    mixture = getattr(data, "mixture", None)
    if mixture is None:
        return None
    from ..oracle import oracle_denoiser
    return oracle_denoiser(mixture, schedule, x0_shape, getattr(data, "data_range", (-1.0, 1.0)),
                           name="oracle")


def model_identity(denoiser: Denoiser) -> dict:
    """denoiser.describe(), plus the sha256 of its file when it names one and has no hash yet."""
    info = dict(denoiser.describe()) if hasattr(denoiser, "describe") else {"name": str(denoiser)}
    if "sha256" in info:
        return info
    files = [info[k] for k in ("path", "checkpoint", "file") if isinstance(info.get(k), str)]
    if isinstance(info.get("run_dir"), str):  # a biaskit run: the weights file of its step
        from ..checkpoint import checkpoint_dir
        try:
            ckpt = checkpoint_dir(info["run_dir"], info.get("step"))
            files.append(str(ckpt / f"{'model' if info.get('weights') == 'online' else 'ema'}.safetensors"))
        except (FileNotFoundError, ValueError):
            pass
    for f in files:
        if Path(f).is_file():
            info["sha256"], info["sha256_of"] = file_sha256(f), f
            break
    return info



def _check_labels(models: dict[str, Denoiser], labels) -> None:
    """A conditional model without one class for all needs each sample's label."""
    for name, d in models.items():
        c = getattr(d, "conditioning", None)
        if c is not None and c.class_label is None and labels is None:
            raise ValueError(f"model {name!r} is class-conditional and the data carry no labels: "
                             "probe labelled data (digits, mnist, an image folder with one "
                             "subfolder per class) or give one class for all with --class-label K")


def _check_models(models: dict[str, Denoiser], data, o: ProbeOptions):
    names_, dens = list(models), list(models.values())
    schedule = dens[0].schedule
    for name, d in models.items():
        if not d.schedule.same_as(schedule):
            raise ValueError(f"model {name!r} uses schedule {d.schedule!r}, but {names_[0]!r} uses "
                             f"{schedule!r}: compared models must share one schedule")
    if int(o.batch_size) < 1:
        raise ValueError(f"batch_size must be positive, got {o.batch_size}")
    data_range = getattr(data, "data_range", None)
    for name, d in models.items():
        if data_range is not None and tuple(map(float, data_range)) != tuple(d.data_range):
            warnings.warn(f"model {name!r} expects data in {d.data_range} but the data lie in "
                          f"{tuple(data_range)}; probing without rescaling")
    return schedule


def _oracle(o: ProbeOptions, data, schedule, x0):
    oracle = _default_oracle(data, schedule, tuple(x0.shape[1:])) if o.oracle is None else o.oracle
    oracle = None if oracle is False else oracle
    if oracle is not None and not oracle.schedule.same_as(schedule):
        raise ValueError(f"the oracle's schedule {oracle.schedule!r} differs from the model's {schedule!r}")
    return oracle


def _evaluate(models: dict[str, Denoiser], data, o: ProbeOptions, jobs=()) -> Evaluation:
    """Run the models over the draws; ``jobs``: the summaries (m, reference or None) to compute
    on a worker thread while the forwards run (:class:`~.pipeline.Summaries`)."""
    dens = list(models.values())
    schedule = _check_models(models, data, o)
    device = torch.device(o.device) if o.device is not None else dens[0].device
    x0, labels, data_spec = select_labelled(data, o.n, o.seed)
    _check_labels(models, labels)
    n = x0.shape[0]
    ts = timestep_grid(schedule.T, num_timesteps=o.num_timesteps, stratified=o.stratified, seed=o.seed) \
        if o.timesteps is None else schedule_indices(schedule, o.timesteps)
    oracle = _oracle(o, data, schedule, x0)
    image = x0.ndim == 4
    setup = Setup(C=x0.shape[1], bands=int(o.bands) if image else 0, oracle=oracle is not None)
    amp = (device.type == "cuda") if o.amp is None else bool(o.amp)
    channels_last = image and (device.type == "cuda" if o.channels_last is None else bool(o.channels_last))
    modes = [d.training for d in dens]
    for d in dens:
        d.to(device).eval()
        if channels_last:
            d.to(memory_format=torch.channels_last)
    if oracle is not None:
        oracle.to(device).eval()
    W = bootstrap_weights(n, int(o.bootstrap), o.seed) if o.bootstrap else None
    overlap = o.overlap and jobs and rank_world()[1] == 1
    pipeline = Summaries(jobs, len(ts), n, setup, W, o.seed) if overlap else None
    start = time.perf_counter()
    try:
        Z = evaluate(dens, oracle, x0, ts, seed=o.seed, batch_size=int(o.batch_size), device=device, amp=amp,
                     channels_last=channels_last, setup=setup, progress=o.progress, labels=labels,
                     worker=pipeline)
        check_finite(Z, ts, list(models), schedule,
                     pipeline.values()[1] if pipeline is not None and pipeline.complete() else None)
        summaries = pipeline.results() if pipeline is not None else {}
    finally:
        if pipeline is not None:
            pipeline.close()
        for d, mode in zip(dens, modes):
            d.train(mode)
    wall = time.perf_counter() - start
    meta = {
        "schedule": schedule.to_dict(),
        "parameterization": {k: d.parameterization for k, d in models.items()},
        "data": data_spec, "n": n, "seed": int(o.seed),
        "noise": f"randn per (seed, t, sample // {chunk_rows(x0.shape[1:])})",
        "timesteps": schedule.timesteps[torch.as_tensor(ts)].tolist(),
        "schedule_indices": [int(k) for k in ts],
        "grid": {"timesteps": None if o.timesteps is None else "given", "num_timesteps": o.num_timesteps,
                 "stratified": o.stratified},
        "models": {k: model_identity(d) for k, d in models.items()},
        "oracle": model_identity(oracle) if oracle is not None else None,
        "statistics": names(setup), "errors": "per-element means over C, H, W (or D)",
        "clip_tol": CLIP_TOL,
        "ci": {**METHODS, "nonlinear": "bootstrap" if o.bootstrap else "delta", "bootstrap": int(o.bootstrap)},
        "bands": setup.bands, "batch_size": int(o.batch_size), "device": str(device), "amp_bf16": amp,
        "channels_last": channels_last, "world_size": rank_world()[1], "wall_time_s": wall,
        "versions": {"biaskit": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "pandas": pd.__version__, "python": platform.python_version()},
    }
    process_t = {k: d.own_time(d.logsnr_at(torch.as_tensor(ts).long())).numpy()
                 for k, d in models.items() if hasattr(d, "own_time")}
    return Evaluation(list(models), Z, ts, n, schedule, setup, W, meta, process_t, summaries)


def _named(denoisers) -> dict[str, Denoiser]:
    if isinstance(denoisers, dict):
        return dict(denoisers)
    models = {}
    for d in denoisers:
        base = getattr(d, "name", None) or "model"
        name, k = base, 1
        while name in models:
            k += 1
            name = f"{base}#{k}"
        models[name] = d
    return models


def compare(denoisers, data, *, reference: str | None = None, options: ProbeOptions | None = None,
            **settings) -> pd.DataFrame:
    """Probe several models on the same draws (common random numbers) and difference them.

    ``denoisers``: {name: Denoiser} or a list (named by ``.name``, made unique). ``reference``: the
    name the others are compared to (default: the first). ``data``: a Dataset (its test split is
    used) or a tensor (N, C, H, W) / (N, D) of held-out x0. ``options`` / ``settings``: a
    :class:`ProbeOptions`, its fields given as keywords override it.

    Models of other processes (:class:`~biaskit.formulations.ProcessDenoiser`: EDM, flow, ...)
    are paired with the others at equal logsnr: each is re-viewed on the schedule of the first
    VP model (:func:`~biaskit.formulations.on_common_logsnr`), so all are probed at that
    schedule's logsnr values on the same draws; ``logsnr`` is the common axis of the rows.

    Returns one row per (model, t): model, kind, reference, t (the model's timestep),
    schedule_index (its position k among the schedule's steps), snr, logsnr, process_t (a process
    model's own time at that logsnr, in its code's direction; NaN for other models and for
    differences; only when some model is a process model), n, then each
    statistic followed by its ``_lo`` and ``_hi``:
      - kind == "model": that model's statistics, reference "";
      - kind == "difference": one row per (other model, t) with model "NAME - REF", reference REF,
        and every statistic replaced by statistic(NAME) - statistic(REF), its interval computed
        from the per-sample paired differences.
    With ``by_class``, every row also has ``label`` and the statistics are those of that class's
    held-out samples (``data`` then needs labels: a labelled Dataset or a pair (x0, labels)).
    Conditional models get each sample's label (or their one ``class_label``).
    ``df.attrs["metadata"]`` holds the metadata for :func:`~biaskit.results.save_results`. Under
    torch.distributed every rank computes a shard and every rank returns the full, identical
    frame. NaN/inf from a model raise a ValueError naming the t.
    """
    o = _options(options, settings)
    if o.by_class:
        return _by_class(denoisers, data, reference, o)
    models = on_common_logsnr(_named(denoisers))
    if len(models) < 1:
        raise ValueError("compare needs at least one model")
    reference = list(models)[0] if reference is None else reference
    if reference not in models:
        raise ValueError(f"reference {reference!r} is not one of the models: {', '.join(models)}")
    r = list(models).index(reference)
    ev = _evaluate(models, data, o, jobs=[(m, None) for m in range(len(models))] +
                   [(m, r) for m in range(len(models)) if m != r])
    frames = []
    for m, name in enumerate(ev.names):
        frames.append(ev.frame(name, ev.summary(m), ev.process_t.get(name))
                      .assign(kind="model", reference=""))
    for m, name in enumerate(ev.names):
        if m != r:
            frames.append(ev.frame(f"{name} - {reference}", ev.summary(m, r))
                          .assign(kind="difference", reference=reference))
    out = pd.concat(frames, ignore_index=True)
    rest = [c for c in out.columns if c not in ("model", "kind", "reference", "process_t")]
    if "process_t" in out:  # beside t and logsnr, whichever model's frame came first
        rest.insert(rest.index("logsnr") + 1, "process_t")
    out = out[["model", "kind", "reference"] + rest]
    out.attrs["metadata"] = {**ev.metadata, "reference": reference}
    return out


def _by_class(denoisers, data, reference, o: ProbeOptions) -> pd.DataFrame:
    """:func:`compare` on each class's held-out samples, rows tagged with column ``label``."""
    x, y, spec = held_out(data)
    if y is None:
        raise ValueError("by_class (--by-class) needs labelled data (digits, mnist, an image folder "
                         "with one subfolder per class)")
    frames, metas = [], {}
    for c in torch.unique(y).tolist():
        keep = y == c
        if int(keep.sum()) < 2:
            warnings.warn(f"class {c} has {int(keep.sum())} held-out sample(s); skipped")
            continue
        n = min(int(o.n), int(keep.sum()))  # n per class, at most the class's held-out samples
        part = compare(denoisers, (x[keep], y[keep]), reference=reference,
                       options=dataclasses.replace(o, by_class=False, n=n))
        metas[str(c)] = part.attrs["metadata"]
        frames.append(part.assign(label=c))
    out = pd.concat(frames, ignore_index=True)
    first = ["model", "kind", "reference", "label"]
    out = out[first + [c for c in out.columns if c not in first]]
    meta = dict(next(iter(metas.values())))
    meta["data"] = {**spec, "by_class": {c: m["data"] for c, m in metas.items()}}
    meta["wall_time_s"] = sum(m["wall_time_s"] for m in metas.values())
    out.attrs["metadata"] = meta
    return out


def probe(denoiser: Denoiser, data, *, options: ProbeOptions | None = None, **settings) -> pd.DataFrame:
    """Per-timestep statistics of one model: :func:`compare` of ``denoiser`` alone (named by its
    ``.name``, else "model"), without the kind and reference columns. Settings as :func:`compare`."""
    name = getattr(denoiser, "name", None) or "model"
    df = compare({name: denoiser}, data, options=options, **settings)
    meta = df.attrs.pop("metadata")  # pandas deep-copies attrs into every derived frame
    df = df.drop(columns=["kind", "reference"])
    df.attrs["metadata"] = {k: v for k, v in meta.items() if k != "reference"}
    return df
