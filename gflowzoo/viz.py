"""Pictures: PNG grids of image samples and scatter plots of 2-D samples.

The ``*_picture`` functions return the encoded file (bytes, in the format a suffix names: ``.png``, ``.jpg``,
``.pdf``); the ``save_*`` functions write it atomically (:func:`gflowzoo.runs.atomic_write_bytes`). A file inside a run
directory is written through :class:`gflowzoo.runs.RunDir` (``save_grid``) with the bytes of a ``*_picture``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def _write(path: str | Path, data: bytes) -> Path:
    from .runs import atomic_write_bytes

    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def _format(suffix: str) -> str:
    """The file format a suffix names (``.png`` -> ``png``; none: ``png``)."""
    return suffix.lower().lstrip(".") or "png"


def figure_picture(fig: Any, suffix: str = ".png", **savefig: Any) -> bytes:
    """A matplotlib figure encoded in the format of ``suffix`` (``savefig`` keywords pass through)."""
    buf = io.BytesIO()
    fig.savefig(buf, format=_format(suffix), **savefig)
    return buf.getvalue()


def save_figure(fig: Any, path: str | Path, **savefig: Any) -> Path:
    """Write a matplotlib figure to ``path`` atomically, in the format its suffix names."""
    return _write(path, figure_picture(fig, Path(path).suffix, **savefig))


def image_grid_picture(x_unit: Tensor, nrow: int | None = None, upscale: int | None = None,
                       suffix: str = ".png") -> bytes:
    """``[N, C, H, W]`` images in ``[0, 1]`` as one grid picture (PNG unless ``suffix`` names another format).
    Small images are upscaled (nearest) to stay legible (8x8 digits become 32x32 cells)."""
    from PIL import Image

    x = x_unit.detach().float().cpu().clamp(0, 1)
    n, c, h, w = x.shape
    if upscale is None:
        upscale = max(1, 32 // max(h, w))
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    ncol = int(math.ceil(n / nrow))
    pad = 2
    grid = torch.ones(c, ncol * (h + pad) + pad, nrow * (w + pad) + pad) * 0.5
    for i in range(n):
        r, col = divmod(i, nrow)
        grid[:, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = x[i]
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    img = Image.fromarray(arr[:, :, 0] if c == 1 else arr, mode="L" if c == 1 else "RGB")
    if upscale > 1:
        img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format=Image.registered_extensions().get("." + _format(suffix), "PNG"))
    return buf.getvalue()


def save_image_grid(x_unit: Tensor, path: str | Path, nrow: int | None = None, upscale: int | None = None) -> Path:
    """Save ``[N, C, H, W]`` images in ``[0, 1]`` as one grid (see :func:`image_grid_picture`), atomically."""
    return _write(path, image_grid_picture(x_unit, nrow, upscale, Path(path).suffix))


def scatter_picture(points: Tensor, reference: Tensor | None = None, title: str = "", suffix: str = ".png") -> bytes:
    """Scatter plot of ``[N, 2]`` samples (raw units), with optional reference points in grey."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = points.detach().float().cpu().numpy()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=100)
    if reference is not None:
        r = reference.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=1, c="0.75", label="data")
    ax.scatter(p[:, 0], p[:, 1], s=2, c="tab:blue", alpha=0.6, label="samples")
    ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper right", markerscale=4, fontsize=8)
    try:
        return figure_picture(fig, suffix, bbox_inches="tight")
    finally:
        plt.close(fig)


def save_scatter(points: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> Path:
    """Save a scatter plot of ``[N, 2]`` samples (see :func:`scatter_picture`), atomically."""
    return _write(path, scatter_picture(points, reference, title, Path(path).suffix))


def samples_picture(x: Tensor, data: Any, title: str = "", suffix: str = ".png") -> bytes:
    """Model-unit samples ``x`` as a picture suited to the data kind (``data`` is a DataHandle or Dataset): a grid of
    images, or a scatter plot of 2-D points over a grey cloud of real data."""
    if data.kind == "image":
        return image_grid_picture(data.to_unit(x), suffix=suffix)
    reference = None
    try:
        ref_ds = data.train if hasattr(data, "train") else data
        reference = ref_ds.to_unit(ref_ds.get(torch.arange(min(len(ref_ds), 5000))))
    except Exception:  # noqa: BLE001 - the picture works without the reference cloud
        pass
    return scatter_picture(data.to_unit(x), reference=reference, title=title, suffix=suffix)


def save_samples(x: Tensor, data: Any, path: str | Path, title: str = "") -> Path:
    """Save model-unit samples ``x`` as a picture suited to the data kind (see :func:`samples_picture`), atomically,
    in the format the suffix of ``path`` names."""
    return _write(path, samples_picture(x, data, title, Path(path).suffix))
