"""The DMMD particle sampler: the oracle end to end, chunking, NFE, the statistics on a new grid, missing data."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gflowzoo.data import DataHandle
from gflowzoo.errors import ConfigError, DataError

#: a small untrained toy critic (the sampler's mechanics do not need a trained one)
#: the toy preset holds the RBF recipe (docs/dmmd-what-we-learned.md); these mechanics tests use the plain
#: linear-kernel configuration of the dataclass defaults instead
LINEAR = ['kernel="linear"', 'width_prior="none"', "learn_width=true", "width_init=0.0", "backbone.input_skip=0.0",
          'sampler.step_schedule="auto"', "sampler.step_size=0.0", "sampler.n_ref=512", "lambda_flow=0.0"]
#: the same for dkale, which has no base kernel or width options
KALE_TOY_RESET = ["backbone.input_skip=0.0", 'sampler.step_schedule="auto"', "sampler.step_size=0.0"]
TOY_BASE = ["backbone.width=16", "backbone.depth=1", "feature_dim=8", "stats_samples=256", "sampler.levels=4",
       "sampler.steps_per_level=2"]
TOY = [*LINEAR, *TOY_BASE]
KALE_TOY = [*KALE_TOY_RESET, *TOY_BASE]


def _toy_metrics(x_raw: np.ndarray, centres: np.ndarray, std: float) -> tuple[int, float]:
    """Modes covered (>= 20 high-quality samples per 2,500) and the fraction within 3 std (gflowzoo's toy metric)."""
    from gflowzoo.metrics.toy import mode_statistics

    s = mode_statistics(torch.from_numpy(x_raw), torch.from_numpy(centres), std)
    return s["covered"], s["hq_fraction"]

def test_oracle_exact_flow_recovers_25_modes(build):
    """The hand-set noise-adaptive kernel (rff-oracle) with the exact interacting flow and eta = 10 h_t^2 covers
    the 25-Gaussian grid (measured: 25/25 modes, 82-84 % within 3 std over 4 seeds at these settings)."""
    m = build("dmmd", "toy-25gaussians", "backbone=rff-oracle", "feature_dim=512", "stats_samples=2000",
              "sampler.particles=500", "sampler.levels=40", "sampler.steps_per_level=5",
              *LINEAR[:4], 'sampler.integrator="euler"', "run.steps=0")
    info = m.sampling_info()
    assert info["step_schedule"] == "width2" and info["step_size"] == 10.0
    m.finalize(torch.Generator().manual_seed(0))
    x = m.sample(500, torch.Generator().manual_seed(1))
    ds = m.data.train
    modes, hq = _toy_metrics(ds.to_unit(x).double().numpy(), np.array(ds.info()["centres"]), ds.info()["mode_std"])
    assert modes >= 20, f"{modes}/25 modes"
    assert hq >= 0.6, f"{hq:.3f} within 3 std"


def test_exact_sampling_does_not_depend_on_chunk_size(build):
    m = build("dmmd", "toy-8gaussians", *TOY, "sampler.particles=24", "sampler.integrator=\"euler\"")
    m.finalize(torch.Generator())
    whole = m.sample(24, torch.Generator().manual_seed(3))
    m.config.sampler.chunk = 7  # uneven chunks: 7 + 7 + 7 + 3
    chunked = m.sample(24, torch.Generator().manual_seed(3))
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(whole[:12], whole[12:]), "particles must differ"


def test_exact_particles_interact_and_batches_of_n(build):
    """Exact DMMD couples the particles of one batch of N; sample(n) draws ceil(n / N) batches of N."""
    m = build("dmmd", "toy-8gaussians", *TOY, "sampler.particles=10", "sampler.integrator=\"euler\"")
    m.finalize(torch.Generator())
    full = m.sample(10, torch.Generator().manual_seed(4))
    m.config.sampler.particles = 5
    halves = m.sample(10, torch.Generator().manual_seed(4))
    assert halves.shape == full.shape == (10, 2)
    assert not torch.allclose(halves[5:], full[5:], atol=1e-4), "a different interaction batch must change samples"
    first = m.sample(3, torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, halves[:3])  # the first n of the same batches


def test_approx_sampler_is_per_particle(build):
    """a-DMMD particles do not interact: moving them one at a time (chunk 1) equals moving the whole batch
    (deterministic Euler steps; the initial noise of a batch is drawn at once, before chunking)."""
    m = build("a-dmmd", "toy-8gaussians", *TOY, "sampler.particles=12")
    m.finalize(torch.Generator())
    one = m.sample(12, torch.Generator().manual_seed(5))
    m.config.sampler.chunk = 1
    per = m.sample(12, torch.Generator().manual_seed(5))
    torch.testing.assert_close(per, one, rtol=1e-5, atol=1e-5)
    z0 = torch.randn(12, 2, generator=torch.Generator().manual_seed(5))
    assert (one - z0).norm(dim=1).min() > 1e-3, "every particle should have moved"


def test_approx_box_clamp(build):
    m = build("a-dmmd", "toy-8gaussians", *TOY, "sampler.step_size=50.0", "sampler.box=0.5", "sampler.particles=32")
    m.finalize(torch.Generator())
    x = m.sample(32, torch.Generator().manual_seed(0))
    bound = 0.5 * m.stats["data_range"]
    assert float(x.abs().max()) <= bound + 1e-6
    assert math.isclose(m.stats["data_range"], float(m.data.train.get(torch.arange(256)).abs().max()), rel_tol=0.2)


def _count_grad_forwards(m, n):
    calls = []
    net = m.ema_backbone
    orig = net.forward

    def counting(x, t=None):
        calls.append(torch.is_grad_enabled())
        return orig(x, t)

    net.forward = counting
    try:
        m.sample(n, torch.Generator().manual_seed(0))
    finally:
        del net.forward
    return sum(calls), len(calls)


@pytest.mark.parametrize("variant, nfe", [("exact", 4 * 2), ("approx", 4 * 2), ("hybrid", 2 * 2 + 2 * 3)])
def test_nfe_reporting_counts_gradient_evaluations(build, variant, nfe):
    """sampling_info's NFE = T x N_s (hybrid: per-level steps) = the backbone evaluations with gradient per batch;
    the fused exact step needs no other forward pass."""
    m = build("dmmd", "toy-8gaussians", *TOY, f"sampler.variant=\"{variant}\"", "sampler.switch_t=0.5",
              "sampler.exact_steps_per_level=3", "sampler.particles=8", "sampler.integrator=\"euler\"")
    m.finalize(torch.Generator())
    info = m.sampling_info()
    assert info["nfe"] == nfe and info["particles"] == 8 and info["variant"] == variant
    with_grad, total = _count_grad_forwards(m, 8)
    assert with_grad == nfe and total == nfe


def test_statistics_recomputed_on_a_new_grid(build):
    """Sampling on another grid recomputes m_P(t_k): the mean clean features over a fixed (seed stats_seed) random
    subset of stats_samples training points, and m_{P_t}(t_k) for the noisy data."""
    m = build("dmmd", "toy-8gaussians", *TOY, "stats_samples=3000", "sampler.particles=8")
    m.finalize(torch.Generator())
    assert m.stats["clean"].shape == (4, 8) and m.stats["noisy"].shape == (4, 8)
    m.config.sampler.levels = 3
    m.sample(4, torch.Generator().manual_seed(0))
    grid = m.schedule.grid(3)
    torch.testing.assert_close(m.stats["grid"], grid)
    ds = m.data.train
    x = ds.get(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:3000])
    with torch.no_grad():
        for k, t in enumerate(grid.tolist()):
            tt = torch.full((len(x),), t)
            torch.testing.assert_close(m.stats["clean"][k], m.ema_backbone(x, tt).mean(0), rtol=1e-4, atol=1e-5)
            # the noisy mean uses its own noise draws: compare with an independent noising of the same points
            y = m.schedule.add_noise(x, tt, generator=torch.Generator().manual_seed(99))
            noisy = m.ema_backbone(y, tt).mean(0)
            assert float((m.stats["noisy"][k] - noisy).norm()) < 0.05 * float(noisy.norm()) + 0.02


