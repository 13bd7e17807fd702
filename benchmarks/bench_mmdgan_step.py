"""Time one critic step and one generator step of ``mmdgan`` through gflowzoo against the same steps written plainly
in torch, on MNIST-sized random data (batch 64, 1x32x32, nz = k = 10, the official DCGAN widths 64, the official
code's loss: biased MMD^2, sqrt, one-sided hinge 16, auto-encoder terms 8 + 8, clip 0.01, RMSprop 5e-5).

Measurements are interleaved (framework, plain, framework, ...) and medians are reported, because the machine may
be shared. For scale, the official code takes about 0.20 s per critic step and 0.13 s per generator step on the
project's reference CPU.

    python benchmarks/bench_mmdgan_step.py [--reps 15] [--inner 5] [--threads 1]

Prints ``name: value`` lines: wall seconds per step, the framework's overhead in percent, the ratio to the
official code's timings, and the same for process CPU seconds (more robust on a shared machine) -- these use
``channels_last = false`` so that framework and plain torch run the same memory format; the framework with
``channels_last = true`` (what the default ``auto`` picks on CPU); and ``official_like``, the steps with the official code's control flow (it runs the
critic's decoder in the generator step too) timed in the same run, which is the like-for-like reference on this
machine (``ratio_to_official_like_*``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

OFFICIAL_CRITIC_S, OFFICIAL_GENERATOR_S = 0.20, 0.13
B, NC, SIDE, NZ, WIDTH = 64, 1, 32, 10, 64
SIGMAS = (1.0, 2.0, 4.0, 8.0, 16.0)


class _Data:
    """The minimum a method needs of a DataHandle: shape, kind and a train split."""

    def __init__(self, array: np.ndarray) -> None:
        from gflowzoo.data import ArrayImages

        self.train = ArrayImages(array, "random-mnist32")
        self.shape, self.kind = self.train.shape, "image"


def framework_method(array: np.ndarray, channels_last: bool = False):
    """``mmdgan`` built through the registry, with the official code's loss options."""
    from gflowzoo.plugins import get_registry
    from gflowzoo.session import resolve
    from gflowzoo_mmdgan.mmdgan import MMDGAN

    reg = get_registry()
    sets = [f"nz={NZ}", f"batch_size={B}", "divergence.estimator=\"biased\"", "sqrt_loss=true", "lambda_rg=16.0",
            f"channels_last={str(channels_last).lower()}"]
    spec = resolve(reg, "mmdgan", "mnist", sets=sets, preset="paper", overrides={"device": "cpu"})
    torch.manual_seed(0)
    return MMDGAN(spec.model, _Data(array), "cpu")


# -- the same thing written plainly ------------------------------------------------------------------------------


