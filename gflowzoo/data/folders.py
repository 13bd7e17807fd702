"""Photo data sets decoded from image files: CelebA 64, LSUN Church 64 and any folder of images.

Every image is centre-cropped to a square and resized (PIL bicubic, antialiased) once, then served from the cache
described in :mod:`gflowzoo.data.images`.

* ``celeba64``: ``3x64x64`` from ``<root>/celeba/img_align_celeba/*.jpg`` (the aligned 178x218 release; the Kaggle
  nesting ``img_align_celeba/img_align_celeba/`` also works). Crop: the centred 140x140 square (rows 39..178,
  columns 19..158 of a 178x218 image), the usual choice for 64x64 CelebA since the DCGAN/DDPM era, then resize to 64.
  Splits from ``<root>/celeba/list_eval_partition.txt`` (or Kaggle's ``.csv``): ``train`` = 0 (162,770 images),
  ``valid`` = 1 (19,867), ``test`` = 2 (19,962). Without that file the images sorted by name are split 80/10/10
  into train/valid/test (the official partition is also contiguous by file name), and a notice says so.
* ``lsun-church64``: ``3x64x64`` from an image folder ``<root>/lsun/church_outdoor_{train,val}/`` (any nesting) or
  the official LMDB ``<root>/lsun/church_outdoor_{train,val}_lmdb/`` (needs the ``lmdb`` package). Split ``train``
  is ``church_outdoor_train`` (126,227 images), ``test`` (alias ``val``) is ``church_outdoor_val`` (300 images).
  Crop: the largest centred square, then resize to 64.
* ``imagefolder:PATH`` or ``imagefolder:PATH@SIZE``: every png/jpg/jpeg/bmp/webp under PATH (recursive; hidden
  files and folders skipped), largest centred square, resized to SIZE. Without ``@SIZE`` the size is the images'
  own when all share one square size, else 64. Grey (1 channel) when every image is grey, else RGB. Splits: ``test``
  is a fixed 5% (``round(0.05 N)``, at least 1) of the files: those with the smallest SHA-1 of their path relative
  to PATH, so a file keeps its split when others are added; ``train`` is all the others. A relative PATH is looked
  up in the working directory first, then under the data root. Loading says what was decided and why, once per
  process, on stderr (:func:`describe_folder`; kept beside the decoded cache so that a cached load says it too).
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import ArrayImages
from .images import (
    IMAGE_SUFFIXES, Preprocess, cache_file, cache_key, decode_cached, fingerprint, header, is_grey, note, scan_images,
)

CELEBA_CROP = 140
CELEBA_SPLITS = {"train": 0, "valid": 1, "val": 1, "test": 2}
LSUN_SPLITS = {"train": "train", "test": "val", "val": "val", "valid": "val"}
TEST_FRACTION = 0.05
DEFAULT_SIZE = 64


def _from_files(name: str, split: str, root: Path, files: list[Path], prep: Preprocess) -> np.ndarray:
    """Decoded (and cached) images of ``files``; the cache key covers every file's path, size and mtime."""
    key = cache_key(name, split, prep.__dict__, fingerprint(files))
    return decode_cached(name, split, root, key, files, lambda p: p, str, prep)


# -- CelebA ----------------------------------------------------------------------------------------------------
def _read_partition(path: Path) -> dict[str, int]:
    """``file name -> partition`` from ``list_eval_partition.txt`` (``name part``) or Kaggle's csv (with header)."""
    out: dict[str, int] = {}
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read {path}: {exc}.") from None
    for number, line in enumerate(lines, 1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and fields[-1] == "partition"):
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            raise DataError(f"{path}, line {number}: expected '<image file> <0|1|2>', found {line!r}.")
        out[fields[0]] = int(fields[1])
    return out


def celeba64(root: Path, split: str = "train") -> ArrayImages:
    """CelebA aligned faces, ``3x64x64`` (140x140 centre crop, resized); splits train/valid/test."""
    if split not in CELEBA_SPLITS:
        raise DataError(f"celeba64 has splits 'train', 'valid' and 'test', not {split!r}.")
    base = Path(root) / "celeba"
    candidates = [base / "img_align_celeba" / "img_align_celeba", base / "img_align_celeba"]
    folder = next((c for c in candidates if c.is_dir() and any(c.glob("*.jpg"))), None)
    if folder is None:
        raise DataError(
            "celeba64: the aligned CelebA images were not found. Looked for *.jpg in:\n"
            + "".join(f"  {c}/\n" for c in candidates)
            + f"Get it: download img_align_celeba.zip and list_eval_partition.txt from the CelebA release "
            f"(or torchvision.datasets.CelebA('{root}', download=True)), unzip into {base}/ so that "
            f"{base}/img_align_celeba/000001.jpg exists, or run with --data-root DIR where DIR holds celeba/."
        )
    partition_files = [base / "list_eval_partition.txt", base / "list_eval_partition.csv"]
    pfile = next((p for p in partition_files if p.is_file()), None)
    wanted = CELEBA_SPLITS[split]
    if pfile is not None:
        partition = _read_partition(pfile)
        names = sorted(n for n, part in partition.items() if part == wanted)
        files = [folder / n for n in names]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise DataError(
                f"celeba64 ({split}): {len(missing)} images listed in {pfile} are missing from {folder}, "
                f"e.g. {missing[0].name}. Unzip the full img_align_celeba.zip there."
            )
    else:
        everything = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        n = len(everything)
        cut1, cut2 = round(0.8 * n), round(0.9 * n)
        files = {0: everything[:cut1], 1: everything[cut1:cut2], 2: everything[cut2:]}[wanted]
        note(
            f"celeba64: no {partition_files[0].name} in {base}; using a deterministic 80/10/10 split of the "
            f"{n} images sorted by name (not the official partition)."
        )
    if not files:
        raise DataError(f"celeba64 ({split}) holds no images (folder {folder}).")
    arr = _from_files("celeba64", split, Path(root), files, Preprocess(64, "RGB", crop=CELEBA_CROP))
    return ArrayImages(arr, "celeba64", split)