class _NoData(DataHandle):
    """A data handle that knows the shape (from a checkpoint) but whose data is missing."""

    @property
    def train(self):
        raise DataError("data set 'toy-8gaussians' not found under /nowhere")


def test_clear_error_without_data_on_a_new_grid(build, registry):
    trained = build("dmmd", "toy-8gaussians", *TOY, "sampler.particles=8")
    trained.finalize(torch.Generator())
    m = build("dmmd", "toy-8gaussians", *TOY, "sampler.particles=8",
              data=_NoData("toy-8gaussians", shape=(2,), kind="points", registry=registry))
    m.load_state_dict(trained.state_dict())
    same = m.sample(8, torch.Generator().manual_seed(1))  # the stored grid: no data needed
    torch.testing.assert_close(same, trained.sample(8, torch.Generator().manual_seed(1)))
    m.config.sampler.levels = 7
    with pytest.raises(DataError, match="needs the training data") as err:
        m.sample(8, torch.Generator())
    assert "4 levels" in str(err.value) and "7 levels" in str(err.value)


def test_rbf_sampler_uses_reference_features_and_learned_width(build):
    m = build("dmmd", "toy-8gaussians", *TOY, "kernel=\"rbf\"", "sampler.n_ref=16", "sampler.particles=8",
              "sampler.step_schedule=\"width2\"", "sampler.step_size=0.01")
    m.train_step(0, torch.Generator().manual_seed(0))  # median-heuristic initial width
    m.finalize(torch.Generator())
    assert m.stats["ref_clean"].shape == (4, 16, 8) and m.stats["ref_noisy"].shape == (4, 16, 8)
    h = m.widths(m.schedule.grid(4))
    assert (h > 0).all() and h.shape == (4,)
    assert m.sampling_info()["step_schedule"] == "width2"
    x = m.sample(8, torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all()


def test_width2_needs_a_width(build):
    m = build("dmmd", "toy-8gaussians", *TOY, "sampler.step_schedule=\"width2\"")
    with pytest.raises(ConfigError, match="width2"):
        m.sampling_info()


def test_dkale_moves_particles_down_the_critic(build):
    """The DKALE flow is z <- z - eta grad h(z, t): with the critic replaced by h(z) = |z - c|^2 / 2, one Euler
    step of size eta moves z to z - eta (z - c)."""
    m = build("dkale", "toy-8gaussians", *KALE_TOY, "sampler.levels=1", "sampler.steps_per_level=1",
              "sampler.step_schedule=\"const\"", "sampler.step_size=0.25", "sampler.particles=5", "sampler.box=0.0")
    c = torch.tensor([0.5, -1.0])
    m._critic = lambda z, t, ema: 0.5 * (z - c).square().sum(1)
    z0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(2))
    x = m.sample(5, torch.Generator().manual_seed(2))
    torch.testing.assert_close(x, z0 - 0.25 * (z0 - c))
    with pytest.raises(ConfigError, match="approx"):
        build("dkale", "toy-8gaussians", *KALE_TOY, "sampler.variant=\"exact\"")


