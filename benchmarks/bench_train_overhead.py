"""Training-step overhead of each method (``dmmd``, ``gmmn``, ``mmdgan``, ``mmdgan-gp``) against the same step
written plainly in torch (goal: ratio <= 1.10).

Both sides use the same networks (the plain side trains deep copies of the method's own modules, so the
architectures are identical), the same batch sizes, losses, optimisers and hyper-parameters: the ``cpu-quick``
presets on ``digits`` (built in, 1x8x8; no download). The plain side draws its batches by indexing one tensor of the
training set and writes the losses inline (pairwise squared distances, ``exp``/``pow`` mixtures, ``autograd.grad``
for penalties); the framework side is ``method.train_step(step, generator)`` as the trainer calls it (batch
construction through the data set, registry kernels, ``mmd2``/``witness``, logging to floats, EMA, diagnostics).

* ``dmmd``: 4 noise levels x (64 clean + 64 noisy), RBF kernel of width ``max(sigma_t, 0.1) sqrt(64)`` on the conv
  critic's features, gradient penalty at 16 interpolates per level, L2 witness penalty, the flow-alignment term
  (``lambda_flow``: the witness gradient at the noisy points against the denoising direction), Adam, clipping, EMA.
* ``gmmn``: MLP generator, batch 256, biased MMD^2 of a 6-variance Gaussian mixture on [0, 1] pixels, sqrt loss, SGD.
* ``mmdgan``: 5 critic steps (weight clipping, unbiased MMD^2 of the sigma 1..16 mixture, auto-encoder terms,
  RMSprop) + 1 generator step; batch 64, DCGAN width 16.
* ``mmdgan-gp``: 5 critic steps (rational-quadratic + linear kernel, witness gradient penalty, L2 penalty on the
  critic's activations, Adam) + 1 generator step; batch 64.

    python benchmarks/bench_train_overhead.py [--methods dmmd,gmmn,mmdgan,mmdgan-gp] [--reps 7] [--inner 3]
        [--threads 1]

Prints ``name: value`` lines per method: milliseconds per step (wall and process CPU, medians of interleaved
repetitions: framework, plain, framework, ...), ``ratio`` = framework / plain, and the loss of the first step on
both sides (they draw the same batches from the same seed: ``same_first_loss = 1`` checks that the plain code
computes the same step).
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

STEP = 1001  # a generator iteration past the GANs' critic warm-up (critic_steps_at = critic_steps)


def sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Plain pairwise squared distances ``[n, m]``."""
    return (a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)


