"""Run directories and checkpoints: atomic writes, corrupt and hostile files, keep-last-K, fallback."""

from __future__ import annotations

import io
import os
import pickle

import pytest
import torch

from gflowzoo.errors import CheckpointError, UserError
from gflowzoo.runs import FORMAT, RunDir, atomic_write_bytes, load_checkpoint, quote_error


def _payload(value: float, method: str = "fit-gaussian") -> dict:
    return {"method": method, "state": {"w": torch.full((3,), value)}, "rng": {}}


def test_save_and_load_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    path = run.save_checkpoint(_payload(1.5), step=12)
    assert path.name == "step-00000012.pt"
    payload = load_checkpoint(path, "fit-gaussian")
    assert payload["format"] == FORMAT and payload["step"] == 12
    assert torch.equal(payload["state"]["w"], torch.full((3,), 1.5))
    # the file is a plain torch file readable with weights_only=True
    assert torch.load(path, weights_only=True)["step"] == 12


def test_atomic_write_survives_a_crash_during_replace(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    path = run.save_checkpoint(_payload(1.0), step=5, keep=0)
    before = set(os.listdir(run.checkpoint_dir))

    def crash(src, dst):
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        run.save_checkpoint(_payload(2.0), step=5, keep=0)  # same file name: would overwrite
    monkeypatch.undo()
    assert set(os.listdir(run.checkpoint_dir)) == before  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["state"]["w"], torch.full((3,), 1.0))  # old one intact