def test_only_the_final_checkpoint_stores_the_statistics(registry, tmp_path):
    """Intermediate checkpoints leave the sampler statistics out (rbf: ``[levels, n_ref, D]`` twice, tens of MB at
    full size) even when a sample grid computed some before them; the final checkpoint keeps them. A method rebuilt
    from an intermediate checkpoint (a killed run) recomputes them at its first sampling and samples exactly like the
    final checkpoint of a run stopped at that step."""
    from gflowzoo.runs import RunDir, load_checkpoint
    from gflowzoo.session import build_method, resolve
    from gflowzoo.trainer import train

    sets = [*TOY, 'kernel="rbf"', "sampler.n_ref=16", "sampler.particles=8", 'sampler.step_schedule="width2"',
            "sampler.step_size=0.01", "run.grid_size=8", "run.keep_checkpoints=0"]

    def run(name, steps, *extra):
        spec = resolve(registry, "dmmd", "toy-8gaussians", sets=[*sets, *extra, f"run.steps={steps}"],
                       overrides={"device": "cpu"}, preset="cpu-quick")
        rd = RunDir(tmp_path / name)
        rd.path.mkdir()
        rd.write_config(spec.to_data())
        method = build_method(registry, spec, "cpu")
        train(rd, spec, method, progress=False)
        return spec, rd, method

    # a grid every step: statistics exist (for the step before) whenever an intermediate checkpoint is written
    spec, long, _ = run("long", 6, "run.checkpoint_every=2", "run.sample_every=1")
    states = {int(p.stem.split("-")[1]): load_checkpoint(p, "dmmd")["state"] for p in long.checkpoints()}
    assert sorted(states) == [2, 4, 6]
    assert states[2]["stats"] == {} and states[4]["stats"] == {}
    final = states[6]["stats"]
    # the final checkpoint keeps the clean reference points, not their [levels, n_ref, D] features
    assert final["step"] == 6 and final["ref_x"].shape == (16, 2)
    assert "ref_clean" not in final and "ref_noisy" not in final

    _, _, short = run("short", 4)  # stopped at step 4: its final statistics, computed by finalize
    rebuilt = build_method(registry, spec, "cpu")
    rebuilt.load_state_dict(states[4])
    assert rebuilt.stats == {}
    x = rebuilt.sample(8, torch.Generator().manual_seed(3))
    assert rebuilt.stats["step"] == 4
    torch.testing.assert_close(rebuilt.stats["ref_clean"], short.stats["ref_clean"], rtol=0, atol=0)
    torch.testing.assert_close(x, short.sample(8, torch.Generator().manual_seed(3)), rtol=0, atol=0)
    assert rebuilt.state_dict()["stats"] == {}  # recomputed for sampling, still not a final checkpoint's


