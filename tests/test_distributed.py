"""Multi-process training and sampling (:mod:`gflowzoo.distributed`).

In one process every helper is the identity. Two processes: one ``torchrun`` launch (gloo, CPU) runs this file as a
worker (see ``_worker``), which checks the differentiable collectives against closed forms and the error agreement,
then drives the real CLI in-process on a tiny DMMD toy run: train 3 steps, resume to 5, a refused second start,
``sample`` and ``evaluate``. The tests compare those files with one process at the same global batch.

Equivalence tolerance (float32, Adam, lr 1e-3): parameters, EMA and Adam moments within 2e-5 absolute (measured:
below 1e-6), logged losses within 1e-5 relative.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gflowzoo import distributed as dist
from gflowzoo.errors import UserError

# -- one process ------------------------------------------------------------------------------------------------


def test_helpers_are_the_identity_in_one_process():
    assert not dist.launched() and dist.world() == 1 and dist.rank() == 0 and dist.is_main()
    x = torch.randn(3, 2, requires_grad=True)
    assert dist.gather_cat(x) is x and dist.all_reduce_sum(x) is x
    assert dist.any_flags(True, False, True, main_only=(2,)) == (True, False, True)
    assert dist.on_main(lambda: 7) == 7 and dist.agree(lambda: 8) == 8
    assert dist.broadcast_object({"a": 1}) == {"a": 1}
    p = torch.nn.Parameter(torch.ones(2))
    p.grad = torch.full((2,), 3.0)
    dist.sum_gradients([p])
    dist.average_gradients([p])
    assert p.grad.tolist() == [3.0, 3.0]
    with dist.session() as active:  # nothing to join without torchrun
        assert active is False


def test_shard_sizes_and_seeds():
    for n in (0, 1, 5, 64, 1001):
        for w in (1, 2, 3, 8):
            sizes = dist.shard_sizes(n, w)
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert dist.shard_seed(5, 0, 1) == 5
    seeds = {dist.shard_seed(s, r, 4) for s in range(3) for r in range(4)}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)
    assert dist.shard_seed(5, 1, 2) == dist.shard_seed(5, 1, 8)  # a rank's stream does not depend on the world size


def test_sample_shards_in_one_process_is_method_sample():
    class M:
        def sample(self, n, generator):
            return torch.randn(n, 2, generator=generator)

    assert torch.equal(dist.sample_shards(M(), 5, 3), torch.randn(5, 2, generator=torch.Generator().manual_seed(3)))


def test_unsupported_method_is_refused_only_with_several_processes(monkeypatch):
    class Plain:
        trainable = True

    dist.check_support(Plain(), "plain")  # one process: fine
    monkeypatch.setattr(dist, "world", lambda: 2)
    with pytest.raises(UserError, match="does not support multi-process training"):
        dist.check_support(Plain(), "plain")
    Plain.supports_distributed = True
    dist.check_support(Plain(), "plain")


# -- two processes ----------------------------------------------------------------------------------------------

#: the per-rank configuration; one process uses twice every count (n_clean, n_noisy, gp_samples, flow_samples)
TOY = ['kernel="linear"', 'width_prior="none"', "learn_width=true", "width_init=0.0", "backbone.input_skip=0.0",
       "backbone.width=16", "backbone.depth=1", "feature_dim=8", "groups=2", "lambda_flow=0.5", "diag_every=0",
       "stats_samples=64", "sampler.levels=2", "sampler.steps_per_level=1", "sampler.particles=8", "sampler.n_ref=8",
       'sampler.step_schedule="auto"', "sampler.step_size=0.0", "run.log_every=1", "run.grid_size=8",
       "run.checkpoint_every=3"]
PER_RANK = {"n_clean": 4, "n_noisy": 3, "gp_samples": 2, "flow_samples": 2}


def _sets(scale: int) -> list[str]:
    out = []
    for s in TOY + [f"{k}={v * scale}" for k, v in PER_RANK.items()]:
        out += ["--set", s]
    return out


def _train_args(out: Path, steps: int, scale: int, resume: bool = False) -> list[str]:
    args = ["train", "dmmd", "--out", str(out), "--steps", str(steps), "--no-progress", "--device", "cpu"]
    if resume:
        return args + ["--resume"]
    return args + ["--dataset", "toy-8gaussians", "--preset", "cpu-quick", *_sets(scale)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], tmp: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 ARGS`` with the dmmd plugin, one thread per process."""
    env = dict(os.environ)
    env.update(GFLOWZOO_LOAD_PLUGINS="dmmd", GFLOWZOO_THREADS="1", OMP_NUM_THREADS="1", COLUMNS="200",
               GFLOWZOO_DIST_TIMEOUT="3")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(free_port()), *args]
    return subprocess.run(cmd, env=env, cwd=tmp, capture_output=True, text=True, timeout=timeout)


