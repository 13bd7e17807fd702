"""Behaviour of ``drift``: the field (zero for equal sets, anti-symmetric, a mean shift), a tiny run that moves the
generated points onto a shifted target, latent spaces and option checks."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.api import ConfigError
from gflowzoo_drift.field import drift_field, feature_scale

TEMPS = [0.02, 0.05, 0.2]


def _pts(n, d, seed, shift=0.0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + shift


@pytest.mark.parametrize("coupling", ["two-sided", "row"])
@pytest.mark.parametrize("normalize", [True, False])
def test_field_is_zero_when_the_two_sets_are_equal(coupling, normalize):
    x, y = _pts(40, 5, 0), _pts(60, 5, 1, shift=0.5)
    v, rms = drift_field(x, y, y.clone(), TEMPS, coupling=coupling, normalize=normalize)
    assert max(rms) <= 1e-6  # the field itself: zero up to float rounding
    assert v.abs().max() <= (1e-3 if normalize else 1e-6)  # rounding over the normalisation floor 1e-3, x3 temps
    # and a real difference gives a real field
    v2, _ = drift_field(x, y, _pts(60, 5, 2), TEMPS, coupling=coupling, normalize=normalize)
    assert v2.abs().max() > 1e-2


def test_field_is_anti_symmetric():
    x, p, q = _pts(30, 3, 0), _pts(50, 3, 1, shift=1.0), _pts(50, 3, 2)
    v, _ = drift_field(x, p, q, TEMPS, normalize=False)
    w, _ = drift_field(x, q, p, TEMPS, normalize=False)
    torch.testing.assert_close(v, -w, atol=1e-6, rtol=1e-5)


def test_field_points_from_the_negatives_to_the_positives_and_matches_a_direct_sum():
    x = _pts(64, 2, 0)
    pos = _pts(64, 2, 1, shift=torch.tensor([3.0, 0.0]))
    v, _ = drift_field(x, pos, x, [1.0], mask_self=True, normalize=False, temperature_scale="none")
    assert (v[:, 0] > 0).float().mean() > 0.95  # everyone is pulled towards +x
    # one query by hand, float64: A = sqrt(softmax over y * softmax over queries), self column left out
    xd, pd_ = x.double(), pos.double()
    logits = -torch.cat([torch.cdist(xd, pd_), torch.cdist(xd, xd)], 1)
    logits[:, 64:].fill_diagonal_(float("-inf"))
    a = (logits.softmax(1) * logits.softmax(0)).sqrt()
    ap, an = a[:, :64], a[:, 64:]
    ref = (ap * an.sum(1, keepdim=True)) @ pd_ - (an * ap.sum(1, keepdim=True)) @ xd
    torch.testing.assert_close(v.double(), ref, atol=1e-5, rtol=1e-4)


def test_feature_scale_gives_mean_distance_sqrt_dim():
    x, y = _pts(50, 7, 0) * 13.0, _pts(40, 7, 1) * 13.0
    s = feature_scale(x, y, x, mask_self=True)
    d = torch.cat([torch.cdist(x / s, y / s).flatten(),
                   torch.cdist(x / s, x / s)[~torch.eye(50, dtype=torch.bool)]])
    assert float(d.mean()) == pytest.approx(7 ** 0.5, rel=1e-4)


def test_a_tiny_run_moves_generated_points_onto_a_shifted_target(build):
    m = build("drift", "toy-8gaussians", "batch_size=128", "hidden=[64, 64]", "nz=4", "lr=3e-3", "ema=0")

    class Shifted:  # the data set's points, moved by (+4, -3)
        def __init__(self, inner):
            self.inner = inner

        def sample(self, n, generator):
            return self.inner.sample(n, generator) + torch.tensor([4.0, -3.0])

    m._train_set = Shifted(m.data.train)
    target = torch.tensor([4.0, -3.0])
    before = float((m.sample(500, torch.Generator().manual_seed(1)).mean(0) - target).norm())
    g = torch.Generator().manual_seed(0)
    for step in range(300):
        m.train_step(step, g)
    after = m.sample(500, torch.Generator().manual_seed(1))
    assert before > 4.0
    assert float((after.mean(0) - target).norm()) < 0.3
    ref = m.real_batch(torch.Generator().manual_seed(2), 500)
    assert float(after.std(0).mean()) == pytest.approx(float(ref.std(0).mean()), rel=0.25)


def test_loss_is_the_squared_field_and_the_target_is_stop_gradient(build):
    m = build("drift", "toy-25gaussians", "batch_size=32", "hidden=[16]", "temperatures=[0.05]")
    logs = m.train_step(0, torch.Generator().manual_seed(0))
    # one temperature, drift normalised to unit RMS: the mean squared regression error is 1
    assert logs["loss"] == pytest.approx(1.0, rel=1e-4)
    assert logs["drift"] > 0 and logs["scale"] > 0


@pytest.mark.parametrize("bad", ["temperatures=[]", "temperatures=[0.0]", "features=[\"pixels\"]",
                                 "features=[\"raw\", \"raw\"]", "ema=1.0", "n_pos=-1", "batch_size=1",
                                 "fourier=-1", "fourier_scale=0.0"])
def test_bad_options_are_config_errors(build, bad):
    with pytest.raises(ConfigError):
        build("drift", "toy-8gaussians", bad)


def test_fourier_features_are_fixed_buffers_of_the_generator(build):
    m = build("drift", "toy-25gaussians", "fourier=8", "hidden=[16]")  # the toy preset's generator, smaller
    names = dict(m.G.named_buffers())
    assert set(names) == {"0.w", "0.b"} and names["0.w"].shape == (2, 8)
    assert all(not p.shape == (2, 8) for p in m.G.parameters())  # W is not trained
    assert m.sample(10, torch.Generator().manual_seed(0)).shape == (10, 2)
    assert build("drift", "toy-8gaussians", "fourier=0").G.__class__.__name__ == "MLP"


def test_dcgan_generator_needs_images(build):
    with pytest.raises(ConfigError, match="image"):
        build("drift", "toy-8gaussians", "generator=\"dcgan\"")


def test_runs_in_a_latent_space(tmp_path, monkeypatch):
    from gflowzoo.api import load_run, prepare_run, train_run
    from gflowzoo.testing import plugins_loaded

    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    tiny = "latent_space={name='mlp', latent_dim=4, hidden=[32], steps=30, batch_size=64}"
    with plugins_loaded("drift") as state:
        reg = state.registry
        spec, run = prepare_run(reg, "drift", dataset="digits", out=tmp_path / "run", steps=2,
                                sets=[tiny, "run.grid_size=4", "batch_size=16", "hidden=[16]"])
        train_run(reg, run, spec, progress=False)
        _, method, _ = load_run(run.path, registry=reg)
        x = method.sample(3, torch.Generator().manual_seed(0))
        assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
        assert method.inner.data.kind == "points" and method.inner.data.shape == (4,)
