"""--data FILE: points (N, D) or images (N, C, H, W) from .npy / .npz / .pt / .safetensors / .csv,
split into train and held-out halves by the stated seeded permutation, their range given or
checked; .pt files are read with weights_only=True."""

import warnings

import numpy as np
import pytest
import torch

from biaskit.data import load_dataset


def _halves(x, seed):
    """The stated rule restated: permutation of N by default_rng(seed); the first N - N // 2 are
    the train half, the rest the held-out half."""
    idx = np.random.default_rng(seed).permutation(len(x))
    n_train = len(x) - len(x) // 2
    return x[idx[:n_train]], x[idx[n_train:]]


def test_points_from_npy_and_csv_split_by_the_stated_rule(tmp_path):
    x = np.random.default_rng(0).normal(size=(101, 3)).astype(np.float32) * 0.3
    np.save(tmp_path / "p.npy", x)
    np.savetxt(tmp_path / "p.csv", x, delimiter=",", header="a,b,c", comments="")
    train, test = _halves(x, seed=7)
    for f in ("p.npy", "p.csv"):
        ds = load_dataset(str(tmp_path / f), seed=7)
        assert ds.train.shape == (51, 3) and ds.test.shape == (50, 3)
        assert np.allclose(ds.train.numpy(), train, atol=1e-6) and np.allclose(ds.test.numpy(), test, atol=1e-6)
        assert ds.spec["seed"] == 7 and ds.spec["n_test"] == 50
    other = load_dataset(str(tmp_path / "p.npy"), seed=8)
    assert not torch.equal(other.test, ds.test)
    assert load_dataset(str(tmp_path / "p.npy"), n_train=0).test.shape == (101, 3)  # all held out


def test_images_from_pt_with_their_range_mapped_to_the_models(tmp_path):
    g = torch.Generator().manual_seed(0)
    img = torch.randint(0, 256, (10, 1, 4, 4), generator=g).float()
    torch.save(img, tmp_path / "img.pt")
    ds = load_dataset(str(tmp_path / "img.pt"), data_range=(-0.5, 0.5), range="0,255")
    train, test = _halves(img.numpy(), seed=0)
    assert np.allclose(ds.test.numpy(), test / 255 - 0.5, atol=1e-6)   # pixel/255 - 0.5 by hand
    assert np.allclose(ds.train.numpy(), train / 255 - 0.5, atol=1e-6)
    with pytest.raises(ValueError, match=r"outside the model's data range.*range=LO,HI"):
        load_dataset(str(tmp_path / "img.pt"))                            # 0..255 taken as is
    torch.save(img / 255, tmp_path / "unit.pt")
    with pytest.warns(UserWarning, match=r"range=LO,HI"):                 # [0, 1] data, [-1, 1] model
        load_dataset(str(tmp_path / "unit.pt"), data_range=(-1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset(str(tmp_path / "unit.pt"), data_range=(0, 1))


def test_files_are_read_safely_and_shapes_checked(tmp_path):
    from safetensors.torch import save_file
    torch.save({"x": torch.zeros(4, 2), "f": np.random.default_rng}, tmp_path / "evil.pt")
    with pytest.raises(ValueError):  # a pickled callable: refused by weights_only=True
        load_dataset(str(tmp_path / "evil.pt"))
    save_file({"a": torch.zeros(4, 2), "b": torch.linspace(-1, 1, 12).reshape(6, 2)},
              str(tmp_path / "two.safetensors"))
    with pytest.raises(ValueError, match="key=NAME"):
        load_dataset(str(tmp_path / "two.safetensors"))
    assert load_dataset(str(tmp_path / "two.safetensors"), key="b").test.shape == (3, 2)
    np.save(tmp_path / "flat.npy", np.zeros((5, 4, 4)))
    with pytest.raises(ValueError, match=r"N x D points or N x C x H x W images.*\(5, 4, 4\)"):
        load_dataset(str(tmp_path / "flat.npy"))


def test_cli_probes_an_oracle_on_points_from_a_file(tmp_path, capsys):
    from biaskit.cli import main
    pts = load_dataset("gmm2d", n_train=10, n_test=200).test.numpy()
    np.save(tmp_path / "pts.npy", pts)
    rc = main(["probe", "oracle:gmm2d", "--data", str(tmp_path / "pts.npy"), "--timesteps", "100,500",
               "--samples", "50", "--out", str(tmp_path / "o"), "--no-plots", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["probe", "oracle:gmm2d", "--data", str(tmp_path / "none.npy"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and "none.npy" in err[-1] and "Traceback" not in err[-1]