def mmd2_from_grams(kxx: Tensor, kyy: Tensor, kxy: Tensor, biased: bool) -> Tensor:
    n, m = len(kxx), len(kyy)
    if biased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    return ((kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
            - 2 * kxy.mean())


def build(method: str) -> Any:
    """The method with the ``cpu-quick`` preset on ``digits``, on the CPU."""
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import build_method, resolve

    reg = get_registry()
    spec = resolve(reg, method, "digits", preset="cpu-quick", overrides={"device": "cpu"})
    return build_method(reg, spec, "cpu")


def train_tensor(m: Any) -> Tensor:
    ds = m.data.train
    return ds.get(torch.arange(len(ds)))


# -- plain steps -------------------------------------------------------------------------------------------------


class PlainDMMD:
    """The DMMD critic step (RBF kernel with the fixed noise-adaptive width of the digits recipe)."""

    def __init__(self, m: Any) -> None:
        c = self.c = m.config
        assert c.kernel == "rbf" and not c.learn_width and c.width_prior == "sigma", "written for the digits recipe"
        self.net = copy.deepcopy(m.backbone).train()
        self.ema = copy.deepcopy(m.ema_backbone)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.data = train_tensor(m)
        sch = m.schedule
        self.s, self.min_ab, self.t_min = sch.s, sch.min_alpha_bar, sch.t_min
        self.d_in = math.prod(m.shape)
        self.k = min(c.gp_samples or c.n_clean, c.n_clean, c.n_noisy)
        self.gen = torch.Generator().manual_seed(0)
        self.step_count = 0

    def alpha_sigma(self, t: Tensor) -> tuple[Tensor, Tensor]:
        a = (t + self.s) / (1 + self.s) * (math.pi / 2)
        a0 = self.s / (1 + self.s) * (math.pi / 2)
        abar = self.min_ab + (1 - self.min_ab) * (torch.cos(a).square() / math.cos(a0) ** 2).clamp(0, 1)
        return abar.sqrt(), (1 - abar).clamp_min(0).sqrt()

    def step(self) -> float:
        c, gen = self.c, self.gen
        g, n, m, k = c.groups, c.n_clean, c.n_noisy, self.k
        t = self.t_min + (1 - self.t_min) * torch.rand(g, generator=gen) ** c.t_power
        x_all = self.data[torch.randint(len(self.data), (g * (n + m),), generator=gen)]
        eps = torch.randn(g * m, *self.data.shape[1:], generator=gen)
        u = torch.rand(g * k, 1, 1, 1, generator=gen)
        x = x_all[: g * n].view(g, n, *self.data.shape[1:])
        x_src = x_all[g * n :]
        alpha, sigma = self.alpha_sigma(t.repeat_interleave(m))
        y = (alpha[:, None, None, None] * x_src + sigma[:, None, None, None] * eps).view(g, m, *x.shape[2:])
        xh = (u.view(g, k, 1, 1, 1) * x[:, :k] + (1 - u.view(g, k, 1, 1, 1)) * y[:, :k]).flatten(0, 1)
        xh.requires_grad_(True)
        y_in = y.flatten(0, 1).detach().requires_grad_(c.lambda_flow > 0)
        tt = torch.cat([t.repeat_interleave(n), t.repeat_interleave(m)])
        feats = self.net(torch.cat([x.flatten(0, 1), y_in]), tt)
        fh = self.net(xh, t.repeat_interleave(k)).view(g, k, -1)
        fx, fy = feats[: g * n].view(g, n, -1), feats[g * n :].view(g, m, -1)
        h = self.alpha_sigma(t)[1].clamp_min(c.width_min) * math.sqrt(self.d_in) * c.width_init
        mmd, l2, wh = [], [], []
        for i in range(g):
            inv = -1 / (2 * h[i] ** 2)
            kxx, kyy, kxy = ((sq_dists(a, b) * inv).exp() for a, b in ((fx[i], fx[i]), (fy[i], fy[i]), (fx[i], fy[i])))
            mmd.append(mmd2_from_grams(kxx, kyy, kxy, biased=False))
            fz = torch.cat([fx[i], fy[i]])
            w = (sq_dists(fz, fx[i]) * inv).exp().mean(1) - (sq_dists(fz, fy[i]) * inv).exp().mean(1)
            l2.append(w.square().mean())
            wh.append((sq_dists(fh[i], fx[i]) * inv).exp().mean(1) - (sq_dists(fh[i], fy[i]) * inv).exp().mean(1))
        (grad,) = torch.autograd.grad(torch.cat(wh).sum(), xh, create_graph=True)
        gp = (grad.flatten(1).norm(dim=1).view(g, k) - 1).square().mean(1)
        per_group = -torch.stack(mmd) + c.lambda_gp * gp + c.lambda_l2 * torch.stack(l2)
        if c.lambda_flow > 0:  # the witness field at noisy points against the denoising direction, up to a scale
            kf = min(c.flow_samples or m, m)
            vals = []
            for i in range(g):
                inv = -1 / (2 * h[i] ** 2)
                fx_d, fy_d = fx[i].detach(), fy[i].detach()
                vals.append((sq_dists(fy[i, :kf], fx_d) * inv).exp().mean(1)
                            - (sq_dists(fy[i, :kf], fy_d) * inv).exp().mean(1))
            (v,) = torch.autograd.grad(torch.stack(vals).sum(), y_in, create_graph=True)
            v = v.view(g, m, -1)[:, :kf].flatten(1)
            d = (x_src.view(g, m, -1) - y.view(g, m, -1))[:, :kf].flatten(1)
            vd = (v * d).sum(1)
            vv, dd = v.square().sum(1).clamp_min(1e-30), d.square().sum(1).clamp_min(1e-30)
            misfit = 1 - torch.relu(vd).square() / (vv * dd)
            per_group = per_group + c.lambda_flow * misfit
        loss = per_group.mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        self.opt.step()
        decay = min(c.ema, (1 + self.step_count) / (10 + self.step_count))
        with torch.no_grad():
            for p, q in zip(self.net.parameters(), self.ema.parameters()):
                q.lerp_(p, 1 - decay)
        self.step_count += 1
        return float(loss.detach())


class PlainGMMN:
    """The GMMN generator step (biased MMD^2, variance-convention Gaussian mixture, sqrt loss, SGD)."""

    def __init__(self, m: Any) -> None:
        c = self.c = m.config
        self.G = copy.deepcopy(m.G).train()
        self.opt = torch.optim.SGD(self.G.parameters(), lr=c.lr, momentum=c.momentum)
        self.data = (train_tensor(m) + 1) / 2  # [0, 1] pixels, as the method's kernel sees them
        self.variances = list(m.kernel.sigmas)
        self.gen = torch.Generator().manual_seed(0)

    def step(self) -> float:
        c, gen = self.c, self.gen
        fx = self.data[torch.randint(len(self.data), (c.batch_size,), generator=gen)].flatten(1)
        z = torch.rand(c.batch_size, c.nz, generator=gen) * 2 - 1
        fy = self.G(z).flatten(1)
        d = [sq_dists(fx, fx), sq_dists(fy, fy), sq_dists(fx, fy)]
        kxx, kyy, kxy = (sum((-dd / (2 * s)).exp() for s in self.variances) for dd in d)
        loss = mmd2_from_grams(kxx, kyy, kxy, biased=True).clamp_min(1e-10).sqrt()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return float(loss.detach())


class PlainMMDGAN:
    """``critic_steps`` MMD GAN critic steps + one generator step (paper defaults of the method)."""

    def __init__(self, m: Any) -> None:
        c = self.c = m.config
        assert c.divergence == {"name": "mmd", "estimator": "unbiased"} and not c.sqrt_loss and c.lambda_rg == 0
        self.G, self.enc, self.dec = (copy.deepcopy(x).train() for x in (m.G, m.critic, m.decoder))
        self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=c.lr, alpha=c.rmsprop_alpha)
        self.opt_d = torch.optim.RMSprop([*self.enc.parameters(), *self.dec.parameters()], lr=c.lr,
                                         alpha=c.rmsprop_alpha)
        self.sigmas = list(m.kernel.sigmas)
        self.data = train_tensor(m)
        self.fmt = m.memory_format  # the method's (channels-last images on CPU by default)
        self.gen = torch.Generator().manual_seed(0)
        self.n_critic = m.critic_steps_at(STEP)

    def mmd2(self, fx: Tensor, fy: Tensor) -> Tensor:
        d = [sq_dists(fx, fx), sq_dists(fy, fy), sq_dists(fx, fy)]
        kxx, kyy, kxy = (sum((-dd / (2 * s * s)).exp() for s in self.sigmas) for dd in d)
        return mmd2_from_grams(kxx, kyy, kxy, biased=False)

    def batch(self) -> tuple[Tensor, Tensor]:
        b = self.c.batch_size
        x = self.data[torch.randint(len(self.data), (b,), generator=self.gen)]
        return x.contiguous(memory_format=self.fmt), torch.randn(b, self.c.nz, generator=self.gen)

    def step(self) -> float:
        c = self.c
        for _ in range(self.n_critic):
            with torch.no_grad():
                for p in self.enc.parameters():
                    p.clamp_(-c.clip, c.clip)
            x, z = self.batch()
            with torch.no_grad():
                y = self.G(z)
            fx, fy = self.enc(x), self.enc(y)
            obj = self.mmd2(fx, fy) - c.lambda_ae * (F.mse_loss(self.dec(fx), x) + F.mse_loss(self.dec(fy), y))
            self.opt_d.zero_grad(set_to_none=True)
            obj.neg().backward()
            self.opt_d.step()
        x, z = self.batch()
        for p in self.enc.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            fx = self.enc(x)
        loss = self.mmd2(fx, self.enc(self.G(z)))
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        for p in self.enc.parameters():
            p.requires_grad_(True)
        return float(loss.detach())


