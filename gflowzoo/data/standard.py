"""MNIST, Fashion-MNIST and CIFAR-10 in the layouts torchvision and common mirrors use.

* ``mnist`` / ``fashion-mnist``: ``1x28x28``; the idx files (optionally ``.gz``) under ``<root>/MNIST/raw/`` and
  ``<root>/FashionMNIST/raw/``, parsed here with numpy (uncompressed files are memory-mapped). 60,000 train /
  10,000 test, labels 0..9.
* ``cifar10``: ``3x32x32``, looked for in this order: torchvision's python pickles ``<root>/cifar-10-batches-py/``,
  an image folder ``<root>/cifar10/{train,test}/<class>/*.png|jpg``, the zip ``<root>/cifar10-jpg/cifar10_jpg.zip``
  (``train/<class>/*.jpg``, ``test/<class>/*.jpg``, decoded straight from the zip). Labels are the index of the
  class folder in sorted order (for the usual class names, the same as torchvision's labels).

Downloads: only when ``GFLOWZOO_DOWNLOAD=1`` is set and files are missing, through torchvision (its own layout).
"""

from __future__ import annotations

import gzip
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayImages
from .images import (
    IMAGE_SUFFIXES, Preprocess, cache_file, cache_key, decode_cached, fingerprint, read_cached, scan_images,
)

SPLITS = ("train", "test")
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC = 0x00000803, 0x00000801


def download_enabled() -> bool:
    """Whether ``GFLOWZOO_DOWNLOAD`` allows fetching missing data over the network."""
    return os.environ.get("GFLOWZOO_DOWNLOAD", "").strip().lower() in ("1", "true", "yes", "on")


def _download(tv_class: str, root: Path, label: str) -> None:
    """``torchvision.datasets.<tv_class>(root, download=True)``; any failure becomes a :class:`DataError`."""
    try:
        import torchvision.datasets as tvd

        root.mkdir(parents=True, exist_ok=True)
        getattr(tvd, tv_class)(str(root), train=True, download=True)
        getattr(tvd, tv_class)(str(root), train=False, download=True)
    except Exception as exc:  # network, disk and checksum errors all end up here
        raise DataError(
            f"Downloading {label} with torchvision into {root} failed: {type(exc).__name__}: {exc}. "
            f"Check the network, or place the files there by hand and unset GFLOWZOO_DOWNLOAD."
        ) from None


def _check_split(label: str, split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"{label} has splits 'train' and 'test', not {split!r}.")


