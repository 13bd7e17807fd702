"""Offline-only access to diffusers: lazy imports with ``HF_HUB_OFFLINE=1`` set first, and the check that a
``pretrained`` value is a local folder (never a hub id)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from gflowzoo.api import ConfigError, PluginError


def set_offline() -> None:
    """Put ``HF_HUB_OFFLINE=1`` into the environment unless the user chose a value. It only takes effect when it
    is set before ``huggingface_hub`` (which diffusers imports) is imported, so call it before every import."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def diffusers_object(module: str, name: str) -> Any:
    """Import ``name`` from the diffusers module ``module`` (for example ``"diffusers.schedulers.scheduling_ddpm"``,
    ``"DDPMScheduler"``), offline. Importing a submodule directly skips part of diffusers' 3-5 s import."""
    set_offline()
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise PluginError(
            f"gflowzoo-diffusers needs the 'diffusers' package ({exc}). Install it with: pip install diffusers"
        ) from exc
    try:
        return getattr(mod, name)
    except AttributeError as exc:
        raise PluginError(f"{module} has no {name!r}: this diffusers version is not supported ({exc}).") from exc


def local_pretrained_folder(pretrained: str, what: str) -> Path | None:
    """Check a ``pretrained`` option: ``""`` means none (returns None); anything else must be an existing local
    folder written by ``save_pretrained`` (holding ``config.json``). A hub id such as ``google/ddpm-cifar10-32``
    is refused at once, before diffusers is imported, with the way to make a local copy."""
    if not pretrained:
        return None
    path = Path(pretrained).expanduser()
    how = (
        "gflowzoo never downloads weights. On a machine with network access run\n"
        "    from diffusers import UNet2DModel\n"
        "    UNet2DModel.from_pretrained('<hub id>'[, subfolder='unet']).save_pretrained('my-unet')\n"
        "then copy the folder here and pass its path, e.g. pretrained = \"/path/to/my-unet\"."
    )
    if not path.exists():
        looks_like_hub = "/" in pretrained and not pretrained.startswith((".", "/", "~")) and pretrained.count("/") == 1
        kind = "looks like a Hugging Face hub id, not a local folder" if looks_like_hub else "does not exist"
        raise ConfigError(f"{what}: pretrained = {pretrained!r} {kind}. {how}")
    if not path.is_dir():
        raise ConfigError(f"{what}: pretrained = {pretrained!r} is a file; give the folder save_pretrained wrote. {how}")
    if not (path / "config.json").is_file():
        raise ConfigError(
            f"{what}: {path} has no config.json, so it is not a folder written by save_pretrained "
            "(expected config.json and diffusion_pytorch_model.safetensors)."
        )
    return path
