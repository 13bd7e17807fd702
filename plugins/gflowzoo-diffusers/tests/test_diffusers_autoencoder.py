"""The ``diffusers-kl`` autoencoder (diffusers' AutoencoderKL architecture, trained from scratch): shapes, a fit
into the cache and a method trained on its codes (docs/latent.md)."""

from __future__ import annotations

import pytest
import torch

from gflowzoo.api import UserError
from gflowzoo.testing import plugins_loaded

TINY = {"name": "diffusers-kl", "block_out_channels": [8, 8], "norm_num_groups": 4, "latent_channels": 1,
        "steps": 2, "batch_size": 8}


def test_codes_are_flat_and_decode_to_images():
    with plugins_loaded("diffusers") as state:
        cls = state.registry.load("autoencoder", "diffusers-kl")
        net = cls((1, 8, 8), block_out_channels=[8, 8], norm_num_groups=4, latent_channels=1)
        x = torch.randn(3, 1, 8, 8)
        assert net.latent_shape == (16,) and net.encode(x).shape == (3, 16)
        assert net.decode(net.encode(x)).shape == (3, 1, 8, 8)
        loss, logs = net.loss(x, torch.Generator().manual_seed(0))
        assert torch.isfinite(loss) and {"mse", "kl"} <= set(logs)
        with pytest.raises(UserError, match="sides must be multiples of 4"):
            cls((1, 6, 6), block_out_channels=[8, 8, 8], norm_num_groups=4)


def test_a_method_trains_on_its_codes(tmp_path, monkeypatch):
    from gflowzoo import runner

    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    with plugins_loaded("diffusers", "gmmn") as state:
        reg = state.registry
        table = "{" + ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in TINY.items()) + "}"
        spec, run = runner.prepare_run(reg, "gmmn", dataset="digits", out=tmp_path / "run", steps=1,
                                       sets=[f"latent_space={table}", "batch_size=8", "run.grid_size=4"])
        runner.train_run(reg, run, spec, progress=False)
        _, method, _ = runner.load_run(run.path, registry=reg)
        assert method.sample(2, torch.Generator().manual_seed(0)).shape == (2, 1, 8, 8)
        assert run.read_config()["latent_space"]["autoencoder"].startswith("diffusers-kl-")
