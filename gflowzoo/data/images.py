"""Decoding image files into a cached ``uint8`` array ``[N, C, H, W]``.

Image files (a folder, a zip, an LMDB) are decoded once, preprocessed (a centred square crop, then a resize) and
written as a ``.npy`` file that later opens memory-mapped, so a data set costs no decoding after the first use.

Where the cache lives (:func:`cache_dir`):

1. ``$GFLOWZOO_CACHE`` when set (an explicit choice wins);
2. else ``<data root>/.gflowzoo-cache/`` when the data root is writable;
3. else (a read-only data root, such as a shared folder) the per-user folder
   ``$XDG_CACHE_HOME/gflowzoo/decoded/`` (default ``~/.cache/gflowzoo/decoded/``).

A folder counts as read-only when its permission bits grant nobody write access, even for root.

A cache file is named ``<name>-<split>-<key>.npy``; the key hashes where the images came from (every file's path,
size and modification time, or the container's), the split and the preprocessing, so any change to the data or to
the preprocessing decodes afresh. Files are written to a temporary name and renamed, so a crash never leaves a
half-written cache behind. Stale cache files are not deleted.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError

#: File name endings recognised as images in folders and archives (lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Above this many images a progress bar is shown on stderr while decoding.
PROGRESS_MIN = 300
#: Bump when the decoding/preprocessing code changes in a way that alters pixels.
PREP_VERSION = 1
#: PIL modes treated as grey.
GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}


@dataclass(frozen=True)
class Preprocess:
    """How one image becomes an array ``[C, size, size]``.

    ``mode`` is the PIL colour mode (``"L"``: 1 channel, ``"RGB"``: 3 channels; alpha is dropped). ``crop`` is the
    side in pixels of the centred square cut first (``None``: the largest centred square; a side larger than the
    image is reduced to the image's shorter side). The square is then resized to ``size`` x ``size`` with PIL's
    antialiased bicubic filter (no resize when it already has that size).
    """

    size: int
    mode: str = "RGB"
    crop: int | None = None

    @property
    def channels(self) -> int:
        return 1 if self.mode == "L" else 3


def prepare(image: Any, prep: Preprocess) -> np.ndarray:
    """A PIL image -> ``uint8`` array ``[C, size, size]`` (EXIF rotation applied, mode converted, crop, resize).

    16-bit grey images keep their top 8 bits; alpha channels are dropped (not composited).
    """
    from PIL import Image, ImageOps

    if image.format in ("JPEG", "TIFF", "WEBP", "PNG") and image.getexif().get(0x0112, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):  # 16-bit grey: keep the top 8 bits (PIL's convert would clip at 255)
        image = Image.fromarray((np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8))
    if image.mode != prep.mode:
        image = image.convert(prep.mode)
    w, h = image.size
    side = min(w, h) if prep.crop is None else min(prep.crop, w, h)
    left, top = (w - side) // 2, (h - side) // 2
    if (left, top, side, side) != (0, 0, w, h):
        image = image.crop((left, top, left + side, top + side))
    if side != prep.size:
        image = image.resize((prep.size, prep.size), Image.Resampling.BICUBIC)
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2:
        return arr[None]
    return arr.transpose(2, 0, 1)


def open_image(payload: Path | bytes, what: str) -> Any:
    """Open ``payload`` (a path or the bytes of an encoded image) with PIL; a :class:`DataError` names ``what``."""
    from PIL import Image

    try:
        image = Image.open(payload if isinstance(payload, Path) else io.BytesIO(payload))
        image.load()
    except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for truncated or unknown files
        raise DataError(f"Cannot decode image {what}: {exc}. Delete or replace this file.") from None
    return image


def header(path: Path) -> tuple[str, tuple[int, int]]:
    """``(mode, (width, height))`` of an image file, read from its header only."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.mode, image.size
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"Cannot read image {path}: {exc}. Delete or replace this file.") from None


def is_grey(mode: str) -> bool:
    """Whether a PIL mode holds grey values only."""
    return mode in GREY_MODES


