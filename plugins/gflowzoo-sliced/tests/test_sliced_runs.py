"""``sliced-mmdflow`` through the run service: a latent space, resume across a pyramid stage, ``sample --n`` beyond
the particle count, and the refusal of several processes."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.api import UserError, load_run, prepare_run, train_run

TINY_SET = "latent_space={name='mlp', latent_dim=4, hidden=[32], steps=30, batch_size=64}"


def test_runs_in_a_latent_space(registry, tmp_path, monkeypatch):
    """What tests/test_latent.py checks for every method of the zoo, for this one: train on codes, load the run
    back, sample decoded images."""
    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    spec, run = prepare_run(registry, "sliced-mmdflow", dataset="digits", out=tmp_path / "run", steps=2,
                                   sets=[TINY_SET, "run.grid_size=4", "particles=8", "n_data=32", "projections=4"])
    train_run(registry, run, spec, progress=False)
    _, method, _ = load_run(run.path, registry=registry)
    x = method.sample(3, torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 8, 8) and torch.isfinite(x).all()
    assert method.inner.data.kind == "points"


def test_sample_beyond_the_particles_runs_fresh_flows(build):
    """``sample(n)`` for n > particles: the trained particles plus fresh systems that took as many steps."""
    method = build("sliced-mmdflow", "toy-8gaussians", "particles=16", "n_data=32", "projections=4")
    g = torch.Generator().manual_seed(0)
    for step in range(3):
        method.train_step(step, g)
    x = method.sample(40, torch.Generator().manual_seed(1))
    assert x.shape == (40, 2) and torch.isfinite(x).all()
    # the first 16 are the trained particles (a permutation of them)
    trained = method.flow.x
    assert torch.allclose(x[:16].sort(0).values, trained.sort(0).values)
    assert method.sampling_info()["steps"] == 3


def test_pyramid_upsamples_particles_at_the_stage_boundary(build):
    method = build("sliced-mmdflow", "digits", "particles=10", "n_data=32", "projections=4",
                   "down_factors=[4, 2, 1]", "stage_steps=[2, 1]", "upsample_noise=0.0")
    g = torch.Generator().manual_seed(0)
    shapes = []
    for step in range(5):
        logs = method.train_step(step, g)
        shapes.append((int(logs["stage"]), tuple(method.flow.x.shape[1:])))
    assert shapes == [(0, (1, 2, 2)), (0, (1, 2, 2)), (1, (1, 4, 4)), (2, (1, 8, 8)), (2, (1, 8, 8))]
    assert method.sample(4, g).shape == (4, 1, 8, 8)


def test_several_processes_are_refused(build, monkeypatch):
    from gflowzoo.api import distributed

    monkeypatch.setattr(distributed, "world", lambda: 2)
    with pytest.raises(UserError, match="one process"):
        build("sliced-mmdflow", "toy-8gaussians", "particles=8", "n_data=8")