def plain_nets():
    """DCGAN generator, encoder and decoder for 32 px (Li et al. layout), DCGAN init."""

    def decoder(out_act: nn.Module) -> nn.Sequential:
        return nn.Sequential(
            nn.ConvTranspose2d(NZ, 256, 4, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True),
            nn.ConvTranspose2d(64, NC, 4, 2, 1, bias=False), out_act,
        )

    enc = nn.Sequential(
        nn.Conv2d(NC, 64, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),
        nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
        nn.Conv2d(128, 256, 4, 2, 1, bias=False), nn.BatchNorm2d(256), nn.LeakyReLU(0.2, True),
        nn.Conv2d(256, NZ, 4, 1, 0, bias=False),
    )
    nets = [decoder(nn.Tanh()), enc, decoder(nn.Tanh())]
    for net in nets:
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.data.normal_(0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.normal_(1, 0.02)
                m.bias.data.zero_()
    return nets


def plain_mmd2(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    z = torch.cat([x, y])
    zz = z @ z.T
    sq = zz.diagonal()
    d2 = (sq[:, None] - 2 * zz + sq[None, :]).clamp_min(0)
    k = sum(torch.exp(-d2 / (2 * s * s)) for s in SIGMAS)
    m = len(x)
    return k[:m, :m].mean() + k[m:, m:].mean() - 2 * k[:m, m:].mean()


class Plain:
    def __init__(self, data: torch.Tensor) -> None:
        torch.manual_seed(0)
        self.G, self.enc, self.dec = plain_nets()
        self.data = data
        self.opt_g = torch.optim.RMSprop(self.G.parameters(), lr=5e-5)
        self.opt_d = torch.optim.RMSprop([*self.enc.parameters(), *self.dec.parameters()], lr=5e-5)
        self.gen = torch.Generator().manual_seed(0)

    def batch(self):
        idx = torch.randint(len(self.data), (B,), generator=self.gen)
        return self.data[idx], torch.randn(B, NZ, 1, 1, generator=self.gen)

    def critic_step(self):
        for p in self.enc.parameters():
            p.data.clamp_(-0.01, 0.01)
        x, z = self.batch()
        with torch.no_grad():
            y = self.G(z)
        fx, fy = self.enc(x).view(B, -1), self.enc(y).view(B, -1)
        rx, ry = self.dec(fx.view(B, NZ, 1, 1)), self.dec(fy.view(B, NZ, 1, 1))
        mmd = torch.sqrt(torch.relu(plain_mmd2(fx, fy)))
        hinge = -torch.relu(-(fx.mean(0) - fy.mean(0))).mean()
        obj = mmd + 16 * hinge - 8 * ((rx - x) ** 2).mean() - 8 * ((ry - y) ** 2).mean()
        self.opt_d.zero_grad()
        (-obj).backward()
        self.opt_d.step()

    def generator_step(self):
        for p in self.enc.parameters():
            p.requires_grad_(False)
        x, z = self.batch()
        with torch.no_grad():
            fx = self.enc(x).view(B, -1)
        fy = self.enc(self.G(z)).view(B, -1)
        loss = torch.sqrt(torch.relu(plain_mmd2(fx, fy))) + 16 * -torch.relu(-(fx.mean(0) - fy.mean(0))).mean()
        self.opt_g.zero_grad()
        loss.backward()
        self.opt_g.step()
        for p in self.enc.parameters():
            p.requires_grad_(True)


class OfficialLike(Plain):
    """The steps with the control flow of the official code (``OctoberChang/MMD-GAN``, ``mmd_gan.py``), re-written
    here: its critic network returns code *and* reconstruction, so the generator step also runs the decoder on the
    real and the generated batch (the reconstructions are unused); ``sqrt(relu(.))`` of the biased MMD^2. It does
    the same work as the official code on the same torch build, so its time is the like-for-like reference."""

    def net_d(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        code = self.enc(x)
        return code.view(B, -1), self.dec(code).view(B, -1)

    def critic_step(self):
        for p in [*self.enc.parameters(), *self.dec.parameters()]:
            p.requires_grad_(True)
        for p in self.enc.parameters():
            p.data.clamp_(-0.01, 0.01)
        self.opt_d.zero_grad()
        x, z = self.batch()
        fx, rx = self.net_d(x)
        with torch.no_grad():
            y = self.G(z)
        fy, ry = self.net_d(y)
        mmd = torch.sqrt(torch.relu(plain_mmd2(fx, fy)))
        hinge = -torch.relu(-(fx.mean(0) - fy.mean(0))).mean()
        ae = ((x.view(B, -1) - rx) ** 2).mean() + ((y.view(B, -1) - ry) ** 2).mean()
        (-(mmd + 16 * hinge - 8 * ae)).backward()
        self.opt_d.step()

    def generator_step(self):
        for p in [*self.enc.parameters(), *self.dec.parameters()]:
            p.requires_grad_(False)
        self.opt_g.zero_grad()
        x, z = self.batch()
        fx, _ = self.net_d(x)
        fy, _ = self.net_d(self.G(z))
        loss = torch.sqrt(torch.relu(plain_mmd2(fx, fy))) + 16 * -torch.relu(-(fx.mean(0) - fy.mean(0))).mean()
        loss.backward()
        self.opt_g.step()


def _time(fn, inner: int) -> tuple[float, float]:
    """(wall, process CPU) seconds per call."""
    t, c = time.perf_counter(), time.process_time()
    for _ in range(inner):
        fn()
    return (time.perf_counter() - t) / inner, (time.process_time() - c) / inner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=15, help="interleaved repetitions (medians are reported)")
    ap.add_argument("--inner", type=int, default=5, help="steps per timed repetition")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    array = rng.integers(0, 256, size=(10_000, NC, SIDE, SIDE), dtype=np.uint8)
    method = framework_method(array)
    method_cl = framework_method(array, channels_last=True)
    images = torch.from_numpy(array).float().div_(127.5).sub_(1.0)
    plain, official = Plain(images), OfficialLike(images)
    gen = torch.Generator().manual_seed(0)
    cases = {
        "critic": (lambda: method.critic_step(gen), plain.critic_step, lambda: method_cl.critic_step(gen),
                   official.critic_step),
        "generator": (lambda: method.generator_step(gen), plain.generator_step, lambda: method_cl.generator_step(gen),
                      official.generator_step),
    }
    for fns in cases.values():  # warm-up
        for fn in fns:
            fn()
    who = ("framework", "plain", "framework_channels_last", "official_like")
    times: dict[str, list[tuple[float, float]]] = {f"{w}_{k}": [] for k in cases for w in who}
    for _ in range(args.reps):
        for k, fns in cases.items():
            for w, fn in zip(who, fns):
                times[f"{w}_{k}"].append(_time(fn, args.inner))
    print(f"threads: {args.threads}")
    print(f"reps_x_inner: {args.reps}x{args.inner}")
    for k in cases:
        official = OFFICIAL_CRITIC_S if k == "critic" else OFFICIAL_GENERATOR_S
        f, p = (statistics.median(t[0] for t in times[f"{w}_{k}"]) for w in ("framework", "plain"))
        fc, pc = (statistics.median(t[1] for t in times[f"{w}_{k}"]) for w in ("framework", "plain"))
        print(f"framework_{k}_step_s: {f:.4f}")
        print(f"plain_{k}_step_s: {p:.4f}")
        print(f"overhead_{k}_pct: {100 * (f / p - 1):.1f}")
        print(f"ratio_to_official_{k}: {f / official:.2f}")
        print(f"framework_{k}_step_cpu_s: {fc:.4f}")
        print(f"plain_{k}_step_cpu_s: {pc:.4f}")
        print(f"overhead_{k}_cpu_pct: {100 * (fc / pc - 1):.1f}")
        cl = statistics.median(t[0] for t in times[f"framework_channels_last_{k}"])
        clc = statistics.median(t[1] for t in times[f"framework_channels_last_{k}"])
        print(f"framework_channels_last_{k}_step_s: {cl:.4f}")
        print(f"framework_channels_last_{k}_step_cpu_s: {clc:.4f}")
        print(f"ratio_to_official_channels_last_{k}: {cl / official:.2f}")
        ref = statistics.median(t[0] for t in times[f"official_like_{k}"])
        print(f"official_like_{k}_step_s: {ref:.4f}")
        print(f"ratio_to_official_like_{k}: {f / ref:.2f}")
        print(f"ratio_to_official_like_channels_last_{k}: {cl / ref:.2f}")


if __name__ == "__main__":
    main()
