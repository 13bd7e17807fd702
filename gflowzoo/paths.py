"""Output paths: every command checks, before any work starts, that it can write where it was asked to.

A path that cannot be written (a file in the way of its folder, a read-only or pseudo file system such as ``/proc``)
is a :class:`~gflowzoo.errors.UserError` naming the obstacle, instead of a traceback after minutes of training or
sampling. Nothing is created by the check: a missing folder only has to be creatable.

Also gflowzoo's cache folder (:func:`cache_root`, where trained extractors, autoencoders and reference statistics
live) and the memoised file hash that goes into every evaluation protocol (:func:`file_sha256`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .errors import UserError

__all__ = ["cache_root", "check_writable", "file_sha256"]


def check_writable(path: str | os.PathLike, what: str, *, folder: bool = False) -> None:
    """Raise a :class:`UserError` unless ``path`` can be written.

    ``path`` is a file to write, or (``folder=True``) a folder to create or write into. The folder that will hold it
    (``path`` itself for a folder, else its parent) must exist or be creatable: the first existing ancestor must be a
    folder (a file in the way is named) in which a file can be created (checked by creating and removing a temporary
    file, so read-only mounts and pseudo file systems are caught, whoever runs the command). ``what`` names the
    path in the message (``"--out"``, ``"the run directory"``).
    """
    path = Path(path)
    where = f"Cannot write {what} {path}"
    if path.exists():
        if folder and not path.is_dir():
            raise UserError(f"{where}: it is a file, not a folder.")
        if not folder and path.is_dir():
            raise UserError(f"{where}: it is a folder; give a file name.")
        if not folder and not os.access(path, os.W_OK):
            raise UserError(f"{where}: the file exists and is not writable.")
    start = path if folder else path.parent
    ancestor = next((p for p in (start, *start.parents) if p.exists() or p.is_symlink()), Path("."))
    if not ancestor.exists():
        raise UserError(f"{where}: {ancestor} is a broken link.")
    if not ancestor.is_dir():
        raise UserError(f"{where}: {ancestor} is a file, not a folder.")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"{where}: no file can be created in {ancestor} ({reason}).") from None


def cache_root() -> Path:
    """gflowzoo's cache folder: ``$GFLOWZOO_CACHE``, else ``$XDG_CACHE_HOME/gflowzoo`` (``~/.cache/gflowzoo``)."""
    env = os.environ.get("GFLOWZOO_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gflowzoo"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file, memoised per (path, size, mtime) within the process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _SHA_MEMO:
        h = hashlib.sha256()
        with p.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _SHA_MEMO[key] = h.hexdigest()
    return _SHA_MEMO[key]