# -- idx (MNIST) -----------------------------------------------------------------------------------------------
def read_idx(path: Path, magic: int, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An idx file (``.gz`` allowed) as a ``uint8`` array ``[N, *item_shape]``; checks magic number and size.

    Uncompressed files are memory-mapped. ``item_shape`` (e.g. ``(28, 28)``) is checked when given.
    """
    ndim = magic & 0xFF
    head = 4 + 4 * ndim
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                blob = fh.read()
            raw = blob[:head]
        else:
            blob = None
            with open(path, "rb") as fh:
                raw = fh.read(head)
            total = path.stat().st_size
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"Cannot read {path}: {exc}. The file is corrupt or truncated; download it again.") from None
    if len(raw) < head or int.from_bytes(raw[:4], "big") != magic:
        found = f"0x{int.from_bytes(raw[:4], 'big'):08x}" if len(raw) >= 4 else "a file too short for a header"
        raise DataError(f"{path} is not an idx file of the expected kind (magic 0x{magic:08x}, found {found}).")
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if item_shape is not None and dims[1:] != item_shape:
        raise DataError(f"{path} holds items of shape {dims[1:]}, expected {item_shape}.")
    expected = head + int(np.prod(dims))
    size = len(blob) if blob is not None else total
    if size != expected:
        raise DataError(
            f"{path} is truncated or corrupt: {size} bytes where its header ({dims}) promises {expected}. "
            "Download it again."
        )
    if blob is not None:
        return np.frombuffer(blob, dtype=np.uint8, offset=head).reshape(dims)
    return np.memmap(path, dtype=np.uint8, mode="r", offset=head, shape=dims)


def _find(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_dataset(root: Path, split: str, name: str, folder: str, tv_class: str) -> ArrayImages:
    _check_split(name, split)
    raw = Path(root) / folder / "raw"
    img_name, lab_name = IDX_NAMES[split]
    images = _find(raw, img_name)
    if images is None and download_enabled():
        _download(tv_class, Path(root), name)
        images = _find(raw, img_name)
    if images is None:
        raise DataError(
            f"{name} ({split}) not found. Looked for {raw / img_name} and {raw / img_name}.gz.\n"
            f"Get it: place the four idx files ({', '.join(n for pair in IDX_NAMES.values() for n in pair)}, "
            f"optionally .gz) in {raw}/ (torchvision's layout), e.g. with\n"
            f"  python -c \"import torchvision; torchvision.datasets.{tv_class}('{root}', download=True)\"\n"
            f"or set GFLOWZOO_DOWNLOAD=1 to let gflowzoo download it, or run with --data-root DIR where DIR "
            f"holds {folder}/raw/."
        )
    array = read_idx(images, IDX_IMAGES_MAGIC, (28, 28))
    labels = None
    label_file = _find(raw, lab_name)
    if label_file is not None:
        labels = np.asarray(read_idx(label_file, IDX_LABELS_MAGIC)).astype(np.int64)
        if len(labels) != len(array):
            raise DataError(f"{label_file} holds {len(labels)} labels for {len(array)} images in {images}.")
    return ArrayImages(array[:, None], name, split, labels=labels)


def mnist(root: Path, split: str = "train") -> ArrayImages:
    """MNIST digits, ``1x28x28`` grey, 60,000 train / 10,000 test, from ``<root>/MNIST/raw/``."""
    return _idx_dataset(root, split, "mnist", "MNIST", "MNIST")


def fashion_mnist(root: Path, split: str = "train") -> ArrayImages:
    """Fashion-MNIST, ``1x28x28`` grey, 60,000 train / 10,000 test, from ``<root>/FashionMNIST/raw/``."""
    return _idx_dataset(root, split, "fashion-mnist", "FashionMNIST", "FashionMNIST")


# -- CIFAR-10 --------------------------------------------------------------------------------------------------
CIFAR_BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_NUMPY_GLOBALS = {
    ("_codecs", "encode"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only: any other class in the file is refused."""

    def find_class(self, module: str, name: str):
        if module.startswith("numpy.core."):  # written by numpy 1.x
            module = "numpy._core." + module[len("numpy.core."):]
        if (module, name) not in _NUMPY_GLOBALS:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch -> images ``uint8 [n, 3, 32, 32]`` and labels ``int64 [n]``.

    The official format is a pickled dict ``{b"data": uint8 [n, 3072], b"labels": [n ints], ...}``. It is read with a
    restricted unpickler that builds only containers and numpy arrays; anything else is a :class:`DataError`.
    """
    try:
        with open(path, "rb") as fh:
            obj = _ArrayUnpickler(fh, encoding="bytes").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise DataError(f"Cannot read the CIFAR-10 batch {path}: {exc}. It is corrupt; download it again.") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR-10 batch (a dict was expected, found {type(obj).__name__}).")
    get = lambda key: obj.get(key.encode(), obj.get(key))  # noqa: E731 - bytes keys (Python 2 pickles) or str
    data, labels = get("data"), get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array [n, 3072], found {found}.")
    try:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if len(labels) != len(data) or (len(labels) and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(f"{path}: 'labels' must be {len(data)} integers in 0..9.")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_pickles(folder: Path, split: str) -> ArrayImages:
    missing = [str(folder / n) for n in CIFAR_BATCHES[split] if not (folder / n).is_file()]
    if missing:
        raise DataError(
            f"CIFAR-10 ({split}): {folder} is incomplete, missing {', '.join(missing)}. Download it again "
            f"(torchvision.datasets.CIFAR10(root, download=True)) or remove the folder to use another layout."
        )
    parts = [read_cifar_batch(folder / n) for n in CIFAR_BATCHES[split]]
    images = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else np.ascontiguousarray(parts[0][0])
    labels = np.concatenate([p[1] for p in parts])
    return ArrayImages(images, "cifar10", split, labels=labels)


def class_labels(class_names: list[str]) -> tuple[list[str], np.ndarray]:
    """Sorted distinct class names and, for each input name, its index among them."""
    classes = sorted(set(class_names))
    index = {c: i for i, c in enumerate(classes)}
    return classes, np.array([index[c] for c in class_names], dtype=np.int64)


def _cifar_folder(root: Path, folder: Path, split: str) -> ArrayImages:
    files = [p for p in scan_images(folder) if p.parent.parent == folder]
    if not files:
        raise DataError(f"CIFAR-10 ({split}): no images in {folder}/<class>/ (expected {'/'.join(IMAGE_SUFFIXES)}).")
    _, labels = class_labels([p.parent.name for p in files])
    prep = Preprocess(size=32, mode="RGB")
    key = cache_key("cifar10-folder", split, prep.__dict__, fingerprint(files))
    arr = decode_cached("cifar10", split, root, key, files, lambda p: p, str, prep)
    return ArrayImages(arr, "cifar10", split, labels=labels)


def _cifar_zip(root: Path, zpath: Path, split: str) -> ArrayImages:
    prep = Preprocess(size=32, mode="RGB")
    st = zpath.stat()
    key = cache_key("cifar10-zip", str(zpath.resolve()), st.st_size, st.st_mtime_ns, split, prep.__dict__)
    hit = read_cached(cache_file(root, "cifar10", split, key))
    if hit is not None and hit[1] is not None:  # skip listing the zip's 60,000 members again
        return ArrayImages(hit[0], "cifar10", split, labels=hit[1])
    try:
        zf = zipfile.ZipFile(zpath)
    except (OSError, zipfile.BadZipFile) as exc:
        raise DataError(f"Cannot open {zpath}: {exc}. The zip is corrupt or truncated.") from None
    with zf:
        members = []
        for info in zf.infolist():
            parts = info.filename.split("/")
            if (not info.is_dir() and len(parts) >= 3 and parts[-3] == split
                    and parts[-1].lower().endswith(IMAGE_SUFFIXES)):
                members.append((parts[-2], parts[-1], info.filename))
        if not members:
            raise DataError(f"{zpath} holds no images under {split}/<class>/ (the expected layout).")
        members.sort()
        _, labels = class_labels([m[0] for m in members])
        names = [m[2] for m in members]

        def fetch(name: str) -> bytes:
            try:
                return zf.read(name)
            except (OSError, zipfile.BadZipFile, zlib.error) as exc:
                raise DataError(f"Cannot read {name} from {zpath}: {exc}. The zip is corrupt.") from None

        arr = decode_cached(
            "cifar10", split, root, key, names, fetch, lambda n: f"{zpath}:{n}", prep, labels=labels
        )
    return ArrayImages(arr, "cifar10", split, labels=labels)


def cifar10(root: Path, split: str = "train") -> ArrayImages:
    """CIFAR-10, ``3x32x32`` colour, 50,000 train / 10,000 test, labels 0..9 (see the module docstring)."""
    _check_split("cifar10", split)
    root = Path(root)
    pickles, folder = root / "cifar-10-batches-py", root / "cifar10" / split
    zpath = root / "cifar10-jpg" / "cifar10_jpg.zip"
    if not (pickles.is_dir() or folder.is_dir() or zpath.is_file()) and download_enabled():
        _download("CIFAR10", root, "cifar10")
    if pickles.is_dir():
        return _cifar_pickles(pickles, split)
    if folder.is_dir():
        return _cifar_folder(root, folder, split)
    if zpath.is_file():
        return _cifar_zip(root, zpath, split)
    raise DataError(
        f"cifar10 ({split}) not found. Looked for, in order:\n"
        f"  {pickles}/ (torchvision's python batches data_batch_1..5, test_batch)\n"
        f"  {folder}/<class>/*.png|jpg (an image folder)\n"
        f"  {zpath} (a zip holding train/<class>/*.jpg and test/<class>/*.jpg)\n"
        f"Get it: python -c \"import torchvision; torchvision.datasets.CIFAR10('{root}', download=True)\", "
        f"or set GFLOWZOO_DOWNLOAD=1 to let gflowzoo download it, or run with --data-root DIR where DIR holds one "
        f"of these layouts."
    )