# -- LSUN Church -----------------------------------------------------------------------------------------------
def _lmdb_images(root: Path, db: Path, split: str, prep: Preprocess) -> np.ndarray:
    try:
        import lmdb
    except ImportError:
        raise DataError(
            f"lsun-church64: {db} is an LMDB database, and reading it needs the 'lmdb' package: pip install lmdb. "
            f"Or export its images into {db.parent / db.name.removesuffix('_lmdb')}/ (any image files, any nesting)."
        ) from None
    try:
        env = lmdb.open(str(db), readonly=True, lock=False, readahead=False, meminit=False, max_readers=4)
    except lmdb.Error as exc:
        raise DataError(f"Cannot open the LMDB database {db}: {exc}.") from None
    try:
        with env.begin(write=False) as txn:
            keys = sorted(txn.cursor().iternext(keys=True, values=False))
            if not keys:
                raise DataError(f"lsun-church64 ({split}): the LMDB database {db} holds no images.")
            stamp = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in sorted(db.glob("*.mdb"))]
            key = cache_key("lsun-church64-lmdb", split, prep.__dict__, stamp, len(keys))

            def fetch(k: bytes) -> bytes:
                value = txn.get(k)
                if value is None:
                    raise DataError(f"{db}: entry {k!r} vanished while reading.")
                return bytes(value)

            return decode_cached("lsun-church64", split, root, key, keys, fetch, lambda k: f"{db}[{k!r}]", prep)
    finally:
        env.close()


def lsun_church64(root: Path, split: str = "train") -> ArrayImages:
    """LSUN Church outdoor, ``3x64x64`` (largest centred square, resized); splits train/test (= official val)."""
    if split not in LSUN_SPLITS:
        raise DataError(f"lsun-church64 has splits 'train' and 'test' (the official 'val'), not {split!r}.")
    base = Path(root) / "lsun"
    folder = base / f"church_outdoor_{LSUN_SPLITS[split]}"
    db = base / f"church_outdoor_{LSUN_SPLITS[split]}_lmdb"
    prep = Preprocess(64, "RGB")
    if folder.is_dir():
        files = scan_images(folder)
        if not files:
            raise DataError(f"lsun-church64 ({split}): no images ({'/'.join(IMAGE_SUFFIXES)}) under {folder}.")
        return ArrayImages(_from_files("lsun-church64", split, Path(root), files, prep), "lsun-church64", split)
    if db.is_dir():
        return ArrayImages(_lmdb_images(Path(root), db, split, prep), "lsun-church64", split)
    raise DataError(
        f"lsun-church64 ({split}) not found. Looked for:\n  {folder}/ (image files, any nesting)\n  {db}/ (the "
        f"official LMDB, read with 'pip install lmdb')\nGet it: download church_outdoor_{LSUN_SPLITS[split]}_lmdb.zip "
        f"from the LSUN release (github.com/fyu/lsun, download.py -c church_outdoor) and unzip it into {base}/, "
        f"or run with --data-root DIR where DIR holds lsun/."
    )


# -- any folder ------------------------------------------------------------------------------------------------
def parse_imagefolder(arg: str) -> tuple[str, int | None]:
    """``"PATH"`` or ``"PATH@SIZE"`` -> ``(PATH, SIZE or None)``."""
    path, size = arg, None
    if "@" in arg:
        head, _, tail = arg.rpartition("@")
        if tail.isdigit():
            path, size = head, int(tail)
            if not 2 <= size <= 4096:
                raise DataError(f"imagefolder: the size after '@' must be 2..4096 pixels, got {size}.")
    if not path:
        raise DataError("imagefolder: give a folder, e.g. imagefolder:/path/to/images or imagefolder:/path@64.")
    return path, size


def _held_out(files: list[Path], folder: Path) -> set[Path]:
    """The fixed test files: the ``round(0.05 N)`` (at least 1) with the smallest SHA-1 of their relative path."""
    ranked = sorted(files, key=lambda p: hashlib.sha1(p.relative_to(folder).as_posix().encode()).hexdigest())
    return set(ranked[: max(1, round(TEST_FRACTION * len(files)))])