def test_atomic_write_bytes_replaces_whole_file(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    atomic_write_bytes(target, b"a" * 100)
    atomic_write_bytes(target, b"b" * 3)
    assert target.read_bytes() == b"bbb" and os.listdir(target.parent) == ["f.bin"]


def test_truncated_checkpoint_names_the_file(tmp_path):
    run = RunDir(tmp_path / "run")
    path = run.save_checkpoint(_payload(1.0), step=1)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "truncated or corrupt" in str(exc.value)
    assert isinstance(exc.value, UserError)


class _RunsCode:
    """A pickle payload that would call ``marker.touch`` when unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_payload_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "format_version": 1, "step": 1, "method": "x", "state": _RunsCode(marker)}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert str(path) in str(exc.value) and "refused" in str(exc.value)
    assert not marker.exists(), "loading a checkpoint ran code"
    # and the run-directory loader refuses it the same way
    run = RunDir(tmp_path / "run")
    run.checkpoint_dir.mkdir(parents=True)
    (run.checkpoint_dir / "step-00000001.pt").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointError):
        run.latest_checkpoint()
    assert not marker.exists()
    # the payload is live: an unrestricted load does run it (so the refusal above is what protected us)
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_plain_pickle_file_is_refused(tmp_path):
    marker = tmp_path / "pwned2"
    path = tmp_path / "plain.pt"
    path.write_bytes(pickle.dumps(_RunsCode(marker), protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_file_that_is_not_a_torch_archive_is_told_apart(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello: these are my notes on the run\n")
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(notes)
    assert str(exc.value) == f"{notes} is not a checkpoint file (not a torch archive)."
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(empty)
    # a real pickle with a foreign object is still the refusal, quoting torch's reason rather than its preamble
    foreign = tmp_path / "foreign.pt"
    torch.save({"x": _RunsCode(tmp_path / "pwned3")}, foreign)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(foreign)
    assert "holds objects other than tensors" in str(exc.value) and "GLOBAL" in str(exc.value)


def test_quoted_errors_are_cut_at_a_sentence_or_word_end():
    torch_like = RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. "
                              "This is an internal miniz error. If you are seeing this error, there is a high "
                              "likelihood that your checkpoint file is corrupted.")
    assert quote_error(torch_like) == ("PytorchStreamReader failed reading zip archive: failed finding central "
                                       "directory. ...")
    assert quote_error(ValueError("short and whole")) == "short and whole"
    assert quote_error(ValueError("first line\nsecond line")) == "first line ..."
    assert quote_error(KeyError()) == "KeyError"
    run_on = ValueError("word " * 100)
    quoted = quote_error(run_on, limit=42)
    assert quoted == "word word word word word word word word ..."
    picked = pickle.UnpicklingError("Weights only load failed. Long preamble.\n\nTrying to load unsupported GLOBAL "
                                    "posix.system whose module posix is blocked.\n\nCheck the documentation.")
    assert quote_error(picked, prefer="GLOBAL") == (
        "Trying to load unsupported GLOBAL posix.system whose module posix is blocked. ...")


def test_truncated_checkpoint_message_quotes_whole_sentences(tmp_path):
    run = RunDir(tmp_path / "run")
    path = run.save_checkpoint(_payload(1.0), step=1)
    path.write_bytes(path.read_bytes()[:80])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    reason = str(exc.value).split(" is truncated or corrupt (", 1)[1]
    assert reason.endswith(". ...).") or reason.endswith(".)."), reason  # a whole sentence, never cut mid-word
    assert "\n" not in str(exc.value)


def test_not_a_gflowzoo_checkpoint(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a gflowzoo checkpoint"):
        load_checkpoint(path)
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "format_version": 99, "step": 0}, buf)
    (tmp_path / "newer.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="newer gflowzoo"):
        load_checkpoint(tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_checkpoint_of_another_method_is_a_clear_error(tmp_path):
    run = RunDir(tmp_path / "run")
    path = run.save_checkpoint(_payload(1.0, method="dmmd"), step=3)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, "fit-gaussian")
    assert "another method ('dmmd')" in str(exc.value) and "'fit-gaussian'" in str(exc.value)
    with pytest.raises(CheckpointError, match="another method"):
        run.latest_checkpoint("fit-gaussian")


def test_keep_last_k(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (1, 2, 3, 4, 5):
        run.save_checkpoint(_payload(float(step)), step=step, keep=2)
    assert [p.name for p in run.checkpoints()] == ["step-00000004.pt", "step-00000005.pt"]
    for step in (6, 7):
        run.save_checkpoint(_payload(float(step)), step=step, keep=0)  # 0 keeps everything
    assert len(run.checkpoints()) == 4


def test_checkpoints_sorted_numerically_and_foreign_files_ignored(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (100, 9, 20):
        run.save_checkpoint(_payload(float(step)), step=step, keep=0)
    (run.checkpoint_dir / "notes.txt").write_text("x")
    (run.checkpoint_dir / ".step-00000200.pt.abc.tmp").write_bytes(b"partial")
    assert [p.name for p in run.checkpoints()] == ["step-00000009.pt", "step-00000020.pt", "step-00000100.pt"]


def test_damaged_newest_falls_back_to_previous(tmp_path):
    run = RunDir(tmp_path / "run")
    run.save_checkpoint(_payload(1.0), step=1)
    newest = run.save_checkpoint(_payload(2.0), step=2)
    newest.write_bytes(newest.read_bytes()[:50])
    path, payload = run.latest_checkpoint("fit-gaussian")
    assert path.name == "step-00000001.pt" and payload["step"] == 1
    assert len(payload["skipped"]) == 1 and newest.name in payload["skipped"][0]
    (run.checkpoint_dir / "step-00000001.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="No loadable checkpoint"):
        run.latest_checkpoint()


def test_no_checkpoint_and_missing_run(tmp_path):
    with pytest.raises(CheckpointError, match="No checkpoint"):
        RunDir(tmp_path / "empty").latest_checkpoint()
    with pytest.raises(UserError, match="not found"):
        RunDir(tmp_path / "nope").require()
    (tmp_path / "noconf").mkdir()
    with pytest.raises(UserError, match="no config.toml"):
        RunDir(tmp_path / "noconf").require()


def test_metrics_log_and_truncate(tmp_path):
    run = RunDir(tmp_path / "run")
    for step in (1, 2, 3):
        run.log({"step": step, "time": 0.1 * step, "loss": float("nan") if step == 3 else 1.0})
    with run.metrics_path.open("a") as fh:
        fh.write('{"step": 4, "ti')  # a torn last line after a crash
    records = run.read_metrics()
    assert [r["step"] for r in records] == [1, 2, 3] and records[2]["loss"] == "nan"
    run.truncate_metrics(2)
    assert [r["step"] for r in run.read_metrics()] == [1, 2]


def test_config_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    data = {"method": "m", "seed": 1, "run": {"steps": 3}, "kernel": {"name": "rbf", "sigmas": [1.0]}}
    run.write_config(data)
    assert run.exists() and run.read_config() == data
