"""Drawing many samples in bounded memory: a method's :meth:`~gflowzoo.interfaces.Method.sample` called in pieces,
and a writer that consumes the pieces as they come.

``gflowzoo sample --n 50000`` and ``gflowzoo evaluate --n 50000`` use these: every call of ``method.sample`` asks for
at most one piece (:data:`DEFAULT_PIECE` samples), so a method holds the activations of one piece at a time (the
methods themselves loop over smaller batches inside a call: ``sampler.particles`` / ``sampler.chunk`` of DMMD,
``sample_chunk`` of the GANs). Raw ``.npy`` files are written piece by piece; the PNG shows the first images only.

Determinism: the pieces are drawn one after the other with one generator, so a given (seed, piece size) always
gives the same samples; ``n`` at most one piece is exactly ``method.sample(n, generator)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import threads
from .errors import UserError
from .paths import check_writable

__all__ = ["DEFAULT_PIECE", "GRID_MAX", "SampleWriter", "check_raw_path", "piece_size", "sample_pieces"]

#: Samples per call of ``method.sample`` (5,000 CIFAR-10 images are 60 MB in float32).
DEFAULT_PIECE = 5000
#: Images shown in a sample PNG at most (the first ones); 2-D points are all drawn.
GRID_MAX = 1024


def check_raw_path(raw: Path | None) -> None:
    """A :class:`UserError` unless ``raw`` is ``None`` or a writable ``.pt`` / ``.npy`` path (the formats of
    :class:`SampleWriter`; see :func:`gflowzoo.paths.check_writable`)."""
    if raw is None:
        return
    if raw.suffix not in (".pt", ".npy"):
        raise UserError("--raw must end in .pt or .npy.")
    check_writable(raw, "--raw")


def piece_size(method: Any, piece: int = DEFAULT_PIECE) -> int:
    """Samples per call: ``piece``, rounded down to a multiple of the method's interaction batch when it reports
    one (``sampling_info()["particles"]``, e.g. DMMD's ``sampler.particles``; at least one batch), so that no
    particle of a batch is moved and then thrown away."""
    if piece < 1:
        raise UserError(f"The number of samples per call must be at least 1; got {piece}.")
    info = getattr(method, "sampling_info", lambda: {})() or {}
    batch = info.get("particles")
    if isinstance(batch, int) and not isinstance(batch, bool) and batch > 0:
        return max(batch, piece // batch * batch)
    return piece


def sample_pieces(method: Any, n: int, generator: torch.Generator, piece: int = DEFAULT_PIECE) -> Iterator[Tensor]:
    """``method.sample`` called for ``n`` samples in total, at most :func:`piece_size` per call; yields the pieces
    (``[k, *S]``, CPU, detached) in order."""
    size = piece_size(method, piece)
    done = 0
    while done < n:
        k = min(size, n - done)
        threads.tick()  # follow the machine's load between pieces (gflowzoo.threads)
        x = method.sample(k, generator)
        if x.shape[0] != k:
            raise RuntimeError(f"{type(method).__name__}.sample({k}) returned {x.shape[0]} samples")
        done += k
        yield x.detach().cpu()


class SampleWriter:
    """Consumes pieces of samples: writes them to a raw file as they come and keeps the first ones for a picture.

    Args:
        n: the total number of samples that will be added.
        shape: the per-sample shape ``S``.
        kind: ``"image"`` (keeps the first :data:`GRID_MAX`) or ``"points"`` (keeps all: they are small).
        raw: ``None``, a ``.npy`` path (written piece by piece through a memory map, float32 ``[n, *S]``) or a
            ``.pt`` path (the whole ``[n, *S]`` tensor is assembled in memory and saved at :meth:`close`).
        keep: how many samples to keep for the picture (default by ``kind``).
    """

    def __init__(self, n: int, shape: tuple[int, ...], kind: str, raw: Path | None = None,
                 keep: int | None = None) -> None:
        check_raw_path(raw)
        self.n, self.shape, self.raw = int(n), tuple(shape), raw
        self.keep = keep if keep is not None else (min(n, GRID_MAX) if kind == "image" else n)
        self.count = 0
        self._kept: list[Tensor] = []
        self._kept_n = 0
        self._npy: Any = None
        self._pt: Tensor | None = None
        if raw is not None:
            raw.parent.mkdir(parents=True, exist_ok=True)
            if raw.suffix == ".npy":
                import numpy as np

                self._npy = np.lib.format.open_memmap(raw, mode="w+", dtype=np.float32, shape=(self.n, *self.shape))
            else:
                self._pt = torch.empty((self.n, *self.shape), dtype=torch.float32)

    def add(self, x: Tensor) -> None:
        """Append a piece ``[k, *S]`` (model units)."""
        k = x.shape[0]
        if self.count + k > self.n or tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"a piece of shape {tuple(x.shape)} does not fit {self.n} samples of shape {self.shape}")
        x = x.detach().cpu().float()
        if self._npy is not None:
            self._npy[self.count : self.count + k] = x.numpy()
        if self._pt is not None:
            self._pt[self.count : self.count + k] = x
        if self._kept_n < self.keep:
            take = x[: self.keep - self._kept_n].clone()
            self._kept.append(take)
            self._kept_n += take.shape[0]
        self.count += k

    def kept(self) -> Tensor:
        """The first samples kept for the picture, ``[keep, *S]``."""
        return torch.cat(self._kept) if self._kept else torch.zeros(0, *self.shape)

    def close(self) -> None:
        """Finish the raw file (flush the memory map, or save the ``.pt`` tensor)."""
        if self.count != self.n:
            raise ValueError(f"{self.count} of {self.n} samples were added")
        if self._npy is not None:
            self._npy.flush()
            self._npy = None
        if self._pt is not None:
            torch.save(self._pt, self.raw)
            self._pt = None
