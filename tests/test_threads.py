"""The CPU thread policy (gflowzoo.threads): fixed counts, OMP_NUM_THREADS, and the auto governor."""

from __future__ import annotations

import pytest
import torch

from gflowzoo import threads
from gflowzoo.errors import UserError


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_governor", None)
    monkeypatch.setattr(threads, "_fixed", None)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("usable, others, want", [
    (2, 0.0, 2), (2, 0.1, 2), (2, 0.3, 1), (2, 1.0, 1), (2, 1.9, 1), (2, 5.0, 1),
    (8, 0.0, 8), (8, 2.0, 6), (8, 2.5, 5), (1, 0.0, 1),
])
def test_choose_leaves_the_cores_other_processes_use(usable, others, want):
    assert threads.choose(usable, others) == want


def test_fixed_count_wins_and_is_never_changed(monkeypatch):
    monkeypatch.setenv("GFLOWZOO_THREADS", "1")
    threads.configure()
    assert torch.get_num_threads() == 1
    assert threads.current() == {"threads": 1, "policy": "fixed"}
    threads.tick()
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("raw", ["0", "-2", "two"])
def test_bad_thread_setting_is_a_user_error(monkeypatch, raw):
    monkeypatch.setenv("GFLOWZOO_THREADS", raw)
    with pytest.raises(UserError, match="GFLOWZOO_THREADS"):
        threads.configure()


def test_omp_num_threads_is_left_to_torch(monkeypatch):
    monkeypatch.delenv("GFLOWZOO_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    threads.configure()
    assert threads.current()["policy"] == "omp"
    assert threads._governor is None


def test_governor_follows_the_load(monkeypatch):
    """Fake /proc readings: others use a full core, then nothing; the count drops to 1 and comes back to 2."""
    clock = {"t": 100.0, "busy": 0.0, "own": 0.0}

    def fake_read():
        return clock["t"], clock["busy"], clock["own"]

    monkeypatch.setattr(threads, "_read_times", fake_read)
    monkeypatch.setattr(threads.time, "monotonic", lambda: clock["t"])
    monkeypatch.setattr(threads.time, "sleep", lambda s: clock.update(t=clock["t"] + s))
    monkeypatch.setattr(threads, "_usable_cores", lambda: 2)
    monkeypatch.delenv("GFLOWZOO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    threads.configure()  # idle: nobody else used the CPU during the first window
    assert torch.get_num_threads() == 2 and threads.current()["policy"] == "auto"

    def advance(seconds, own_cores, other_cores):
        clock["t"] += seconds
        clock["own"] += seconds * own_cores
        clock["busy"] += seconds * (own_cores + other_cores)

    advance(1.0, 2.0, 1.0)
    threads.tick()  # not yet RECHECK_SECONDS since the last measurement: no change
    assert torch.get_num_threads() == 2
    advance(threads.RECHECK_SECONDS, 1.2, 0.8)  # a competitor took most of a core
    threads.tick()
    assert torch.get_num_threads() == 1
    advance(threads.RECHECK_SECONDS, 1.0, 0.05)  # it ended
    threads.tick()
    assert torch.get_num_threads() == 2


def test_without_proc_auto_keeps_torchs_default(monkeypatch):
    monkeypatch.setattr(threads, "_read_times", lambda: None)
    monkeypatch.delenv("GFLOWZOO_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(3)
    threads.configure()
    assert torch.get_num_threads() == 3 and threads.current()["policy"] == "default"


def test_real_proc_reading_is_sane():
    now = threads._read_times()
    if now is None:
        pytest.skip("no /proc on this platform")
    wall, busy, own = now
    assert wall > 0 and busy >= own >= 0