class PlainMMDGANGP:
    """``critic_steps`` MMD GAN-GP critic steps + one generator step (rq* kernel, GP on the witness, L2 penalty)."""

    def __init__(self, m: Any) -> None:
        from torch import nn

        c = self.c = m.config
        assert c.gp_norm == "sample" and not c.rq_diagonal_quirk and c.grad_clip_per_tensor == 0 and not c.adaptive_lr
        self.G, self.critic = copy.deepcopy(m.G).train(), copy.deepcopy(m.critic).train()
        for mod in self.critic.modules():  # deep copies keep the method's hooks: start from none
            mod._forward_hooks.clear()
        self.taps: list[Tensor] = []
        acts = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SiLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.Softplus)
        for mod in self.critic.modules():
            if isinstance(mod, acts):
                mod.register_forward_hook(lambda _m, _i, out: self.taps.append(out))
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=c.lr, betas=(c.beta1, c.beta2))
        self.alphas, self.lin = list(m.kernel.alphas), float(m.kernel.linear_weight)
        self.data = train_tensor(m)
        self.fmt = m.memory_format  # the method's (channels-last images on CPU by default)
        self.gen = torch.Generator().manual_seed(0)

    def gram(self, a: Tensor, b: Tensor) -> Tensor:
        d = sq_dists(a, b)
        return sum((1 + d / (2 * al)) ** -al for al in self.alphas) + self.lin * a @ b.T

    def batch(self) -> tuple[Tensor, Tensor]:
        b = self.c.batch_size
        x = self.data[torch.randint(len(self.data), (b,), generator=self.gen)]
        return x.contiguous(memory_format=self.fmt), torch.rand(b, self.c.nz, generator=self.gen) * 2 - 1

    def step(self) -> float:
        c = self.c
        for _ in range(c.critic_steps):
            x, z = self.batch()
            a = torch.rand(len(x), 1, 1, 1, generator=self.gen)
            with torch.no_grad():
                y = self.G(z)
            xhat = (x + a * (y - x)).requires_grad_(True)
            b = len(x)
            self.taps = []
            h = self.critic(torch.cat([x, y, xhat]))
            hx, hy, hh = h[:b], h[b : 2 * b], h[2 * b :]
            m2 = mmd2_from_grams(self.gram(hx, hx), self.gram(hy, hy), self.gram(hx, hy), biased=False)
            w = self.gram(hh, hx).mean(1) - self.gram(hh, hy).mean(1)
            (grad,) = torch.autograd.grad(w.sum(), xhat, create_graph=True)
            gp = ((grad.flatten(1).square().sum(1) + 1e-5).sqrt() - 1).square().mean()
            l2 = sum(act[:b].square().mean() + act[b : 2 * b].square().mean() for act in [*self.taps, h])
            loss = -m2 + c.lambda_gp * gp + c.lambda_l2 * l2
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            self.opt_d.step()
        self.taps = []
        x, z = self.batch()
        for p in self.critic.parameters():
            p.requires_grad_(False)
        with torch.no_grad():
            hx = self.critic(x)
        hy = self.critic(self.G(z))
        loss = mmd2_from_grams(self.gram(hx, hx), self.gram(hy, hy), self.gram(hx, hy), biased=False)
        self.opt_g.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_g.step()
        for p in self.critic.parameters():
            p.requires_grad_(True)
        self.taps = []
        return float(loss.detach())


