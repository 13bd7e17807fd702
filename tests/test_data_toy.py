"""The 2-D toy data sets and scikit-learn's digits: determinism, splits, shapes, scales and mixture facts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo.data import open_dataset
from gflowzoo.data import toy
from gflowzoo.data.digits import digits
from gflowzoo.errors import DataError

TOYS = {
    "toy-8gaussians": toy.gaussians8,
    "toy-25gaussians": toy.gaussians25,
    "toy-swissroll": toy.swissroll,
    "toy-checkerboard": toy.checkerboard,
    "toy-moons": toy.moons,
}


def everything(ds) -> torch.Tensor:
    return ds.get(torch.arange(len(ds)))


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toy_deterministic_per_split_and_shapes(name):
    train_a, train_b = open_dataset(name, "train"), open_dataset(name, "train")
    test = open_dataset(name, "test")
    assert train_a.kind == "points" and train_a.shape == (2,)
    assert (len(train_a), len(test)) == (50_000, 10_000)
    xa, xb, xt = everything(train_a), everything(train_b), everything(test)
    assert xa.dtype == torch.float32 and xa.shape == (50_000, 2)
    assert torch.equal(xa, xb)
    assert not torch.allclose(xa[:100], xt[:100])
    assert torch.isfinite(xa).all()


@pytest.mark.parametrize("name", sorted(TOYS))
def test_toy_to_unit_is_raw_coordinates(name):
    ds = TOYS[name](None, "test")
    idx = torch.tensor([0, 7, 123, 9_999])
    assert torch.allclose(ds.to_unit(ds.get(idx)), ds.raw[idx], atol=1e-6)


@pytest.mark.parametrize(
    "name,tol", [("toy-8gaussians", 0.03), ("toy-25gaussians", 0.03), ("toy-checkerboard", 0.03),
                 ("toy-swissroll", 0.4), ("toy-moons", 0.4)],
)
def test_toy_model_units_about_unit_variance(name, tol):
    std = everything(open_dataset(name, "train")).std(0)
    assert ((std - 1).abs() < tol).all(), std


def test_mixture_variance_matches_closed_form():
    # per coordinate: Var = (mean of squared centre coordinates) + mode_std^2, divided by scale^2
    for fn in (toy.gaussians8, toy.gaussians25):
        ds = fn(None, "train")
        info = ds.info()
        centres = np.asarray(info["centres"])
        expected = (centres**2).mean(0) - centres.mean(0) ** 2 + info["mode_std"] ** 2
        got = everything(ds).double().var(0).numpy() * ds.scale**2
        assert np.allclose(got, expected, rtol=0.03), (fn.__name__, got, expected)


@pytest.mark.parametrize("fn,n_modes,radius", [(toy.gaussians8, 8, 2.0), (toy.gaussians25, 25, None)])
def test_gaussian_mixture_info_centres(fn, n_modes, radius):
    ds = fn(None, "train")
    info = ds.info()
    centres = np.asarray(info["centres"])
    assert centres.shape == (n_modes, 2)
    assert len({tuple(np.round(c, 6)) for c in centres}) == n_modes
    if radius is not None:
        assert np.allclose(np.linalg.norm(centres, axis=1), radius)
        angles = np.sort(np.mod(np.arctan2(centres[:, 1], centres[:, 0]), 2 * math.pi))
        assert np.allclose(np.diff(angles), 2 * math.pi / 8)
    else:
        assert sorted(set(np.round(centres.ravel(), 6))) == [-4.0, -2.0, 0.0, 2.0, 4.0]
    raw = ds.to_unit(everything(ds)).double().numpy()
    dist = np.linalg.norm(raw[:, None, :] - centres[None], axis=2)
    nearest = dist.argmin(1)
    resid = raw - centres[nearest]
    # every point lies within a few mode_std of a centre; residuals have the stated std; modes are balanced
    assert dist.min(1).max() < 8 * info["mode_std"]
    assert abs(resid.std() - info["mode_std"]) < 0.05 * info["mode_std"]
    counts = np.bincount(nearest, minlength=n_modes) / len(raw)
    assert np.allclose(counts, 1 / n_modes, atol=0.01)
    assert info["scale"] == ds.scale


def test_toy_bad_split_is_data_error():
    with pytest.raises(DataError, match="'train' and 'test'"):
        toy.moons(None, "valid")


def test_digits_splits_shapes_and_values():
    from sklearn.datasets import load_digits

    train, test = open_dataset("digits", "train"), open_dataset("digits", "test")
    assert (len(train), len(test)) == (1500, 297)
    assert train.shape == (1, 8, 8) and train.kind == "image"
    xt = everything(train)
    assert xt.min() >= -1 and xt.max() <= 1 and xt.max() == 1.0 and xt.min() == -1.0
    # independent: the two splits together are exactly sklearn's images (as a multiset), scaled 0..16 -> -1..1
    ref = load_digits()
    expected = sorted(map(tuple, np.round(ref.images.reshape(1797, -1) * 255 / 16).astype(int)))
    both = torch.cat([xt, everything(test)]).reshape(1797, -1)
    got = sorted(map(tuple, ((both + 1) * 127.5).round().int().numpy()))
    assert got == expected
    labels = np.concatenate([train.labels, test.labels])
    assert np.array_equal(np.bincount(labels), np.bincount(ref.target))
    assert torch.equal(everything(digits(None, "test")), everything(test))
    assert not torch.equal(everything(test)[:50], xt[:50])
    assert torch.allclose(train.to_unit(xt), (xt + 1) / 2)


def test_digits_bad_split():
    with pytest.raises(DataError):
        digits(None, "valid")
