"""Datasets: shapes, ranges, seeded determinism, disjoint splits, known counts, folder loading and
errors, and agreement between sampled data and their declared mixture."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits

from biaskit.data import DATASETS, dataset_names, load_dataset, to_range

TOYS = ["gmm2d", "moons", "swissroll", "checkerboard", "gaussian", "gmm"]


@pytest.mark.parametrize("name", TOYS)
def test_sampled_data_shape_determinism_and_disjoint_split(name):
    ds = load_dataset(name, seed=3, n_train=500, n_test=100)
    assert ds.train.shape == (500, 2) and ds.test.shape == (100, 2) and ds.train.dtype == torch.float32
    assert ds.shape == (2,) and ds.channels == 2 and not ds.is_image
    again = load_dataset(**json.loads(json.dumps(ds.spec)))
    assert torch.equal(ds.train, again.train) and torch.equal(ds.test, again.test)
    assert not torch.equal(ds.train, load_dataset(name, seed=4, n_train=500, n_test=100).train)
    both = torch.cat([ds.train, ds.test])
    assert torch.unique(both, dim=0).shape[0] == 600
    assert (name in ("gmm2d", "gaussian", "gmm")) == (ds.mixture is not None)


def test_checkerboard_and_swissroll_geometry():
    x = load_dataset("checkerboard", n_train=2000, n_test=0).train.numpy()
    cell = np.floor((x + 1) * 2).astype(int)          # 4 x 4 cells of width 0.5 on [-1, 1]^2
    assert np.all((cell.sum(1) % 2) == 0) and np.abs(x).max() <= 1
    r = np.linalg.norm(load_dataset("swissroll", n_train=2000, n_test=0, noise=0.0).train.numpy(), axis=1)
    assert r.min() >= 1 / 3 - 1e-6 and r.max() <= 1 + 1e-6   # s / (4.5 pi), s in [1.5 pi, 4.5 pi]


def test_mixture_is_the_law_of_the_samples_in_data_coordinates():
    ds = load_dataset("gaussian", dim=3, n_train=50_000, n_test=0, data_range=(0.0, 4.0))
    x = ds.train.double().numpy()
    # canonical [-1, 1] -> [0, 4] is x -> 2 x + 2: the mixture must move with the data
    assert np.allclose(x.mean(0), ds.mixture.means[0].numpy(), atol=0.01)
    assert np.allclose(np.cov(x.T), ds.mixture.covs[0].numpy(), atol=0.01)
    base = load_dataset("gaussian", dim=3, n_train=50_000, n_test=0)
    assert torch.allclose(ds.mixture.means, 2 * base.mixture.means + 2)
    assert torch.allclose(ds.train.double(), 2 * base.train.double() + 2, atol=1e-5)
    g = load_dataset("gmm2d", n_train=40_000, n_test=0)
    assert g.mixture.K == 8 and np.allclose(np.linalg.norm(g.mixture.means.numpy(), axis=1), 0.75)
    assert abs(g.train.var(0).sum().item() - (0.75**2 + 2 * 0.05**2)) < 0.01


def test_gaussian_images_and_mixture_options():
    ds = load_dataset("gaussian", shape=[1, 4, 4], cov="diag", n_train=8, n_test=2)
    assert ds.train.shape == (8, 1, 4, 4) and ds.is_image and ds.mixture.dim == 16
    assert torch.allclose(ds.mixture.covs[0], torch.diag(ds.mixture.covs[0].diagonal()))
    g = load_dataset("gmm", dim=5, K=3, std=0.2, n_train=10, n_test=1)
    assert g.mixture.K == 3 and g.mixture.dim == 5
    assert torch.allclose(g.mixture.covs, 0.04 * torch.eye(5).double().expand(3, 5, 5))
    assert torch.equal(g.mixture.means, load_dataset("gmm", dim=5, K=3, seed=9, n_train=1).mixture.means)


def test_digits_count_range_and_pixels():
    ds = load_dataset("digits", seed=1)
    assert ds.train.shape[1:] == (1, 8, 8) and len(ds.train) + len(ds.test) == 1797
    ref = np.sort(load_digits().images.reshape(1797, -1) / 16 * 2 - 1, axis=0)
    got = np.sort(torch.cat([ds.train, ds.test]).reshape(1797, -1).numpy(), axis=0)
    np.testing.assert_allclose(got, ref, atol=1e-6)   # the same images, split without overlap
    small = load_dataset("digits", n_train=100, n_test=50, data_range=(0, 1))
    assert small.train.min() >= 0 and small.train.max() <= 1 and len(small.test) == 50
    with pytest.raises(ValueError, match="exceeds"):
        load_dataset("digits", n_train=1700, n_test=200)


def test_mnist_count_and_range():
    ds = load_dataset("mnist")
    assert ds.shape == (1, 28, 28) and len(ds.train) + len(ds.test) == 5000
    assert ds.train.min() == -1 and ds.train.max() == 1
    assert torch.unique(torch.cat([ds.train, ds.test]).flatten(1), dim=0).shape[0] > 4900


def test_patches_load_offline():
    ds = load_dataset("patches", n_train=64, n_test=16, size=32)
    assert ds.train.shape == (64, 3, 32, 32) and ds.test.shape == (16, 3, 32, 32)
    assert ds.train.min() >= -1 and ds.train.max() <= 1 and ds.train.std() > 0.1
    gray = load_dataset("patches", n_train=8, n_test=2, mode="L", downscale=2)
    assert gray.shape == (1, 16, 16)
    assert torch.equal(ds.train, load_dataset("patches", n_train=64, n_test=16, size=32).train)


def _png(path, color, size=(8, 6)):
    Image.new("RGB", size, color).save(path)


def test_image_folder(tmp_path):
    colors = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (51, 102, 204), (0, 0, 0)]
    for i, c in enumerate(colors):
        _png(tmp_path / f"im{i}.png", c)
    (tmp_path / "sub").mkdir()
    _png(tmp_path / "sub" / "x.jpeg", (255, 255, 255))
    (tmp_path / "notes.txt").write_text("not an image")
    ds = load_dataset(str(tmp_path), size=4, n_test=2, seed=0)
    assert ds.train.shape == (4, 3, 4, 4) and ds.test.shape == (2, 3, 4, 4)
    per_image = torch.cat([ds.train, ds.test]).mean((2, 3)).numpy()
    expected = np.array(colors + [(255, 255, 255)]) / 255 * 2 - 1
    np.testing.assert_allclose(sorted(map(tuple, per_image)), sorted(map(tuple, expected)), atol=0.02)
    gray = load_dataset(str(tmp_path), size=3, mode="L", n_test=0)
    assert gray.shape == (1, 3, 3) and len(gray.train) == 6
    assert torch.equal(load_dataset(**ds.spec).train, ds.train)


def test_image_folder_resizes_shorter_side_and_center_crops(tmp_path):
    a = np.zeros((30, 90, 3), np.uint8)           # h = 30, w = 90: red | green | blue thirds
    a[:, :30, 0] = a[:, 30:60, 1] = a[:, 60:, 2] = 255
    Image.fromarray(a).save(tmp_path / "wide.png")
    x = load_dataset(str(tmp_path), size=10, n_test=0).train[0]   # 30 x 90 -> 10 x 30, keep middle
    assert x.shape == (3, 10, 10)
    np.testing.assert_allclose(x[:, :, 1:-1].mean((1, 2)).numpy(), [-1, 1, -1], atol=0.05)


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing_dir"):
        load_dataset(str(tmp_path / "missing_dir"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no PNG/JPEG images found in .*empty"):
        load_dataset(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    _png(bad / "ok.png", (1, 2, 3))
    (bad / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="cannot read image .*broken.png"):
        load_dataset(str(bad))
    (tmp_path / "file.png").write_bytes(b"")
    with pytest.raises(ValueError, match="not a directory"):
        load_dataset(str(tmp_path / "file.png"))


def test_unknown_names_and_options():
    with pytest.raises(ValueError) as e:
        load_dataset("cifar")
    assert all(n in str(e.value) for n in dataset_names()) and "directory" in str(e.value)
    assert set(dataset_names()) == set(DATASETS)
    with pytest.raises(ValueError, match="valid options: .*radius"):
        load_dataset("gmm2d", radious=1)
    with pytest.raises(ValueError, match="cov"):
        load_dataset("gaussian", cov="full")


def test_to_range_maps_interval_ends():
    x = torch.tensor([0.0, 0.5, 1.0])
    assert torch.allclose(to_range(x, (-1, 1)), torch.tensor([-1.0, 0.0, 1.0]))
    assert torch.allclose(to_range(to_range(x, (-3, 5)), (0, 1), src=(-3, 5)), x)
