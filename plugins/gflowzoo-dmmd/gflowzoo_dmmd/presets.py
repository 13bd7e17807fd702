"""Per-data-set presets of the DMMD family (one table; docs/dmmd.md lists the values and their reasons).

``paper``: GPU scale (bigger widths and batches, many iterations, T = 50-100 levels, N_s = 5).
``cpu-quick``: minutes on a 2-core CPU (tiny nets, small batches, a short grid); enough to see the pipeline work,
not to reach good samples. Values not set here come from the config dataclasses; in particular the steps per level
stay the method's own (dmmd: N_s = 5; a-dmmd: 1; a-dmmd-e: 1 approximate + 5 exact), so one preset serves all three.
"""

from __future__ import annotations

from typing import Any

__all__ = ["dkale_preset", "dmmd_preset", "mmdflow_preset"]

_TOY = "toy-"

#: (conv width, feature_dim, groups, n_clean = n_noisy, gp_samples, steps, levels, stats_samples, lr, ema) per
#: image data set and variant.
_IMAGE: dict[str, dict[str, tuple]] = {
    "digits": {
        "paper": (64, 256, 8, 128, 0, 50_000, 50, 0, 2e-4, 0.999),
        "cpu-quick": (8, 64, 4, 64, 16, 2_000, 50, 0, 1e-3, 0.998),
    },
    "mnist": {
        "paper": (64, 256, 8, 128, 0, 150_000, 100, 10_000, 1e-4, 0.9995),
        "cpu-quick": (8, 64, 4, 32, 8, 300, 20, 1_000, 5e-4, 0.99),
    },
    "cifar10": {
        "paper": (128, 512, 8, 128, 0, 300_000, 100, 10_000, 1e-4, 0.9995),
        "cpu-quick": (8, 64, 2, 16, 4, 100, 10, 500, 5e-4, 0.99),
    },
    "celeba64": {
        "paper": (128, 512, 8, 64, 0, 300_000, 100, 10_000, 1e-4, 0.9995),
        "cpu-quick": (8, 64, 2, 8, 4, 50, 10, 200, 5e-4, 0.99),
    },
}
_IMAGE["fashion-mnist"] = _IMAGE["mnist"]
_IMAGE["lsun-church64"] = _IMAGE["celeba64"]


def _image(dataset: str, variant: str) -> dict[str, Any]:
    width, dim, groups, n, gp, steps, levels, stats, lr, ema = _IMAGE[dataset][variant]
    paper = variant == "paper"
    return {
        "backbone": {"name": "conv", "width": width, "blocks": 2 if paper else 1, "channels_last": paper},
        "feature_dim": dim,
        "groups": groups,
        "n_clean": n,
        "n_noisy": n,
        "gp_samples": gp,
        "lr": lr,
        "ema": ema,
        "stats_samples": stats,
        "diag_every": 500 if paper else 50,
        "sampler": {
            "levels": levels, "particles": 512 if paper else 256, "chunk": 256 if paper and width >= 128 else 0,
        },
        "run": {"steps": steps, "log_every": 500 if paper else 50, "checkpoint_every": 5000 if paper else 500},
    }