def test_final_checkpoint_recomputes_reference_features_without_the_data(registry, tmp_path):
    """A method rebuilt from a final checkpoint (reference points, no features) samples exactly like the trained
    method, with the data set unreachable: the features come back from the stored points and the stored seed."""
    from gflowzoo.data import DataHandle
    from gflowzoo.session import build_method, resolve

    sets = [*TOY, 'kernel="rbf"', "sampler.n_ref=16", "sampler.particles=8", 'sampler.step_schedule="width2"',
            "sampler.step_size=0.01", "run.steps=3"]
    spec = resolve(registry, "dmmd", "toy-8gaussians", sets=sets, overrides={"device": "cpu"}, preset="cpu-quick")
    trained = build_method(registry, spec, "cpu")
    for step in range(3):
        trained.train_step(step, torch.Generator().manual_seed(step))
    trained.finalize(torch.Generator())
    state = trained.state_dict()
    assert set(state["stats"]) >= {"ref_x", "grid"} and "ref_clean" not in state["stats"]
    class Offline(DataHandle):
        def split(self, split):
            raise DataError("the data set is not reachable here")

    offline = Offline("toy-8gaussians", None, tuple(trained.data.shape), trained.data.kind, registry)
    rebuilt = build_method(registry, spec, "cpu", offline)
    rebuilt.load_state_dict(state)
    x = rebuilt.sample(8, torch.Generator().manual_seed(5))
    torch.testing.assert_close(x, trained.sample(8, torch.Generator().manual_seed(5)), rtol=0, atol=0)
    torch.testing.assert_close(rebuilt.stats["ref_noisy"], trained.stats["ref_noisy"], rtol=0, atol=0)
