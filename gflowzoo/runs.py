"""Run directories and checkpoints.

A run directory holds (docs/runs.md has who writes what, and when)::

    config.toml        the resolved configuration (enough to rebuild the run)
    checkpoints/       step-XXXXXXXX.pt
    samples/           sample pictures: step-XXXXXXXX.png, final.png (training), sample-seed<k>.png (sample)
    metrics.jsonl      one JSON object per logged step, with wall-clock seconds
    eval-<key>.json    one file per evaluation protocol (``gflowzoo evaluate``, ``gflowzoo compare``)
    compare.json       the record of a run that ``gflowzoo compare`` finished (in a comparison's ``runs/``)

:class:`RunDir` writes every one of them, each atomically (temporary file, fsync, rename; see
:func:`atomic_write_bytes`), except ``metrics.jsonl``, which grows one line per record (a torn last line, which only
a crash can leave, is skipped when read) and is rewritten atomically when a resume cuts it back.

Checkpoints hold tensors, dicts, lists and plain scalars only and are read with ``torch.load(weights_only=True)``:
no code runs from a checkpoint file.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from .config import dumps_toml, load_toml
from .errors import CheckpointError, UserError

FORMAT = "gflowzoo-checkpoint"
FORMAT_VERSION = 1
_CKPT_RE = re.compile(r"^step-(\d{8})\.pt$")
#: The temporary file of an :func:`atomic_write_bytes` of a run's own file that a kill interrupted.
_TEMP_RE = re.compile(
    r"^\.(config\.toml|metrics\.jsonl|step-\d{8}\.pt|compare\.json|eval-\w+\.json|[\w.-]+\.(?:png|jpe?g|pdf))\.\w+\.tmp$")


#: Keys of an in-training evaluation record (``eval/<key>`` in ``metrics.jsonl``) that are facts about the
#: evaluation, not metric values: its duration, the sampler (``n`` samples, ``nfe``, and the settings the cheap sampler
#: changed), and the budget bookkeeping of a skipped evaluation or of the probe (see
#: :class:`gflowzoo.evaluate.TrainingEval`). Here, with the log's other conventions, so that readers of the log
#: (the report, compare) need not import the evaluation code.
RECORD_FACTS = frozenset({"seconds", "n", "nfe", "levels", "particles", "skipped", "estimate_s", "left_s", "probe_s"})


class NoCheckpoint(CheckpointError):
    """A run has no checkpoint that loads: none was written yet (``damaged`` is empty), or every one is damaged
    (``damaged``: one short line per file, newest first, naming the file and why)."""

    def __init__(self, message: str, damaged: list[str] | None = None) -> None:
        super().__init__(message)
        self.damaged = damaged or []


def default_run_dir(method: str, dataset: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset)
    return Path("runs") / f"{method}-{safe}-{stamp}"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions of a new file
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class RunDir:
    """A run directory on disk."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    # -- layout ------------------------------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.toml"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def samples_dir(self) -> Path:
        return self.path / "samples"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    def exists(self) -> bool:
        return self.config_path.exists()

    def is_blank(self) -> bool:
        """Whether the directory holds nothing to lose: it is missing, or it has no ``config.toml`` and holds at most
        empty ``checkpoints/`` and ``samples/`` folders, a ``metrics.jsonl`` without a line and the temporary file of
        an interrupted write of ``config.toml`` (what a run killed before it wrote its configuration leaves). A new
        run may start in a blank directory."""
        if not self.path.is_dir():
            return not self.path.exists()
        if self.exists():
            return False
        try:
            for entry in self.path.iterdir():
                if entry.is_symlink():
                    return False
                if entry.name in ("checkpoints", "samples") and entry.is_dir():
                    if any(entry.iterdir()):
                        return False
                elif entry.name == "metrics.jsonl" and entry.is_file():
                    if entry.read_bytes().strip():
                        return False
                elif not (entry.name.startswith(".config.toml.") and _TEMP_RE.match(entry.name) and entry.is_file()):
                    return False
        except OSError:  # something unreadable in it: not known to be blank
            return False
        return True

    @property
    def compare_record_path(self) -> Path:
        return self.path / "compare.json"

    def eval_path(self, key: str) -> Path:
        """``eval-<key>.json``: the evaluation under the protocol whose key is ``key``."""
        return self.path / f"eval-{key}.json"

    def remove_temp_files(self) -> list[Path]:
        """Remove the temporary files that writes interrupted by a kill left (``.step-XXXXXXXX.pt.*.tmp`` in
        ``checkpoints/``, ``.config.toml.*.tmp``, ``.metrics.jsonl.*.tmp``, those of ``eval-*.json``, ``compare.json``
        and of the pictures in ``samples/``); returns them. Call it only when no other process writes into the run."""
        found = [p for folder in (self.path, self.checkpoint_dir, self.samples_dir) if folder.is_dir()
                 for p in folder.iterdir() if _TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink()]
        for p in found:
            p.unlink(missing_ok=True)
        return found

    def require(self) -> RunDir:
        if not self.path.exists():
            raise UserError(f"Run directory not found: {self.path}")
        if not self.exists():
            raise UserError(f"{self.path} is not a gflowzoo run directory (no config.toml).")
        return self

    # -- config ------------------------------------------------------------------------------------------------
    def write_config(self, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.config_path, dumps_toml(data).encode())

    def read_config(self) -> dict[str, Any]:
        return load_toml(self.config_path)

    # -- pictures, evaluations, records ------------------------------------------------------------------------
    def save_grid(self, name: str, picture: bytes) -> Path:
        """Write ``samples/<name>`` (a sample picture, e.g. the bytes of :func:`gflowzoo.viz.samples_picture`)."""
        return self.write_file(f"samples/{name}", picture)

    def write_eval(self, key: str, data: dict[str, Any]) -> Path:
        """Write ``eval-<key>.json`` (an evaluation under the protocol with that key, as JSON); returns its path."""
        path = self.eval_path(key)
        atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())
        return path

    def write_compare_record(self, data: dict[str, Any]) -> Path:
        """Write ``compare.json``: the record of a run that ``gflowzoo compare`` trained and evaluated (its presence
        marks the run finished; running the comparison again reuses it)."""
        atomic_write_bytes(self.compare_record_path, (json.dumps(data, indent=2, default=str) + "\n").encode())
        return self.compare_record_path

    def read_compare_record(self) -> dict[str, Any] | None:
        """The ``compare.json`` record, or ``None`` when the run has none (or a damaged one)."""
        try:
            data = json.loads(self.compare_record_path.read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def write_file(self, relative: str | os.PathLike, data: bytes) -> Path:
        """Write a file of the run's own at ``relative`` (a path inside the run directory, such as a plugin's
        ``diagnostics/width.png``); returns its path. Paths that leave the run directory are refused."""
        rel = Path(relative)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"{relative} is not a path inside the run directory")
        path = self.path / rel
        atomic_write_bytes(path, data)
        return path

    # -- metrics log -------------------------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else str(v)) for k, v in record.items()}
        self.path.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as fh:
            fh.write(json.dumps(clean) + "\n")
            fh.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        out = []
        for line in self.metrics_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a torn last line after a crash
                continue
        return out

    def truncate_metrics(self, step: int) -> None:
        """Drop log lines after ``step`` (used on resume, so the log matches the checkpoint)."""
        if not self.metrics_path.exists():
            return
        keep = [r for r in self.read_metrics() if int(r.get("step", 0)) <= step]
        atomic_write_bytes(self.metrics_path, "".join(json.dumps(r) + "\n" for r in keep).encode())

    # -- checkpoints -------------------------------------------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.checkpoint_dir.exists():
            return []
        found = [p for p in self.checkpoint_dir.iterdir() if _CKPT_RE.match(p.name)]
        return sorted(found, key=lambda p: int(_CKPT_RE.match(p.name).group(1)))

    def save_checkpoint(self, payload: dict[str, Any], step: int, keep: int = 3) -> Path:
        import io

        import torch

        buf = io.BytesIO()
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "step": int(step), **payload}, buf)
        path = self.checkpoint_dir / f"step-{step:08d}.pt"
        atomic_write_bytes(path, buf.getvalue())
        if keep > 0:
            for old in self.checkpoints()[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def latest_checkpoint(self, method: str | None = None) -> tuple[Path, dict[str, Any]]:
        """The newest checkpoint that loads; a damaged newest file falls back to the one before (with a note in
        the returned payload's ``skipped`` list). :class:`NoCheckpoint` when none loads."""
        errors, damaged = [], []
        for path in reversed(self.checkpoints()):
            try:
                payload = load_checkpoint(path, method)
            except CheckpointError as exc:
                if "another method" in str(exc):
                    raise
                errors.append(str(exc))
                damaged.append(str(exc).replace(str(path), path.name).rstrip("."))
                continue
            payload["skipped"] = errors
            return path, payload
        if errors:
            raise NoCheckpoint("No loadable checkpoint in " f"{self.checkpoint_dir}: " + "; ".join(errors), damaged)
        raise NoCheckpoint(f"No checkpoint in {self.checkpoint_dir}.")


def load_checkpoint(path: str | os.PathLike, method: str | None = None) -> dict[str, Any]:
    """Load a gflowzoo checkpoint safely (``weights_only=True``) and check its format and method."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(len(_ZIP_MAGIC))
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}).") from None
    if not head:
        raise CheckpointError(f"{path} is truncated or corrupt (an empty file).")
    # torch.save writes a zip archive (a legacy file is a pickle): anything else is another kind of file
    if not (_ZIP_MAGIC.startswith(head) or head.startswith(_PICKLE_PROTO)):
        raise CheckpointError(f"{path} is not a checkpoint file (not a torch archive).")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds objects other than tensors and plain data; it was refused so that no code runs from it "
            f"({quote_error(exc, prefer='GLOBAL')})."
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged archive makes torch raise
        raise CheckpointError(f"{path} is truncated or corrupt ({type(exc).__name__}: {quote_error(exc)}).") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a gflowzoo checkpoint.")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer gflowzoo (format {payload['format_version']}).")
    if method is not None and payload.get("method") != method:
        raise CheckpointError(
            f"{path} is a checkpoint of another method ({payload.get('method')!r}), not of {method!r}."
        )
    return payload


_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = b"\x80"  # the PROTO opcode that starts a pickle of protocol 2 or later
_SENTENCE_END = re.compile(r"[.!?](?=\s|$)")


def quote_error(exc: BaseException, prefer: str | None = None, limit: int = 300) -> str:
    """The first sentence of an exception's message (of its first line holding ``prefer``, if any), to quote in a
    one-line error: cut at a sentence or line end (or, for a run-on sentence past ``limit`` characters, at a word
    end), never mid-word, with "..." when something was left out."""
    text = str(exc).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    line = next((ln for ln in lines if prefer and prefer in ln), lines[0])
    end = _SENTENCE_END.search(line)
    quote = line[: end.end()] if end else line
    if len(quote) > limit:
        quote = quote[:limit].rsplit(None, 1)[0] if " " in quote[:limit] else quote[:limit]
    return quote if quote == text else f"{quote} ..."
