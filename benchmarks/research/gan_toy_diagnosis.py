"""Why ``mmdgan`` / ``mmdgan-gp`` miss the modes of ``toy-25gaussians`` (docs/baselines.md, "Measured").

Trains a GAN method of the zoo through its own ``train_step`` for a wall-clock budget, then prints:

* ``modes`` / ``hq``: the mode metrics of ``gflowzoo evaluate`` on 2,500 samples;
* the **kernel regime** on 512 real and 512 generated samples: mean off-diagonal ``k(h(x), h(x'))``,
  ``k(h(y), h(y'))`` and mean ``k(h(x), h(y))``. Three nearly equal values mean the kernel, seen through the critic,
  hardly tells real from generated samples (a critic too smooth to see the modes); ``Kxy`` far below the other two
  would mean saturation (no attraction left);
* the mean critic-feature norm ``|h|`` and the largest local stretch of the critic, ``max |dh/dx|`` (spectral norm
  of the Jacobian, over 256 real points): to resolve modes of std 0.018 (model units) spaced 0.71 apart, with
  kernels of unit scale in feature space, the critic must stretch space by tens;
* the generator's gradient split into attraction (cross term) and repulsion (generated-generated term).

``--particles N`` replaces the generator by N free points (a table indexed by the latent), which isolates the
critic: if free particles do not find the modes either, the generator is not what fails.

    python benchmarks/research/gan_toy_diagnosis.py mmdgan-gp --budget 60 [--particles 1024] [--set key=value]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn


class ParticleTable(nn.Module):
    """``N`` free 2-D points; a latent picks one through its first coordinate (uniform latents spread evenly)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.points = nn.Parameter(torch.randn(n, 2) * 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = (z[:, 0] + 1) / 2 if z.min() >= -1 and z.max() <= 1 else torch.special.ndtr(z[:, 0])
        return self.points[(u * len(self.points)).long().clamp(0, len(self.points) - 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("method", choices=["mmdgan", "mmdgan-gp"])
    ap.add_argument("--budget", type=float, default=60.0, help="training seconds")
    ap.add_argument("--particles", type=int, default=0, help="replace the generator by this many free points")
    ap.add_argument("--particle-lr", type=float, default=1e-2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)

    from gflowzoo.metrics.toy import mode_statistics
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve

    reg = get_registry()
    spec = resolve(reg, args.method, "toy-25gaussians", sets=args.sets, preset="cpu-quick",
                   overrides={"device": "cpu", "seed": args.seed})
    m = build_method(reg, spec, "cpu")
    if args.particles:
        m.G = ParticleTable(args.particles)
        m.opt_g = torch.optim.Adam(m.G.parameters(), lr=args.particle_lr, betas=(0.5, 0.9))
    gen = torch.Generator().manual_seed(args.seed)
    step, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.budget:
        m.train_step(step, gen)
        step += 1

    ds, info = m.data.train, m.data.train.info()
    with torch.no_grad():
        samples = m.G.points.detach() if args.particles else m.sample(2500, torch.Generator().manual_seed(1))
    scale = 2500 / len(samples)
    st = mode_statistics(ds.to_unit(samples), torch.tensor(info["centres"]), info["mode_std"], per_2500=20 * scale)
    print(f"method: {args.method}{' (free particles)' if args.particles else ''}")
    print(f"generator_steps: {step}")
    print(f"modes: {st['covered']}/25")
    print(f"hq: {st['hq_fraction']:.3f}")

    g = torch.Generator().manual_seed(args.seed + 7)
    x = ds.sample(512, g)
    with torch.no_grad():
        y = m.G(m.latent(g, 512))
        hx, hy = m.critic(x), m.critic(y)
        kxx, kyy, kxy = m.kernel.gram(hx, hx), m.kernel.gram(hy, hy), m.kernel.gram(hx, hy)
    n = len(x)

    def off_diag(k: torch.Tensor) -> float:
        return float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))

    print(f"kernel_xx: {off_diag(kxx):.4f}")
    print(f"kernel_yy: {off_diag(kyy):.4f}")
    print(f"kernel_xy: {float(kxy.mean()):.4f}")
    print(f"feature_norm_real: {float(hx.norm(dim=1).mean()):.3f}")
    print(f"feature_norm_generated: {float(hy.norm(dim=1).mean()):.3f}")
    stretch = 0.0
    for xi in x[:256]:
        jac = torch.autograd.functional.jacobian(lambda v: m.critic(v[None])[0], xi)
        stretch = max(stretch, float(torch.linalg.matrix_norm(jac, ord=2)))
    print(f"critic_max_stretch: {stretch:.2f}")
    y = y.clone().requires_grad_(True)
    hy = m.critic(y)
    (attract,) = torch.autograd.grad(-2 * m.kernel.gram(hx, hy).mean(), y, retain_graph=True)
    k_yy = m.kernel.gram(hy, hy)
    (repel,) = torch.autograd.grad((k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1)), y)
    print(f"generator_grad_attraction: {float(attract.norm()):.4f}")
    print(f"generator_grad_repulsion: {float(repel.norm()):.4f}")


if __name__ == "__main__":
    main()
