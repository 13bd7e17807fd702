"""Large sample counts in bounded memory: ``gflowzoo sample`` and ``Evaluator.evaluate_method`` ask a method for at
most one piece of samples per call, write raw samples piece by piece, and give the same numbers as all at once."""

from __future__ import annotations

from typing import Any, ClassVar

import helpers_method
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from gflowzoo.hookspecs import hookimpl
from gflowzoo.plugins import temporary_plugin
from gflowzoo.sampling import GRID_MAX, SampleWriter, piece_size, sample_pieces


class Recording(helpers_method.FitGaussian):
    """``fit-gaussian`` that records the ``n`` of every ``sample`` call (and may report an interaction batch)."""

    calls: ClassVar[list[int]] = []
    particles: ClassVar[int | None] = None

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        Recording.calls.append(n)
        return super().sample(n, generator)

    def sampling_info(self) -> dict[str, Any]:
        return {"nfe": 1} if self.particles is None else {"nfe": 1, "particles": self.particles}


class _Plugin:
    @hookimpl
    def gflowzoo_register(self, register):
        register("method", "recording", Recording, "test-only: records sample() calls")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("GFLOWZOO_CACHE", str(tmp_path / "cache"))
    Recording.calls, Recording.particles = [], None
    from gflowzoo.cli import build_app

    with temporary_plugin(_Plugin(), "recording-plugin"):
        yield build_app()


def invoke(app, *args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _trained(app, tmp_path):
    run = tmp_path / "run"
    r = invoke(app, "train", "recording", "--dataset", "digits", "--steps", 3, "--out", run, "--no-progress",
               "--set", "run.grid_size=4")
    assert r.exit_code == 0, r.output
    Recording.calls.clear()
    return run


def test_sample_command_asks_for_bounded_pieces_and_writes_them_all(app, tmp_path):
    run = _trained(app, tmp_path)
    raw, png = tmp_path / "x.npy", tmp_path / "x.png"
    r = invoke(app, "sample", run, "--n", 1100, "--batch", 500, "--raw", raw, "--out", png, "--seed", 4)
    assert r.exit_code == 0, r.output
    assert Recording.calls == [500, 500, 100]
    x = np.load(raw)
    assert x.shape == (1100, 1, 8, 8) and x.dtype == np.float32
    # the same pieces drawn directly, one after the other with one generator
    from gflowzoo.cli import load_run

    _, method, _ = load_run(run)
    g = torch.Generator().manual_seed(4)
    expected = torch.cat([method.sample(k, g) for k in (500, 500, 100)])
    np.testing.assert_array_equal(x, expected.numpy())
    # the PNG shows the first GRID_MAX images: 32 x 32 cells of (8 + 2) px plus a 2 px border, upscaled 4x
    cols = int(np.ceil(np.sqrt(GRID_MAX)))
    assert Image.open(png).size == ((cols * 10 + 2) * 4, (cols * 10 + 2) * 4)
    # .pt: the same samples
    Recording.calls.clear()
    assert invoke(app, "sample", run, "--n", 1100, "--batch", 500, "--raw", tmp_path / "x.pt", "--seed", 4,
                  "--out", png).exit_code == 0
    assert Recording.calls == [500, 500, 100]
    np.testing.assert_array_equal(torch.load(tmp_path / "x.pt", weights_only=True).numpy(), x)


def test_sample_command_up_to_one_batch_is_one_call(app, tmp_path):
    run = _trained(app, tmp_path)
    raw = tmp_path / "y.npy"
    assert invoke(app, "sample", run, "--n", 300, "--raw", raw, "--seed", 2).exit_code == 0
    assert Recording.calls == [300]
    from gflowzoo.cli import load_run

    _, method, _ = load_run(run)
    np.testing.assert_array_equal(np.load(raw), method.sample(300, torch.Generator().manual_seed(2)).numpy())
    r = invoke(app, "sample", run, "--n", 10, "--batch", 0)
    assert r.exit_code == 2 and "--batch must be at least 1" in r.output


def test_piece_size_rounds_to_whole_particle_batches():
    class M:
        def __init__(self, particles):
            self.particles = particles

        def sampling_info(self):
            return {} if self.particles is None else {"particles": self.particles}

    assert piece_size(M(None), 1000) == 1000
    assert piece_size(M(300), 1000) == 900
    assert piece_size(M(300), 200) == 300  # at least one batch
    got = []

    class Counting(M):
        def sample(self, n, generator):
            got.append(n)
            return torch.zeros(n, 2)

    assert sum(len(x) for x in sample_pieces(Counting(300), 2000, torch.Generator(), 1000)) == 2000
    assert got == [900, 900, 200]


def test_sample_writer_keeps_the_first_images_and_checks_the_count(tmp_path):
    w = SampleWriter(5, (1, 2, 2), "image", tmp_path / "a.npy", keep=3)
    w.add(torch.arange(8.0).view(2, 1, 2, 2))
    w.add(torch.arange(8.0, 20.0).view(3, 1, 2, 2))
    torch.testing.assert_close(w.kept(), torch.arange(12.0).view(3, 1, 2, 2))
    w.close()
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.arange(20.0, dtype=np.float32).reshape(5, 1, 2, 2))
    short = SampleWriter(3, (2,), "points")
    short.add(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="2 of 3"):
        short.close()


def test_evaluate_streams_features_with_bounded_pieces(app, tmp_path):
    from test_evaluate import random_net_digits

    from gflowzoo.data import DataHandle
    from gflowzoo.evaluate import Evaluator

    random_net_digits()
    run = _trained(app, tmp_path)
    from gflowzoo.cli import load_run

    _, method, _ = load_run(run)
    ev = Evaluator(DataHandle("digits"), ["kid", "fid"], n=450, seed=1, ref_n=500)
    ev.sample_piece, ev.keep_images = 200, 64
    assert ev.streams_features()
    res = ev.evaluate_method(method)
    assert Recording.calls == [200, 200, 50]
    assert res.samples.shape == (64, 1, 8, 8) and res.protocol["n"] == 450
    assert res.protocol["sampler"]["samples_per_call"] == 200
    # the same samples evaluated all at once
    g = torch.Generator().manual_seed(1)
    x = torch.cat([method.sample(k, g) for k in (200, 200, 50)])
    direct = Evaluator(DataHandle("digits"), ["kid", "fid"], n=450, seed=1, ref_n=500).evaluate_samples(x)
    assert res.values == pytest.approx(direct.values, rel=1e-6, abs=1e-9)
    torch.testing.assert_close(res.samples, x[:64])