def _toy(variant: str) -> dict[str, Any]:
    """The toy recipe (docs/dmmd-what-we-learned.md, session 4): an RBF base kernel on ``[x, learned(x, t)]`` with the
    noise-adaptive width ``max(sigma_t, 0.05)`` (model units), the exact interacting sampler with ``eta_k = 10 h_k^2``,
    T = 100 levels x N_s = 5, no noise injection, and every particle's move capped at one kernel width per step
    (``sampler.max_move = 1``). The learned features are frozen at zero (``skip_head_gain = 0``): measured on
    toy-8gaussians, features trained with the flow-alignment term gave 0/8 modes after 200 and 1,000 steps (the
    particles barely leave the prior), 3/8 with ``lambda_flow = 20`` and 8/8 but 62 % within 3 std with
    ``skip_head_gain = 0.02``, against 8/8 and 95.8 % for the frozen kernel; the training steps only exercise the loop.
    Without the move cap the first steps at high noise (``h ~ 1``, ``eta ~ 10``) threw a fifth of the particles to 4-8
    times the data's radius (toy-8gaussians: 75 % within 3 std)."""
    paper = variant == "paper"
    return {
        "backbone": {
            "name": "mlp", "width": 256 if paper else 128, "depth": 4 if paper else 3, "input_skip": 1.0,
            "skip_head_gain": 0.0,
        },
        "kernel": "rbf",
        "width_prior": "sigma",
        "learn_width": False,
        "width_init": 0.7071,  # h = 0.7071 * max(sigma_t, 0.05) * sqrt(2) = max(sigma_t, 0.05)
        "width_min": 0.05,
        "lambda_flow": 0.0,
        "groups": 8,
        "n_clean": 128,
        "n_noisy": 128,
        "lr": 1e-3,
        "ema": 0.995,
        "stats_samples": 20_000 if paper else 5_000,
        "sampler": {
            # n_ref: the particles settle on the reference sample, so its own distance to the data distribution
            # is a floor: toy-moons MMD 0.0056 with 1,024 reference points, 0.0004 with 4,096 (session 6)
            "levels": 100, "particles": 2500, "n_ref": 4096, "integrator": "euler",
            "step_schedule": "width2", "step_size": 10.0, "max_move": 1.0,
            # the tail: with the plain MMD field a few particles end far from every data point (2,500 particles:
            # farthest 1.5-2.8 data radii over the five toys), with the bounded repulsion 0.05-0.20, modes, share
            # within 3 std and MMD unchanged (benchmarks/bench_dmmd_toys.py, session 8)
            "bounded_repulsion": True,
        },
        # frozen features: the steps only exercise the loop. The exact sampler moves all 2,500 particles anyway, so
        # the scatter plots show them all.
        "run": {"steps": 1000 if paper else 100, "log_every": 50, "grid_size": 2500},
    }


#: Noise-adaptive RBF recipe per image data set: (width_min, step_size of eta_k = step_size * h_k^2, cpu-quick steps,
#: whether cpu-quick trains the learned features). Trained features use the sum kernel ``k_h(x, x') + <phi, phi'>``
#: (docs/dmmd-what-we-learned.md, sessions 7-8), sampled with ``sampler.learned_weight`` of the learned part.
#: Measured, same sampler (NFE 250): digits (500 samples, net-digits) KID 0.227 +- 0.019 for the frozen kernel,
#: 0.056 +- 0.009 after the preset's 1,500 trained steps, 0.042 +- 0.008 after 6,000; MNIST (1,000 samples,
#: lenet-mnist) 0.612 +- 0.024 frozen, 0.356 +- 0.020 after the preset's 1,000 trained steps, 0.305 +- 0.021 after
#: 3,000.
_RBF_IMAGE = {"digits": (0.1, 1.0, 1500, True), "mnist": (0.1, 4.0, 1000, True), "fashion-mnist": (0.1, 4.0, 1000, True)}