PLAIN = {"dmmd": PlainDMMD, "gmmn": PlainGMMN, "mmdgan": PlainMMDGAN, "mmdgan-gp": PlainMMDGANGP}


def _time(fn: Callable[[], Any], inner: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per call."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner, (time.process_time() - c) / inner


def bench(method: str, reps: int, inner: int) -> dict[str, float]:
    m = build(method)
    plain = PLAIN[method](m)
    gen = torch.Generator().manual_seed(0)
    state = {"step": STEP}

    def framework() -> dict[str, float]:
        logs = m.train_step(state["step"], gen)
        state["step"] += 1
        return logs

    first_f = framework()
    first_p = plain.step()
    times: dict[str, list[tuple[float, float]]] = {"framework": [], "plain": []}
    for _ in range(reps):
        times["framework"].append(_time(framework, inner))
        times["plain"].append(_time(plain.step, inner))
    f, p = (statistics.median(t[0] for t in times[k]) for k in ("framework", "plain"))
    fc, pc = (statistics.median(t[1] for t in times[k]) for k in ("framework", "plain"))
    return {"framework_ms": 1e3 * f, "plain_ms": 1e3 * p, "ratio": f / p, "framework_cpu_ms": 1e3 * fc,
            "plain_cpu_ms": 1e3 * pc, "ratio_cpu": fc / pc, "first_loss_framework": float(first_f["loss"]),
            "first_loss_plain": first_p,
            # 1 when both sides computed the same first step (same batches, same loss): a check of the plain code
            "same_first_loss": float(math.isclose(float(first_f["loss"]), first_p, rel_tol=1e-4, abs_tol=1e-7))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="dmmd,gmmn,mmdgan,mmdgan-gp")
    ap.add_argument("--reps", type=int, default=7, help="interleaved repetitions (medians are reported)")
    ap.add_argument("--inner", type=int, default=3, help="steps per timed repetition")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads: {torch.get_num_threads()}")
    print("data: digits (cpu-quick presets)")
    for method in args.methods.split(","):
        for k, v in bench(method, args.reps, args.inner).items():
            print(f"{method}_{k}: {v:.4g}", flush=True)


if __name__ == "__main__":
    main()