def _worker(out: Path) -> None:
    """Runs on each of 2 ranks: collectives against closed forms, error agreement, then the CLI."""
    from gflowzoo.cli import main
    from gflowzoo.errors import ConfigError

    torch.set_num_threads(1)
    assert dist.init()
    r, w = dist.rank(), dist.world()
    res: dict = {"rank": r, "world": w}
    # gather: y = [x_0; x_1]; loss_r = <c_r, y>; rank r's x receives sum_r' c_r'[r]
    x = torch.tensor([r + 1.0, 2.0 * r + 1.0], requires_grad=True)
    y = dist.gather_cat(x[None], 0)
    c = torch.arange(4.0).view(2, 2) * (r + 1)
    (c * y).sum().backward()
    res["gather"], res["gather_grad"] = y.tolist(), x.grad.tolist()
    # all-reduce with a second derivative: s = sum_r z_r^2, L = w_r * sum(s); g = dL_total/dz_r = 2 z_r sum_r' w_r';
    # then sum(g^2) summed over ranks is 4 (sum w)^2 sum_r |z_r|^2, whose gradient at z_r is 8 (sum w)^2 z_r
    z = torch.tensor([r + 0.5, -1.0], requires_grad=True)
    s = dist.all_reduce_sum(z.square())
    (g,) = torch.autograd.grad((s * (r + 1.0)).sum(), z, create_graph=True)
    g.square().sum().backward()
    res["reduce_first"], res["reduce_second"] = g.tolist(), z.grad.tolist()
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), float(r + 1))
    dist.average_gradients([p])
    res["avg_grad"] = p.grad.tolist()
    res["flags"] = dist.any_flags(r == 1, False, r == 1, main_only=(2,))
    res["bcast"] = dist.broadcast_object({"t": torch.tensor([float(r)])} if r == 0 else None)["t"].tolist()

    def fail_on_1():
        if r == 1:
            raise UserError("boom")
        return r

    for name, fn in (("agree", lambda: dist.agree(fail_on_1)),
                     ("on_main", lambda: dist.on_main(lambda: (_ for _ in ()).throw(ConfigError("bad key"))))):
        try:
            fn()
            res[name] = None
        except UserError as exc:
            res[name] = [type(exc).__name__, str(exc), bool(getattr(exc, "quiet", False))]
    dist.barrier()

    codes = {}
    for key, args in (
        ("train", _train_args(out / "run", 3, 1)),
        ("resume", _train_args(out / "run", 5, 1, resume=True)),
        ("again", _train_args(out / "run", 5, 1)),
        ("sample", ["sample", str(out / "run"), "--n", "5", "--seed", "3", "--raw", str(out / "s.pt")]),
        ("evaluate", ["evaluate", str(out / "run"), "--n", "20", "--metrics", "mmd", "--seed", "4", "--json"]),
    ):
        try:
            main(args)
            codes[key] = 0
        except SystemExit as exc:
            codes[key] = exc.code or 0
    res["codes"] = codes
    (out / f"rank{r}.json").write_text(json.dumps(res))
    dist.shutdown()


@pytest.fixture(scope="module")
def two_procs(tmp_path_factory):
    pytest.importorskip("gflowzoo_dmmd")
    tmp = tmp_path_factory.mktemp("dist")
    proc = torchrun([str(Path(__file__).resolve()), "--worker", str(tmp)], tmp)
    ranks = [json.loads((tmp / f"rank{r}.json").read_text()) if (tmp / f"rank{r}.json").exists() else None
             for r in range(2)]
    assert proc.returncode == 0 and all(ranks), proc.stdout[-4000:] + proc.stderr[-4000:]
    return tmp, ranks, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def one_proc(tmp_path_factory):
    """The same run in one process with the global batch (twice every per-rank count), 5 steps straight."""
    pytest.importorskip("gflowzoo_dmmd")
    from typer.testing import CliRunner

    from gflowzoo.cli import app
    from gflowzoo.testing import plugins_loaded

    tmp = tmp_path_factory.mktemp("one")
    with plugins_loaded("dmmd"):
        res = CliRunner().invoke(app, _train_args(tmp / "run", 5, 2))
    assert res.exit_code == 0, res.output
    return tmp


def _assert_close_states(a, b, path="", tol=2e-5):
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            _assert_close_states(a[k], b[k], f"{path}/{k}", tol)
    elif isinstance(a, (list, tuple)):
        for i, (u, v) in enumerate(zip(a, b)):
            _assert_close_states(u, v, f"{path}[{i}]", tol)
    elif isinstance(a, torch.Tensor):
        assert a.shape == b.shape, path
        if a.is_floating_point():
            assert float((a.double() - b.double()).abs().max()) <= tol, path
        else:
            assert torch.equal(a, b), path
    else:
        assert a == b, path