def _rbf_image(dataset: str, variant: str) -> dict[str, Any]:
    """digits and MNIST with the recipe of docs/dmmd-what-we-learned.md: the conv critic with an input skip, an RBF
    base kernel with the fixed width ``max(sigma_t, width_min) * sqrt(d)``, exact sampler with
    ``eta_k = step_size * h_k^2``. Where the features train (``paper``, and ``cpu-quick`` where :data:`_RBF_IMAGE`
    says so) the critic is the sum kernel ``k_h(x, x') + <phi(x, t), phi(x', t)>`` with the flow-alignment term
    (``lambda_flow = 5`` on 16 noisy points a group), sampled with ``sampler.learned_weight = 0.01``: the joint
    kernel on ``[x, phi]`` only sharpened the input kernel and broke the flow with training (digits KID 0.227 at
    1,500 steps, 3.7 at 4,500), the sum keeps improving (0.056-0.061 at 1,500 steps, 0.048 at 3,000, 0.041 at
    6,000).
    Where they do not train, the features are frozen at zero and the critic is the noise-adaptive kernel alone."""
    width_min, step, quick_steps, quick_trains = _RBF_IMAGE[dataset]
    train = variant == "paper" or quick_trains
    out = _image(dataset, variant)
    out["backbone"].update(input_skip=1.0, skip_head_gain=1.0 if train else 0.0)
    if variant != "paper":
        out["run"]["steps"] = quick_steps
    out.update(kernel="rbf", width_prior="sigma", learn_width=False, width_init=1.0, width_min=width_min,
               lambda_flow=5.0 if train else 0.0)
    # max_move: each particle moves at most one kernel width per step. Measured: MNIST (frozen, 1,000 samples,
    # lenet-mnist) KID 0.812 +- 0.025 -> 0.612 +- 0.024, FID 37.1 either way; digits: never binds (same samples)
    out["sampler"].update(
        integrator="euler", step_schedule="width2", step_size=step, n_ref=1000,
        particles=1000 if variant == "paper" else 500, max_move=1.0,
    )
    if train:
        # the flow term's double backward over 16 noisy points per group instead of the whole batch: measured 8x
        # faster steps (digits paper preset on the CPU: 20.5 s -> 2.5 s; the term alone had cost 88 % of the step)
        # and a better critic at equal steps (digits 1,500 steps: KID 0.069 -> 0.061). The sampler adds the learned
        # kernel at sampler.learned_weight's default share, 0.01 (its measurements are in gflowzoo_dmmd.config)
        out.update(feature_kernel="auto", flow_samples=16)  # the sum kernel, "joint" where it cannot apply
    if variant != "paper":
        out["sampler"]["levels"] = 50  # NFE 250 (the MNIST step measurements used T = 50)
    return out


#: The name prefix of a latent space's codes (``latent:<data set>``, see docs/latent.md and gflowzoo.latent).
_LATENT = "latent:"


def _latent(variant: str) -> dict[str, Any]:
    """Codes of an autoencoder (``latent_space``; centred, unit variance per coordinate on average, 8-32 dimensions):
    the toy recipe (:func:`_toy`) unchanged, with 1,000 particles a batch and a 64-image grid. Measured on MNIST
    (conv autoencoder, 16-d codes, docs/latent.md) it gave decoded samples level with the autoencoder's own
    reconstructions of test images."""
    out = _toy(variant)
    # n_ref stays at 1,024 here: 4,096 gave the same samples within noise (MNIST, 1,000 samples: KID 0.042 +- 0.011
    # against 0.038 +- 0.008, FID 1.89 against 1.93) at 2.7x the sampling time (session 6)
    # bounded_repulsion off: on MNIST codes it gave KID 0.034 +- 0.008 / FID 2.14 / 3.5 % near-copies against 0.038 +-
    # 0.008 / 1.93 / 2.4 % without (the autoencoder's reconstructions: 3.2 %), no gain and closer to the training set
    out["sampler"] = {**out["sampler"], "particles": 1000, "n_ref": 1024, "bounded_repulsion": False}
    out["run"] = {**out["run"], "grid_size": 64}
    return out


def dmmd_preset(dataset: str, variant: str) -> dict[str, Any]:
    """Config overrides of ``dmmd`` / ``a-dmmd`` / ``a-dmmd-e`` for ``dataset`` and ``variant``."""
    if variant not in ("paper", "cpu-quick"):
        return {}
    if dataset.startswith(_TOY):
        return _toy(variant)
    if dataset.startswith(_LATENT):
        return _latent(variant)
    if dataset in _RBF_IMAGE:
        return _rbf_image(dataset, variant)
    if dataset in _IMAGE:
        return _image(dataset, variant)
    if dataset.startswith("imagefolder:"):
        return _image("celeba64", variant)
    return {}


#: Training steps of ``dkale`` where the DMMD preset freezes its learned features (and so runs a short loop): the
#: KALE critic has nothing frozen to fall back on and trains as the DMMD presets used to (toy 1,000 / 50,000 steps,
#: digits 1,500).
_DKALE_STEPS = {("toy", "cpu-quick"): 1000, ("toy", "paper"): 50_000, ("digits", "cpu-quick"): 1500,
                ("latent", "cpu-quick"): 1000, ("latent", "paper"): 50_000}


