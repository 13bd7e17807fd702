"""The tail of the particle cloud (``sampler.bounded_repulsion``): a particle in the tail of a cloud wider than the
data is pushed away from the data by the plain MMD field and pulled toward it by the bounded one."""

from __future__ import annotations

import torch

from gflowzoo_dmmd.flow import Level, ParticleFlow, bounded_repulsion

#: a small untrained toy critic with the RBF base kernel (see test_dmmd_sampler.py)
RBF_TOY = ['kernel="rbf"', 'width_prior="none"', "learn_width=true", "width_init=0.0", "backbone.input_skip=0.0",
           "lambda_flow=0.0", "backbone.width=16", "backbone.depth=1", "feature_dim=8", "stats_samples=256",
           "sampler.levels=4", "sampler.steps_per_level=2", "sampler.n_ref=16", "sampler.particles=8",
           'sampler.step_schedule="width2"', "sampler.step_size=0.01"]


class _Euler:
    def step(self, z, velocity, eta, scale=None, generator=None):
        return z + eta * velocity(z)


def _terms(data: torch.Tensor, h: float):
    """Input-space RBF kernel means of width ``h``: ``p`` over ``data``, ``q`` over the particle source."""

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-torch.cdist(a, b).square() / (2 * h * h)).mean(1)

    def terms(z, level, source):
        return k(z, data), k(z, z.detach() if source is None else source)

    return terms


def _run(bounded: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Data: a tight cluster at the origin. Particles: a bulk twice as wide plus one particle in its tail at
    (3, 0). An exact interacting flow with kernel width 1 and ``eta = 10 h^2``, moves capped at one width."""
    g = torch.Generator().manual_seed(0)
    data = 0.3 * torch.randn(400, 2, generator=g)
    z = torch.cat([0.6 * torch.randn(399, 2, generator=g), torch.tensor([[3.0, 0.0]])])
    terms = _terms(data, 1.0)
    if bounded:
        witness = bounded_repulsion(terms)
    else:
        def witness(z, level, source):
            p, q = terms(z, level, source)
            return p - q
    flow = ParticleFlow(witness, lambda z_all, level: z_all, lambda level: None, _Euler(), max_move=1.0)
    plan = [Level(0, 1.0, 10, 10.0, 1.0, True, width=1.0)]
    return z, flow.run(z, plan)


def test_plain_mmd_pushes_the_tail_particle_away_and_the_bounded_field_pulls_it_in():
    z0, plain = _run(bounded=False)
    _, bounded = _run(bounded=True)
    r0 = float(z0[-1].norm())
    assert float(plain[-1].norm()) > r0 + 0.1  # the repulsion from the bulk wins: the particle leaves
    assert float(bounded[-1].norm()) < r0 - 1.0  # bounded: it moves toward the data
    assert float(bounded[-1].norm()) < 1.5


def test_bounded_field_is_the_mmd_field_where_the_data_is_denser():
    """Where ``p >= q`` the bounded witness has the MMD witness's gradient; where ``q > p`` it is
    ``p grad log(p / q)``."""
    g = torch.Generator().manual_seed(1)
    data, src = torch.randn(50, 2, generator=g), 2.0 * torch.randn(60, 2, generator=g)
    terms = _terms(data, 0.7)
    z = torch.cat([torch.zeros(1, 2), torch.tensor([[4.0, 1.0]])]).requires_grad_(True)
    level = Level(0, 0.5, 1, 1.0, 0.5, True, width=0.7)
    (gb,) = torch.autograd.grad(bounded_repulsion(terms)(z, level, src).sum(), z)
    p, q = terms(z, level, src)
    (gm,) = torch.autograd.grad((p - q).sum(), z, retain_graph=True)
    assert float(p[0].detach()) > float(q[0].detach()) and float(q[1].detach()) > float(p[1].detach())
    torch.testing.assert_close(gb[0], gm[0])
    (glp,) = torch.autograd.grad(torch.log(p[1]) - torch.log(q[1]), z)
    torch.testing.assert_close(gb[1], p[1].detach() * glp[1])


def test_dmmd_witness_terms_match_the_witness_and_sampling_runs(build):
    m = build("dmmd", "toy-8gaussians", *RBF_TOY, "sampler.bounded_repulsion=true")
    m.train_step(0, torch.Generator().manual_seed(0))
    m.finalize(torch.Generator())
    plan = m.plan(m.stats)
    witness, _, _ = m.make_witness(plan)
    terms = m.witness_terms(plan)
    z, src = torch.randn(5, 2), torch.randn(8, 2)
    fsrc = m._net(True)[0](src, torch.full((8,), plan[1].t))
    p, q = terms(z, plan[1], fsrc)
    torch.testing.assert_close(p - q, witness(z, plan[1], fsrc))
    x = m.sample(8, torch.Generator().manual_seed(0))
    assert torch.isfinite(x).all() and x.shape == (8, 2)


def test_bounded_repulsion_is_reported_and_left_out_with_a_linear_kernel(build):
    """The toy presets set the flag; with ``--set kernel=linear`` (terms that are inner products, not densities) the
    sampler uses the plain field, the same samples as without the flag, and its sampling info says which applied."""
    linear = [*RBF_TOY, 'kernel="linear"', 'sampler.step_schedule="sigma"']
    on = build("dmmd", "toy-8gaussians", *linear, "sampler.bounded_repulsion=true")
    off = build("dmmd", "toy-8gaussians", *linear, "sampler.bounded_repulsion=false")
    off.load_state_dict(on.state_dict())
    for m in (on, off):
        m.finalize(torch.Generator().manual_seed(0))
    torch.testing.assert_close(on.sample(6, torch.Generator().manual_seed(0)),
                               off.sample(6, torch.Generator().manual_seed(0)))
    assert "bounded_repulsion" not in on.sampling_info()
    rbf = build("dmmd", "toy-8gaussians", *RBF_TOY, "sampler.bounded_repulsion=true")
    assert rbf.sampling_info()["bounded_repulsion"] is True
