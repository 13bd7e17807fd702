"""The per-step move cap of the particle flow (``sampler.max_move``, in units of the level's kernel width)."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.errors import ConfigError
from gflowzoo_dmmd.flow import Level, ParticleFlow, cap_moves, plan_levels


def test_cap_moves_shortens_only_long_moves():
    before = torch.zeros(3, 2, 2)
    after = torch.tensor([[[0.1, 0.0], [0.0, 0.0]], [[3.0, 4.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, -2.0]]])
    out = cap_moves(before, after, 1.0)
    torch.testing.assert_close(out[0], after[0])  # within the limit: unchanged
    torch.testing.assert_close(out[1].flatten().norm(), torch.tensor(1.0))  # 5 -> 1, same direction
    torch.testing.assert_close(out[1] / out[1].flatten().norm(), after[1] / 5.0)
    torch.testing.assert_close(out[2].flatten().norm(), torch.tensor(1.0))


class _Step:
    """Euler: z + eta * v(z)."""

    def step(self, z, velocity, eta, scale=None, generator=None):
        return z + eta * velocity(z)


def _flow(max_move: float) -> ParticleFlow:
    # witness w(z) = 100 * z[:, 0]: a huge constant push along x
    return ParticleFlow(lambda z, level, source: 100.0 * z[:, 0], lambda z, level: None, lambda level: None,
                        _Step(), max_move=max_move)


def test_flow_caps_each_step_at_max_move_widths():
    z = torch.zeros(4, 2)
    plan = [Level(0, 0.5, 3, 1.0, 0.5, False, width=0.2), Level(1, 0.1, 2, 1.0, 0.1, False, width=None)]
    capped = _flow(0.5).run(z, plan[:1])
    torch.testing.assert_close(capped[:, 0], torch.full((4,), 3 * 0.5 * 0.2))  # 3 steps of 0.5 widths
    free = _flow(0.0).run(z, plan[:1])
    torch.testing.assert_close(free[:, 0], torch.full((4,), 300.0))
    no_width = _flow(0.5).run(z, plan[1:])  # a level without a width is not capped
    torch.testing.assert_close(no_width[:, 0], torch.full((4,), 200.0))


def test_plan_levels_carries_the_width_and_negative_cap_is_refused():
    grid = torch.tensor([1.0, 0.5])
    plan = plan_levels(grid, grid, torch.tensor([0.9, 0.4]), variant="exact", switch_t=0.2, steps_per_level=1,
                       exact_steps_per_level=0, eta0=10.0, schedule="width2")
    assert [lv.width for lv in plan] == pytest.approx([0.9, 0.4])
    assert plan_levels(grid, grid, None, variant="exact", switch_t=0.2, steps_per_level=1, exact_steps_per_level=0,
                       eta0=1.0, schedule="sigma")[0].width is None
    with pytest.raises(ConfigError, match="max_move"):
        _flow(-1.0)
