"""Pictures: PNG grids of image samples and scatter plots of 2-D samples."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor


def save_image_grid(x_unit: Tensor, path: str | Path, nrow: int | None = None, upscale: int | None = None) -> Path:
    """Save ``[N, C, H, W]`` images in ``[0, 1]`` as one PNG grid. Small images are upscaled (nearest) to stay
    legible (8x8 digits become 32x32 cells)."""
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_scatter(points: Tensor, path: str | Path, reference: Tensor | None = None, title: str = "") -> Path:
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def save_samples(x: Tensor, data, path: str | Path, title: str = "") -> Path:
    """Save model-unit samples ``x`` as a picture suited to the data kind (``data`` is a DataHandle or Dataset)."""
    if data.kind == "image":
        return save_image_grid(data.to_unit(x), path)
    reference = None
    try:
        ref_ds = data.train if hasattr(data, "train") else data
        reference = ref_ds.to_unit(ref_ds.get(torch.arange(min(len(ref_ds), 5000))))
    except Exception:  # noqa: BLE001 - the picture works without the reference cloud
        pass
    return save_scatter(data.to_unit(x), path, reference=reference, title=title)
