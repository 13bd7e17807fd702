"""Data sets: a registry kind (``dataset``) and the loaders behind it.

Every data set returns float tensors in *model units*: images in ``[-1, 1]`` as ``[N, C, H, W]``, 2-D toys scaled to
unit variance per coordinate as ``[N, 2]``. ``Dataset.to_unit`` maps back (images to ``[0, 1]``, toys to raw units).
"""

from .base import ArrayImages, DataHandle, Dataset, Points, data_root, open_dataset

__all__ = ["ArrayImages", "DataHandle", "Dataset", "Points", "data_root", "open_dataset"]
