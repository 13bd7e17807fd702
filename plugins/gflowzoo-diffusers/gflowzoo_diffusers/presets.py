"""Presets of the ``ddpm`` method per data set: ``"paper"`` (GPU scale) and ``"cpu-quick"`` (minutes on a CPU).

Sources: the CIFAR-10 ``paper`` preset is Ho et al. (2020), App. B (35.7 M-parameter U-Net, dropout 0.1, Adam
lr 2e-4, batch 128, 5,000 warm-up steps, gradient clipping at 1, EMA 0.9999, 800k steps, T = 1000 linear betas
1e-4 -> 0.02, ancestral sampling with 1,000 steps). The other ``paper`` presets are this project's adaptations of
that recipe (Ho et al. trained no 64-px or MNIST models); the ``cpu-quick`` presets are sized to train in a few
minutes on a laptop CPU and are not meant to reach paper quality.

Samplers: DDIM (``eta = 0``) with as many steps as the ``dmmd`` presets' NFE (``levels x steps_per_level``) for the
same data set and variant, so that ``gflowzoo compare dmmd ddpm`` compares at equal NFE out of the box (a test
checks the two tables agree when the dmmd plugin is installed). Ho et al.'s own sampler is
``--set sampler.kind=ddpm --set sampler.steps=1000``.
"""

from __future__ import annotations

from typing import Any

_HO_CIFAR: dict[str, Any] = {
    "net": {"kind": "unet", "size": "ddpm", "dropout": 0.1},
    "lr": 2e-4, "batch_size": 128, "warmup": 5000, "grad_clip": 1.0, "ema_decay": 0.9999,
    "sampler": {"kind": "ddim", "steps": 500},
    "run": {"steps": 800_000, "checkpoint_every": 10_000, "log_every": 100},
}

_PAPER: dict[str, dict[str, Any]] = {
    "toy": {
        "net": {"kind": "mlp", "width": 256, "depth": 3},
        "lr": 1e-3, "batch_size": 512, "ema_decay": 0.999, "grad_clip": 1.0,
        "sampler": {"kind": "ddim", "steps": 500},
        "run": {"steps": 20_000, "checkpoint_every": 5000, "log_every": 100},
    },
    "digits": {
        "net": {"kind": "unet", "size": "small", "dropout": 0.1},
        "lr": 2e-4, "batch_size": 128, "warmup": 1000, "ema_decay": 0.9999,
        "sampler": {"kind": "ddim", "steps": 250},
        "run": {"steps": 50_000, "checkpoint_every": 5000, "log_every": 100},
    },
    "mnist": {
        "net": {"kind": "unet", "size": "small", "dropout": 0.1},
        "lr": 2e-4, "batch_size": 128, "warmup": 1000, "ema_decay": 0.9999,
        "sampler": {"kind": "ddim", "steps": 500},
        "run": {"steps": 100_000, "checkpoint_every": 10_000, "log_every": 100},
    },
    "cifar10": _HO_CIFAR,
    "celeba64": {
        "net": {"kind": "unet", "size": "ddpm64", "dropout": 0.1},
        "lr": 1e-4, "batch_size": 64, "warmup": 5000, "grad_clip": 1.0, "ema_decay": 0.9999,
        "sampler": {"kind": "ddim", "steps": 500},
        "run": {"steps": 500_000, "checkpoint_every": 10_000, "log_every": 100},
    },
}
_PAPER["lsun-church64"] = _PAPER["celeba64"]
_PAPER["fashion-mnist"] = _PAPER["mnist"]

_CPU_QUICK: dict[str, dict[str, Any]] = {
    "toy": {
        "net": {"kind": "mlp", "width": 128, "depth": 3},
        "lr": 1e-3, "batch_size": 256, "ema_decay": 0.995,
        "sampler": {"kind": "ddim", "steps": 500},
        "run": {"steps": 3000, "checkpoint_every": 1000, "log_every": 50},
    },
    "digits": {
        "net": {"kind": "unet", "size": "tiny"},
        "lr": 1e-3, "batch_size": 64, "warmup": 100, "ema_decay": 0.999,
        "sampler": {"kind": "ddim", "steps": 250},
        "run": {"steps": 2000, "checkpoint_every": 500, "log_every": 50},
    },
    "mnist": {
        "net": {"kind": "unet", "size": "tiny"},
        "lr": 5e-4, "batch_size": 32, "warmup": 100, "ema_decay": 0.995,
        "sampler": {"kind": "ddim", "steps": 250},
        "run": {"steps": 1000, "checkpoint_every": 250, "log_every": 25},
    },
    "cifar10": {
        "net": {"kind": "unet", "size": "tiny"},
        "lr": 5e-4, "batch_size": 16, "warmup": 50, "ema_decay": 0.99,
        "sampler": {"kind": "ddim", "steps": 50},
        "run": {"steps": 300, "checkpoint_every": 100, "log_every": 10},
    },
    "celeba64": {
        "net": {"kind": "unet", "size": "tiny"},
        "lr": 5e-4, "batch_size": 8, "warmup": 50, "ema_decay": 0.99,
        "sampler": {"kind": "ddim", "steps": 50},
        "run": {"steps": 200, "checkpoint_every": 100, "log_every": 10},
    },
}
_CPU_QUICK["lsun-church64"] = _CPU_QUICK["celeba64"]
_CPU_QUICK["fashion-mnist"] = _CPU_QUICK["mnist"]


def family(dataset: str) -> str:
    """The preset family of a data set name: ``"toy"`` for ``toy-*``, else the name itself."""
    return "toy" if dataset.startswith("toy-") else dataset


def preset(dataset: str, variant: str) -> dict[str, Any]:
    """Config overrides of the ``ddpm`` method for ``dataset`` and ``variant`` (``{}`` for unknown data sets)."""
    table = _PAPER if variant == "paper" else _CPU_QUICK
    import copy

    return copy.deepcopy(table.get(family(dataset), {}))
