"""Forward + backward time of the ``unet`` backbone's U-Net (and the full backbone) on the CPU.

Usage: python plugins/gflowzoo-diffusers/benchmarks/bench_unet.py [--size tiny] [--batch 64] [--threads 1]

Prints, per input shape, the median wall-clock and CPU (process) seconds of one forward + backward pass of
``ImageUNet`` (the eps-net of ``ddpm``) and of the ``unet`` backbone with ``features="mid"`` (down path only).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", default="tiny")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from gflowzoo_diffusers.backbone import Unet
    from gflowzoo_diffusers.unets import ImageUNet

    dev = torch.device(args.device)
    for shape, label in (((1, 8, 8), "8x8 digits"), ((1, 28, 28), "28x28 MNIST"), ((3, 32, 32), "32x32 CIFAR")):
        torch.manual_seed(0)
        x = torch.randn(args.batch, *shape, device=dev)
        t = torch.rand(args.batch, device=dev)
        unet = ImageUNet(shape, args.size).to(dev)
        backbone = Unet(shape, 64, size=args.size, features="mid").to(dev)

        def eps_step() -> None:
            unet(x, t * 999).square().mean().backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        def feat_step() -> None:
            backbone(x, t).square().mean().backward()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        n = sum(p.numel() for p in unet.parameters())
        w1, c1 = _time(eps_step, args.repeats)
        w2, c2 = _time(feat_step, args.repeats)
        print(f"{label:12s} {args.size} ({n / 1e6:.2f} M) batch {args.batch}: U-Net fwd+bwd {w1:.3f} s wall "
              f"({c1:.3f} s CPU); backbone 'mid' fwd+bwd {w2:.3f} s wall ({c2:.3f} s CPU)")


if __name__ == "__main__":
    main()