def scan_images(folder: Path) -> list[Path]:
    """Every image file under ``folder`` (recursive, hidden files and folders skipped), sorted by relative path."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath, name))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def fingerprint(paths: Iterable[Path]) -> list[Any]:
    """``[path, size, mtime_ns]`` of every file (what the cache key hashes); a vanished file is a DataError."""
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"Cannot read {p}: {exc.strerror or exc}.") from None
        out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def cache_key(*parts: Any) -> str:
    """A short hex digest of JSON-serialisable ``parts`` (plus :data:`PREP_VERSION`)."""
    blob = json.dumps([PREP_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _writable(folder: Path) -> bool:
    try:
        st = folder.stat()
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and bool(st.st_mode & 0o222) and os.access(folder, os.W_OK | os.X_OK)


def user_cache_dir() -> Path:
    """The per-user decoded-image cache: ``$XDG_CACHE_HOME/gflowzoo/decoded`` (default ``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "gflowzoo" / "decoded"


def cache_dir(root: Path) -> Path:
    """The folder that holds decoded caches for data under ``root`` (see the module docstring), created."""
    env = os.environ.get("GFLOWZOO_CACHE")
    candidates = [Path(env).expanduser()] if env else []
    local = Path(root) / ".gflowzoo-cache"
    if not env and (_writable(local) or (not local.exists() and _writable(Path(root)))):
        candidates.append(local)
    if not env:
        candidates.append(user_cache_dir())
    for folder in candidates:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if _writable(folder):
            return folder
    raise DataError(
        f"No writable folder for the decoded-image cache (tried {', '.join(map(str, candidates))}). "
        "Set GFLOWZOO_CACHE to a writable folder."
    )


def cache_file(root: Path, name: str, split: str, key: str) -> Path:
    """Where the decoded images of ``name``/``split`` with cache ``key`` live (see :func:`cache_dir`)."""
    return cache_dir(root) / f"{name}-{split}-{key}.npy"


def read_cached(target: Path, count: int | None = None) -> tuple[np.ndarray, np.ndarray | None] | None:
    """A cached ``uint8 [N, C, H, W]`` array (memory-mapped) and its labels ``[N]`` (``None`` if none were stored),
    or ``None`` when the cache is absent, unreadable or does not hold ``count`` images."""
    try:
        arr = np.load(target, mmap_mode="r")
        if arr.dtype != np.uint8 or arr.ndim != 4 or (count is not None and len(arr) != count):
            return None
        label_file = target.with_suffix(".labels.npy")
        labels = np.load(label_file) if label_file.exists() else None
    except (OSError, ValueError):
        return None  # absent or unreadable: decode again and overwrite
    if labels is not None and labels.shape != (len(arr),):
        return None
    return arr, labels


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def decode_cached(
    name: str,
    split: str,
    root: Path,
    key: str,
    items: Sequence[Any],
    fetch: Callable[[Any], Path | bytes],
    describe: Callable[[Any], str],
    prep: Preprocess | Callable[[], Preprocess],
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Decoded images ``[len(items), C, size, size]`` as a memory-mapped ``uint8`` array, from the cache.

    ``key`` (see :func:`cache_key`) must change whenever the items or the preprocessing change. On a miss every
    item is fetched in this thread (``fetch(item)``: a path or encoded bytes, so archives are read by one thread
    only), decoded and preprocessed in a small thread pool, and written to the cache atomically. ``prep`` may be a
    callable, evaluated only on a miss (e.g. when it needs every image's header). ``describe(item)`` names an item
    in error messages. ``labels`` (``[N]`` integers), when given, are stored beside the images so that a later
    :func:`read_cached` can serve both without listing the source again.
    """
    target = cache_file(root, name, split, key)
    hit = read_cached(target, len(items))
    if hit is not None and (labels is None or hit[1] is not None):
        return hit[0]
    if labels is not None:
        _atomic_save(target.with_suffix(".labels.npy"), np.asarray(labels, dtype=np.int64))
    prep = prep if isinstance(prep, Preprocess) else prep()
    _decode_into(target, items, fetch, describe, prep, f"{name} ({split})")
    return np.load(target, mmap_mode="r")


def _decode_into(
    target: Path,
    items: Sequence[Any],
    fetch: Callable[[Any], Path | bytes],
    describe: Callable[[Any], str],
    prep: Preprocess,
    title: str,
) -> None:
    """Decode every item into a temporary ``.npy`` memory map next to ``target``, then rename it into place."""
    shape = (len(items), prep.channels, prep.size, prep.size)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")

    def work(job: tuple[Any, Path | bytes]) -> np.ndarray:
        item, payload = job
        what = describe(item)
        image = open_image(payload, what)
        arr = prepare(image, prep)
        if arr.shape != shape[1:]:  # pragma: no cover - prepare guarantees it
            raise DataError(f"Image {what} decoded to shape {arr.shape}, expected {shape[1:]}.")
        return arr

    progress = None
    if len(items) > PROGRESS_MIN:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
            console=Console(stderr=True), transient=False,
        )
    out = None
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        workers = max(1, min(8, os.cpu_count() or 1))
        block = 512
        with ThreadPoolExecutor(max_workers=workers) as pool:
            task = None
            if progress is not None:
                progress.start()
                task = progress.add_task(f"Decoding {title}", total=len(items))
            for start in range(0, len(items), block):
                chunk = items[start : start + block]
                jobs = [(item, fetch(item)) for item in chunk]
                for i, arr in enumerate(pool.map(work, jobs)):
                    out[start + i] = arr
                if progress is not None:
                    progress.advance(task, len(chunk))
        out.flush()
        del out
        out = None
        os.replace(tmp, target)
        if progress is not None:
            progress.stop()
            progress = None
            note(f"decoded {len(items)} images once; cached at {target}")
    except OSError as exc:
        raise DataError(f"Writing the decoded cache {target} failed: {exc}. Set GFLOWZOO_CACHE elsewhere.") from None
    finally:
        if progress is not None:
            progress.stop()
        del out
        tmp.unlink(missing_ok=True)


def note(message: str) -> None:
    """A one-line notice on stderr (used for fallbacks the user should know about)."""
    print(f"gflowzoo: {message}", file=sys.stderr)


__all__ = [
    "IMAGE_SUFFIXES", "Preprocess", "cache_dir", "cache_file", "cache_key", "decode_cached", "fingerprint", "header",
    "is_grey", "note", "open_image", "prepare", "read_cached", "scan_images", "user_cache_dir",
]
