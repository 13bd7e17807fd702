"""The cheap sampler of in-training evaluations (``cheap_sampler``) and the per-level progress of sampling."""

from __future__ import annotations

import torch
from test_dmmd_sampler import TOY

from gflowzoo.progress import track_pieces
from gflowzoo.sampling import sample_pieces

#: a 30-level grid (above the cheap sampler's 20) of 2 steps per level: NFE 60, cheap NFE 40
GRID = [*TOY, "sampler.levels=30", "sampler.particles=64", 'sampler.integrator="euler"']


def test_cheap_sampler_is_the_sampler_with_fewer_levels_and_particles(build):
    """Inside the context the method samples exactly as one configured with ``--set sampler.levels=20
    sampler.particles=16`` and says so; afterwards the configured sampler and the final statistics are back."""
    m = build("dmmd", "toy-8gaussians", *GRID)
    m.finalize(torch.Generator())
    final = m.stats
    with m.cheap_sampler(16) as changed:
        assert changed == {"levels": 20, "particles": 16}
        info = m.sampling_info()
        assert (info["levels"], info["particles"], info["nfe"]) == (20, 16, 40)
        x = m.sample(16, torch.Generator().manual_seed(5))
    assert m.stats is final and m.sampling_info()["nfe"] == 60 and m.config.sampler.particles == 64
    same = build("dmmd", "toy-8gaussians", *GRID, "sampler.levels=20", "sampler.particles=16")
    same.load_state_dict(m.state_dict())
    torch.testing.assert_close(x, same.sample(16, torch.Generator().manual_seed(5)), rtol=0, atol=0)
    with m.cheap_sampler(500) as changed:  # more samples than particles: the particles stay
        assert changed == {"levels": 20} and m.sampling_info()["particles"] == 64


def test_in_training_evaluation_logs_the_cheap_sampler(build):
    from gflowzoo.evaluate import Evaluator, TrainingEval

    m = build("dmmd", "toy-8gaussians", *GRID, "sampler.particles=2500")
    hook = TrainingEval(Evaluator(m.data, purpose="training"), m)
    rec = hook(1, 0.0)
    assert (rec["n"], rec["nfe"], rec["levels"], rec["particles"]) == (500, 40, 20, 500) and "mmd" in rec
    assert m.sampling_info()["nfe"] == 60


def test_sampling_reports_progress_after_every_level(build):
    """Two particle batches of a 4-level grid: the bar's count moves 4 samples per level, 32 in all."""
    m = build("dmmd", "toy-8gaussians", *TOY, "sampler.particles=16")
    seen = []
    pieces = list(track_pieces(sample_pieces(m, 32, torch.Generator(), 32), 32, 32, seen.append))
    assert len(pieces) == 1 and pieces[0].shape == (32, 2)
    assert seen == [4.0 * k for k in range(1, 9)] + [32]
