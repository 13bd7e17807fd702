"""Output paths are checked before any work: a file in the way, a pseudo or read-only file system, a folder where a
file is expected."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from gflowzoo.errors import UserError
from gflowzoo.paths import check_writable


def test_writable_paths_pass_and_nothing_is_created(tmp_path):
    check_writable(tmp_path / "a.png", "--out")
    check_writable(tmp_path / "new" / "deeper" / "a.png", "--out")  # missing folders only have to be creatable
    check_writable(tmp_path / "run", "the run directory", folder=True)
    (tmp_path / "existing.png").write_bytes(b"x")
    check_writable(tmp_path / "existing.png", "--out")  # overwriting a file is fine
    assert sorted(os.listdir(tmp_path)) == ["existing.png"]


def test_relative_path_is_checked_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    check_writable(Path("x.npy"), "--raw")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match=r"^Cannot write --raw afile/x.npy: afile is a file, not a folder\.$"):
        check_writable(Path("afile/x.npy"), "--raw")


def test_a_file_in_the_way_is_named(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError) as exc:
        check_writable(tmp_path / "afile" / "sub" / "run", "the run directory", folder=True)
    assert str(exc.value) == (f"Cannot write the run directory {tmp_path / 'afile' / 'sub' / 'run'}: "
                              f"{tmp_path / 'afile'} is a file, not a folder.")
    with pytest.raises(UserError, match="it is a file, not a folder"):
        check_writable(tmp_path / "afile", "--out", folder=True)
    with pytest.raises(UserError, match="it is a folder; give a file name"):
        check_writable(tmp_path, "--out")


def test_pseudo_file_system_is_refused():
    if not os.path.isdir("/proc"):
        pytest.skip("no /proc here")
    with pytest.raises(UserError) as exc:
        check_writable("/proc/x.png", "--out")
    assert str(exc.value).startswith("Cannot write --out /proc/x.png: no file can be created in /proc (")


def test_read_only_folder_is_refused_whoever_runs(tmp_path, monkeypatch):
    """Simulated (root may write into a chmod 555 folder): creating the probe file fails with EROFS."""
    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    with pytest.raises(UserError, match=r"no file can be created in .* \(Read-only file system\)\.$"):
        check_writable(tmp_path / "x.npy", "--raw")