def _not_images(folder: Path) -> list[Path]:
    """The visible files under ``folder`` that :func:`~gflowzoo.data.images.scan_images` leaves out (no image
    suffix), sorted; hidden files and folders are not counted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [Path(dirpath, n) for n in filenames
                  if not n.startswith(".") and not n.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _counted(counts: Counter, shown: int = 3) -> str:
    """``"28x28 (100), 64x64 (20)"``: the most common values with their counts, then how many others."""
    top = counts.most_common(shown)
    text = ", ".join(f"{value} ({n})" for value, n in top)
    return text + (f" and {len(counts) - shown} more" if len(counts) > shown else "")


def describe_folder(folder: Path, heads: list[tuple[str, tuple[int, int]]], prep: Preprocess, size: int | None,
                    skipped: list[Path]) -> str:
    """What :func:`imagefolder` decided and why, in one line, from every image's ``(mode, (width, height))``::

        imagefolder /x: 120 images, sizes 28x28 (100), 64x64 (20) -> resized to 64x64 (mixed sizes: the default);
        modes L (100), RGB (20) -> 3 channels (not every image is grey); 2 files skipped (not images: a.txt, b.doc)
    """
    sizes = Counter(f"{w}x{h}" for _, (w, h) in heads)
    side = f"{prep.size}x{prep.size}"
    kept = sizes.keys() == {side}  # every image already has the chosen size: no resize
    if size is not None:
        why = f"{'kept at' if kept else 'resized to'} {side} (@{size})"
    elif kept:
        why = f"kept at {side} (one square size)"
    else:
        why = f"resized to {side} ({'mixed sizes' if len(sizes) > 1 else 'not square'}: the default)"
    crop = "; non-square images cut to their largest centred square" if any(w != h for _, (w, h) in heads) else ""
    modes = Counter(mode for mode, _ in heads)
    colour = "1 channel (all grey)" if prep.mode == "L" else "3 channels (not every image is grey)"
    alpha = "; alpha dropped" if any(m in ("RGBA", "LA", "PA", "La", "RGBa") for m in modes) else ""
    text = (f"imagefolder {folder}: {len(heads)} images, sizes {_counted(sizes)} -> {why}{crop}; "
            f"modes {_counted(modes)} -> {colour}{alpha}")
    if skipped:
        names = ", ".join(p.relative_to(folder).as_posix() for p in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        text += f"; {len(skipped)} file{'s' if len(skipped) > 1 else ''} skipped (not images: {names}{more})"
    return text


#: Lines :func:`imagefolder` has shown in this process (each is shown once, whichever split loads first).
_TOLD: set[str] = set()


def _tell(message: str) -> None:
    if message and message not in _TOLD:
        _TOLD.add(message)
        note(message)


def imagefolder(root: Path, split: str = "train", arg: str = "") -> ArrayImages:
    """Every image under a folder (see the module docstring for size, colour and splits)."""
    if split not in ("train", "test"):
        raise DataError(f"imagefolder has splits 'train' and 'test', not {split!r}.")
    spec, size = parse_imagefolder(arg)
    given = Path(spec).expanduser()
    places = [given] if given.is_absolute() else [Path.cwd() / given, Path(root) / given]
    folder = next((p for p in places if p.is_dir()), None)
    if folder is None:
        raise DataError(
            f"imagefolder: no folder {spec!r}. Looked in: {', '.join(map(str, places))}. Give an existing folder "
            f"of images (imagefolder:/abs/path, or a path relative to the working directory or the data root)."
        )
    folder = folder.resolve()
    files = scan_images(folder)
    if not files:
        raise DataError(f"imagefolder: no images ({'/'.join(IMAGE_SUFFIXES)}) under {folder} (searched recursively).")
    if len(files) < 2:
        raise DataError(f"imagefolder: {folder} holds one image; at least 2 are needed (one is held out as test).")
    test = _held_out(files, folder)
    chosen = [p for p in files if (p in test) == (split == "test")]

    decided: list[str] = []

    def infer() -> Preprocess:
        heads = [header(p) for p in files]  # over the whole folder, so both splits agree
        mode = "L" if all(is_grey(m) for m, _ in heads) else "RGB"
        sizes = {wh for _, wh in heads}
        side = size
        if side is None:
            only = next(iter(sizes))
            side = only[0] if len(sizes) == 1 and only[0] == only[1] else DEFAULT_SIZE
        prep = Preprocess(side, mode)
        decided.append(describe_folder(folder, heads, prep, size, _not_images(folder)))
        return prep

    key = cache_key("imagefolder", split, size, fingerprint(files))
    arr = decode_cached("imagefolder", split, Path(root), key, chosen, lambda p: p, str, infer)
    # the decision is made when decoding; a cached load repeats what was said then, from beside the cache file
    about = cache_file(Path(root), "imagefolder", split, key).with_suffix(".about.txt")
    try:
        if decided:
            about.write_text(decided[0] + "\n")
        elif about.is_file():
            decided.append(about.read_text().strip())
    except OSError:
        pass  # only the message is lost
    _tell(decided[0] if decided else "")
    return ArrayImages(arr, f"imagefolder:{arg}", split)
