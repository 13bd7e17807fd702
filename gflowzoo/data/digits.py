"""The 8x8 handwritten digits shipped inside scikit-learn (1,797 images, no download): the default image data."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayImages

N_TEST = 297  # a fixed held-out split (about 1/6), chosen by a seeded permutation


def digits(root: Path | None = None, split: str = "train") -> ArrayImages:
    """sklearn's ``load_digits``: 1x8x8 grey images, values 0..16 mapped to 0..255. Train 1,500 / test 297."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    perm = np.random.default_rng(0).permutation(len(images))
    if split == "train":
        idx = perm[N_TEST:]
    elif split == "test":
        idx = perm[:N_TEST]
    else:
        raise DataError(f"digits has splits 'train' and 'test', not {split!r}.")
    idx = np.sort(idx)
    return ArrayImages(np.ascontiguousarray(images[idx]), "digits", split, labels=bunch.target[idx])
