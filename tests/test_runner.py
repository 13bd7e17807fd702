"""The run service (gflowzoo.runner): create or resume a run, the training sequence, loading a run back; that no core
module imports the CLI; and that every file of a comparison is written atomically (compare.json included)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from test_evaluate import gauss  # noqa: F401  (the test-only method "gauss")

from gflowzoo import runner
from gflowzoo.errors import CheckpointError, UserError
from gflowzoo.runs import RunDir

ROOT = Path(__file__).resolve().parents[1]
TINY = ["batch_size=8", "run.grid_size=16", "run.log_every=1"]


class Recorder(runner.Reporter):
    """A reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.said: list[str] = []
        self.warned: list[str] = []
        self.noted: list[str] = []

    def say(self, text: str) -> None:
        self.said.append(text)

    def warn(self, text: str) -> None:
        self.warned.append(text)

    def note(self, text: str) -> None:
        self.noted.append(text)


def _train(registry, out: Path, *sets: str, steps: int = 2, reporter=None):
    spec, run = runner.prepare_run(registry, "fit-gaussian", dataset="toy-8gaussians", out=out, steps=steps,
                                   sets=[*TINY, *sets])
    return spec, run, runner.train_run(registry, run, spec, progress=False, reporter=reporter)


def test_train_then_load_run(fit_registry, tmp_path):
    from gflowzoo.testing import assert_states_equal

    rec = Recorder()
    spec, run, outcome = _train(fit_registry, tmp_path / "run", reporter=rec)
    assert rec.said == [f"training fit-gaussian on toy-8gaussians ({spec.preset}) on cpu; run: {run.path}"]
    assert outcome.result.step == 2 and not outcome.result.interrupted and outcome.device == "cpu"
    assert run.read_config() == spec.to_data()
    assert Path(outcome.result.grid) == run.samples_dir / "final.png"

    spec2, method, payload = runner.load_run(run.path, registry=fit_registry)
    assert spec2.to_data() == spec.to_data()
    assert payload["checkpoint_path"] == outcome.result.checkpoint and payload["step"] == 2
    assert_states_equal(method.state_dict(), outcome.method.state_dict(), atol=0.0)


def test_a_failed_start_writes_nothing(fit_registry, tmp_path):
    """The method is built and the evaluation hook prepared before config.toml is written."""
    spec, run = runner.prepare_run(fit_registry, "fit-gaussian", dataset="toy-8gaussians", out=tmp_path / "run",
                                   steps=2, sets=TINY)

    def broken(method):
        raise UserError("no extractor")

    with pytest.raises(UserError, match="no extractor"):
        runner.train_run(fit_registry, run, spec, progress=False, evaluation=broken)
    assert not run.path.exists()