def dkale_preset(dataset: str, variant: str) -> dict[str, Any]:
    """``dkale``: the DMMD presets without the exact-sampler settings (its sampler never interacts) and with the
    training length of a critic that must learn everything (:data:`_DKALE_STEPS`)."""
    out = dmmd_preset(dataset, variant)
    for key in ("kernel", "width_prior", "learn_width", "width_init", "width_min", "lambda_flow", "flow_samples",
                "feature_kernel"):  # DMMD-only
        out.pop(key, None)
    if isinstance(out.get("backbone"), dict):
        out["backbone"].pop("input_skip", None)  # the KALE critic is a scalar head, not a kernel on features
        out["backbone"].pop("skip_head_gain", None)  # (only meaningful with input_skip)
    if "sampler" in out:
        out["sampler"] = {k: v for k, v in out["sampler"].items() if k in ("levels", "particles", "chunk")}
    family = "toy" if dataset.startswith(_TOY) else "latent" if dataset.startswith(_LATENT) else dataset
    steps = _DKALE_STEPS.get((family, variant))
    if steps is not None:
        out["run"] = {**out.get("run", {}), "steps": steps}
    return out


#: Gaussian-mixture widths (std convention, model units) of ``mmdflow`` per data set: pixel distances grow like
#: sqrt(d), so the widths do too (images in [-1, 1]).
_MMDFLOW_SIGMAS = {
    "toy": [0.05, 0.1, 0.2, 0.5, 1.0],
    "latent": [0.25, 0.5, 1.0, 2.0, 4.0],
    "digits": [1.0, 2.0, 4.0, 8.0, 16.0],
    "mnist": [2.0, 5.0, 10.0, 20.0, 40.0],
    "cifar10": [4.0, 10.0, 20.0, 40.0, 80.0],
    "celeba64": [8.0, 20.0, 40.0, 80.0, 160.0],
}


#: Step sizes of ``mmdflow``: the witness gradient scales like 1/width, so the step grows with the widths (about
#: like the dimension). Measured (300-500 steps, cpu-quick sizes): toy 0.1 (25/25 modes, 91 % within 3 std; 1.0 and
#: 10 fail), digits 10 (median NN distance 2.79 vs 3.98 at 1 and 5.01 at 100; real test images 2.08), MNIST 300
#: (NN 11.3 vs 13.3 at 100 and 14.8 at 30; real 8.6). CIFAR-10 and 64 px are extrapolated, not measured.
#: Codes of a latent space (MNIST, conv autoencoder, 16-d codes, 1,000 samples, docs/latent.md): KID 0.285 at step
#: 0.3, 0.176 at 1, 0.089 at 3 (near-copies of training images 4.2 %; the autoencoder's reconstructions 3.2 %), 0.043
#: at 10 but 9.7 % copies, 0.026 at 30 with 11.7 % copies (the particles collapse onto the n_data fixed codes): 3 is
#: the largest step that does not copy.
_MMDFLOW_STEP = {"toy": 0.1, "latent": 3.0, "digits": 10.0, "mnist": 300.0, "cifar10": 1000.0, "celeba64": 3000.0}


def mmdflow_preset(dataset: str, variant: str) -> dict[str, Any]:
    """Config overrides of ``mmdflow``: kernel widths scaled to the data dimension and the particle budget."""
    if variant not in ("paper", "cpu-quick"):
        return {}
    paper = variant == "paper"
    if dataset.startswith(_TOY):
        key = "toy"
    elif dataset.startswith(_LATENT):
        key = "latent"
    elif dataset in ("mnist", "fashion-mnist"):
        key = "mnist"
    elif dataset in ("celeba64", "lsun-church64") or dataset.startswith("imagefolder:"):
        key = "celeba64"
    elif dataset in _MMDFLOW_SIGMAS:
        key = dataset
    else:
        return {}
    out: dict[str, Any] = {"kernel": {"name": "rbf", "sigmas": _MMDFLOW_SIGMAS[key]}, "step_size": _MMDFLOW_STEP[key]}
    out["particles"] = 1000 if key in ("toy", "latent") or paper else 256
    out["n_data"] = 5000 if paper else 1000
    out["steps"] = 2000 if paper else 500
    return out