@pytest.mark.slow
def test_collectives_match_closed_forms(two_procs):
    _, ranks, _ = two_procs
    for r, res in enumerate(ranks):
        assert res["world"] == 2 and res["rank"] == r
        assert res["gather"] == [[1.0, 1.0], [2.0, 3.0]]
        c = [torch.arange(4.0).view(2, 2) * (q + 1) for q in range(2)]
        assert res["gather_grad"] == (c[0][r] + c[1][r]).tolist()  # summed over both ranks' losses
        zr = torch.tensor([r + 0.5, -1.0])
        assert res["reduce_first"] == pytest.approx((2 * zr * 3).tolist())  # sum of (r+1) over ranks = 3
        assert res["reduce_second"] == pytest.approx((8 * 9 * zr).tolist())
        assert res["avg_grad"] == [1.5, 1.5, 1.5]
        assert res["flags"] == [True, False, False]  # rank 1's third flag is not rank 0's clock
        assert res["bcast"] == [0.0]
        # one failing rank stops all; rank 0 prints (not quiet), the others exit quietly with the same error
        assert res["agree"] == ["UserError", "boom" if r == 1 else "[rank 1] boom", r == 1]
        assert res["on_main"] == ["ConfigError", "bad key", r == 1]


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_global_batch(two_procs, one_proc):
    from gflowzoo.runs import RunDir, load_checkpoint

    tmp2, ranks, output = two_procs
    tmp1 = one_proc
    assert [res["codes"]["train"] for res in ranks] == [0, 0] and [res["codes"]["resume"] for res in ranks] == [0, 0]
    two, one = RunDir(tmp2 / "run"), RunDir(tmp1 / "run")
    # rank 0 alone wrote: one config, one log line per step (the resume truncated nothing and added 4 and 5)
    records = two.read_metrics()
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    for a, b in zip(records, one.read_metrics()):
        for key in ("loss", "mmd2", "gp", "l2", "grad_norm", "flow"):
            assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-7), (a["step"], key)
    assert [p.name for p in two.checkpoints()] == ["step-00000003.pt", "step-00000005.pt"]
    for step in (3, 5):
        a = load_checkpoint(two.checkpoint_dir / f"step-{step:08d}.pt")
        b = load_checkpoint(one.checkpoint_dir / f"step-{step:08d}.pt")
        assert a["rng"]["generator"].equal(b["rng"]["generator"])  # the same data stream
        for key in ("backbone", "ema_backbone", "opt", "step"):
            _assert_close_states(a["state"][key], b["state"][key], key)
    # one final grid (the `sample` command of the worker added its own PNG afterwards)
    assert sorted(p.name for p in two.samples_dir.iterdir()) == ["final.png", "sample-seed3.png"]
    assert output.count("done: 3 steps") == 1 and output.count("done: 5 steps") == 1
    assert "resuming" in output and "2 processes (cpu)" in output


@pytest.mark.slow
def test_a_refused_start_stops_every_rank_and_is_reported_once(two_procs):
    _, ranks, output = two_procs
    assert [res["codes"]["again"] for res in ranks] == [2, 2]
    assert output.count("already exists and is not empty") == 1


@pytest.mark.slow
def test_sampling_and_evaluation_are_sharded(two_procs):
    from gflowzoo.cli import load_run
    from gflowzoo.evaluate import Evaluator
    from gflowzoo.testing import plugins_loaded

    tmp2, ranks, _ = two_procs
    assert [res["codes"]["sample"] for res in ranks] == [0, 0]
    assert [res["codes"]["evaluate"] for res in ranks] == [0, 0]
    with plugins_loaded("dmmd"):
        _, method, _ = load_run(tmp2 / "run")

        def shards(n, seed):  # rank r draws its share with seed shard_seed(seed, r, 2); rank 0 keeps rank order
            return torch.cat([method.sample(k, torch.Generator().manual_seed(dist.shard_seed(seed, r, 2)))
                              for r, k in enumerate(dist.shard_sizes(n, 2))])

        assert torch.allclose(torch.load(tmp2 / "s.pt"), shards(5, 3), atol=1e-5)
        expected = Evaluator(method.data, ["mmd"], n=20, seed=4).evaluate_samples(shards(20, 4)).values
    files = list((tmp2 / "run").glob("eval-*.json"))
    assert len(files) == 1  # written once, by rank 0
    result = json.loads(files[0].read_text())
    assert result["protocol"]["n"] == 20
    assert result["values"]["mmd"] == pytest.approx(expected["mmd"], rel=1e-5, abs=1e-7)


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker(Path(sys.argv[2]))