def test_prepare_run_refuses_what_would_overwrite_or_change_a_run(fit_registry, tmp_path):
    out = tmp_path / "run"
    _train(fit_registry, out)

    def refused(match: str, **kwargs) -> None:
        with pytest.raises(UserError, match=match):
            runner.prepare_run(fit_registry, "fit-gaussian", **kwargs)

    refused("already exists and is not empty. Use --resume", out=out)
    refused(r"--resume needs --out", resume=True)
    refused("Run directory not found", out=tmp_path / "none", resume=True)
    refused("cannot change that", out=out, resume=True, dataset="toy-swissroll")
    refused(r"On --resume only run\.\* keys", out=out, resume=True, sets=["batch_size=4"])
    (tmp_path / "empty").mkdir()
    refused("holds no run to continue", out=tmp_path / "empty", resume=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    refused("holds no gflowzoo run", out=mine)
    assert (mine / "notes.txt").read_text() == "the user's"

    spec, run = runner.prepare_run(fit_registry, "fit-gaussian", out=out, resume=True, steps=4, sets=["run.log_every=2"])
    assert run.path == out and spec.run.steps == 4 and spec.run.log_every == 2


def test_resume_payload_and_load_run_report_a_damaged_checkpoint(fit_registry, tmp_path):
    spec, run, _ = _train(fit_registry, tmp_path / "run", "run.checkpoint_every=1", "run.keep_checkpoints=0")
    newest = run.checkpoints()[-1]
    newest.write_bytes(b"PK\x03\x04 torn")
    rec = Recorder()
    spec, run = runner.prepare_run(fit_registry, "fit-gaussian", out=run.path, resume=True, steps=3)
    payload = runner.resume_payload(run, spec, rec)
    assert payload["step"] == 1
    assert len(rec.warned) == 1 and rec.warned[0].startswith("skipped a damaged checkpoint: ")
    assert rec.said == [f"resuming {run.path} from step 1 (step-00000001.pt)"]

    rec = Recorder()
    with runner.reporting(rec):  # the reporter of the innermost block is the default
        _, _, payload = runner.load_run(run.path, registry=fit_registry)
    assert payload["step"] == 1 and rec.warned[0].startswith("warning: skipped a damaged checkpoint: ")


def test_a_run_without_checkpoint(fit_registry, tmp_path):
    spec, run = runner.prepare_run(fit_registry, "fit-gaussian", dataset="toy-8gaussians", out=tmp_path / "run",
                                   steps=2, sets=TINY)
    run.path.mkdir()
    run.write_config(spec.to_data())  # what a run killed before its first checkpoint leaves
    rec = Recorder()
    spec, run = runner.prepare_run(fit_registry, "fit-gaussian", out=run.path, resume=True)
    assert runner.resume_payload(run, spec, rec) is None and "has no checkpoint yet" in rec.said[0]
    with pytest.raises(CheckpointError, match="has no checkpoint yet .* continue it with `gflowzoo train fit-gaussian"):
        runner.load_run(run.path, registry=fit_registry)


def _imports(path: Path, module: str) -> set[str]:
    """The modules ``path`` (module ``module``) imports, at any depth, relative imports resolved."""
    pkg = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            out |= {base} | {f"{base}.{a.name}" for a in node.names}
    return out


def test_no_core_module_imports_the_cli():
    """Only the CLI modules (cli*.py, __main__, docs_cli) may import gflowzoo.cli or gflowzoo.cli_*."""
    offenders = []
    for path in sorted((ROOT / "gflowzoo").rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parent == Path("gflowzoo") and (rel.name.startswith("cli") or rel.name in ("__main__.py", "docs_cli.py")):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for name in _imports(path, module):
            if name == "gflowzoo.cli" or name.startswith(("gflowzoo.cli.", "gflowzoo.cli_")):
                offenders.append(f"{rel}: {name}")
    assert not offenders, offenders


def test_compare_record_is_written_atomically(tmp_path, monkeypatch):
    import os

    run = RunDir(tmp_path / "run")
    run.write_compare_record({"label": "a", "status": "done"})
    assert run.read_compare_record() == {"label": "a", "status": "done"}

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        run.write_compare_record({"label": "b"})
    assert run.read_compare_record() == {"label": "a", "status": "done"}  # the old record, whole
    assert [p.name for p in run.path.iterdir()] == ["compare.json"]  # no temporary file left


def test_every_file_of_a_comparison_is_written_atomically(gauss, tmp_path, monkeypatch):  # noqa: F811
    """Every file a comparison writes (its report folder, its runs' config, checkpoints, evaluations and compare.json)
    goes through atomic_write_bytes, except the append-only metrics.jsonl."""
    import gflowzoo.report
    import gflowzoo.runs
    from gflowzoo.compare import Comparison

    written: list[Path] = []
    atomic = gflowzoo.runs.atomic_write_bytes

    def recording(path, data):
        written.append(Path(path))
        atomic(path, data)

    monkeypatch.setattr(gflowzoo.runs, "atomic_write_bytes", recording)
    monkeypatch.setattr(gflowzoo.report, "atomic_write_bytes", recording)
    out = tmp_path / "cmp"
    result = Comparison(["gauss"], dataset="toy-8gaussians", steps=10, seeds=1, out=out, eval_points=1,
                        reporter=Recorder(), progress=False).run()
    assert [r.status for r in result.records] == ["done"]
    record = out / "runs" / "gauss-seed0" / "compare.json"
    assert json.loads(record.read_text())["status"] == "done" and record in written
    files = {p for p in out.rglob("*") if p.is_file()}
    assert {f.name for f in files - set(written)} == {"metrics.jsonl"}, sorted(map(str, files - set(written)))
