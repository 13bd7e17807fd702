"""``gflowzoo compare``: same budget and seeds, one evaluation protocol, table and report, Ctrl-C, reuse."""

from __future__ import annotations

import json
import re
import statistics

import pytest
from test_evaluate import gauss, invoke  # noqa: F401  (the test-only methods "gauss" and "gauss-too", CLI helper)

from gflowzoo.compare import parse_budget
from gflowzoo.errors import UserError


def test_parse_budget():
    assert parse_budget("90s") == 1.5 and parse_budget("10m") == 10 and parse_budget("1.5h") == 90
    assert parse_budget("2") == 2
    for bad in ("soon", "-1m", "0s", "10 parsecs"):
        with pytest.raises(UserError):
            parse_budget(bad)


def test_compare_trains_evaluates_and_reports(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss", "gauss-too", "--dataset", "toy-8gaussians", "--steps", 30, "--seeds", 2,
                 "--n", 300, "--metrics", "mmd,modes", "--eval-points", 2, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    for name in ("report.md", "report.html", "results.json"):
        assert (out / name).is_file()
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["seed"], r["status"]) for r in results["runs"]] == [
        ("gauss", 0, "done"), ("gauss", 1, "done"), ("gauss-too", 0, "done"), ("gauss-too", 1, "done")]
    # one protocol for every run: the per-run evaluation files share it
    keys = set()
    for r in results["runs"]:
        ev = json.loads(open(r["eval_file"]).read())
        assert ev["values"] == r["values"] and ev["protocol"]["n"] == 300 and ev["protocol"]["seed"] == 0
        keys.add(ev["protocol_key"])
        assert r["steps"] == 30
    assert len(keys) == 1
    # the summary is the mean and sample std over seeds of the per-run numbers
    row = next(s for s in results["summary"] if s["label"] == "gauss")
    vals = [r["values"]["mmd"] for r in results["runs"] if r["method"] == "gauss"]
    assert row["metrics"]["mmd"]["mean"] == pytest.approx(statistics.mean(vals))
    assert row["metrics"]["mmd"]["std"] == pytest.approx(statistics.stdev(vals))
    assert row["runs"] == 2 and row["nfe"] == 1
    # in-training evaluations every 15 steps, logged with wall-clock time
    log = [json.loads(x) for x in (out / "runs" / "gauss-seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log if "eval/mmd" in e] == [15, 30]
    assert all(e["time"] > 0 for e in log if "eval/mmd" in e)
    # the table and the report
    assert "gauss-too" in res.output and "mmd" in res.output and "report.html" in res.output
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and not re.search(r"<img src='(?!data:)", html)
    md = (out / "report.md").read_text()
    for pic in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / pic).is_file()
    assert "Metrics during training" in md and "Losses" in md and "Samples" in md


def test_compare_unknown_method_exits_2_before_training(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss", "dmmdd", "--out", out, "--steps", 5)
    assert res.exit_code == 2 and "Unknown method 'dmmdd'" in res.output
    assert not out.exists()


def test_compare_time_budget_includes_in_training_evaluations(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss", "--dataset", "toy-moons", "--budget", "2s", "--seeds", 1, "--n", 200,
                 "--eval-points", 2, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert results["options"]["budget_minutes"] == pytest.approx(2 / 60)
    run = results["runs"][0]
    wall = run["train_seconds"] + run["eval_seconds_in_training"]  # the budget counts the evaluations
    assert 2.0 <= wall < 2.5 and run["eval_seconds_in_training"] > 0
    log = [json.loads(x) for x in (out / "runs" / "gauss-seed0" / "metrics.jsonl").read_text().splitlines()]
    evals = [e for e in log if "eval/mmd" in e]
    # one after 1 s of training, one as late as it still ends within the budget (and, where that closing one ran
    # much faster than the estimate, as on a loaded machine whose first evaluation was slow, one more that still fits)
    assert len(evals) in (2, 3) and evals[0]["time"] >= 1.0 and evals[-1]["time"] > 1.5
    assert all(e["time"] + e["eval/seconds"] <= 2.0 and e["eval/n"] == 500 for e in evals)


def test_compare_ctrl_c_keeps_finished_runs_and_writes_partial_report(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss", "gauss-ctrl-c", "--dataset", "toy-moons", "--steps", 20, "--seeds", 1,
                 "--n", 200, "--eval-points", 0, "--out", out, "--no-progress")
    assert res.exit_code == 130, res.output
    partial = json.loads((out / "results.json").read_text())
    assert partial["interrupted"] is True
    assert [(r["method"], r["status"]) for r in partial["runs"]] == [("gauss", "done"), ("gauss-ctrl-c", "interrupted")]
    assert [s["label"] for s in partial["summary"]] == ["gauss"]
    md = (out / "report.md").read_text()
    assert "Partial report" in md and "gauss-ctrl-c seed 0: interrupted" in md
    # the interrupted run kept its checkpoint (the trainer saved it at step 5)
    assert (out / "runs" / "gauss-ctrl-c-seed0" / "checkpoints" / "step-00000005.pt").is_file()


def test_compare_keeps_going_when_a_run_diverges(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    res = invoke(gauss, "compare", "gauss-nan", "gauss", "--dataset", "toy-moons", "--steps", 10, "--seeds", 1,
                 "--n", 200, "--metrics", "mmd", "--eval-points", 0, "--out", out, "--no-progress")
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["status"]) for r in results["runs"]] == [("gauss-nan", "failed"), ("gauss", "done")]
    assert "diverged" in results["runs"][0]["error"]
    assert "gauss-nan seed 0: failed" in (out / "report.md").read_text()


def test_compare_reuses_finished_runs_and_includes_given_runs(gauss, tmp_path):  # noqa: F811
    out = tmp_path / "cmp"
    args = ["compare", "gauss", "--dataset", "toy-8gaussians", "--steps", 20, "--seeds", 1, "--n", 200,
            "--eval-points", 0, "--out", out, "--no-progress"]
    assert invoke(gauss, *args).exit_code == 0
    ckpts = sorted((out / "runs" / "gauss-seed0" / "checkpoints").iterdir())
    stamp = [p.stat().st_mtime_ns for p in ckpts]
    again = invoke(gauss, *args)
    assert again.exit_code == 0 and "reusing" in again.output
    assert [p.stat().st_mtime_ns for p in sorted((out / "runs" / "gauss-seed0" / "checkpoints").iterdir())] == stamp
    # a run trained elsewhere joins the table; a changed configuration in the same --out is refused
    other = tmp_path / "other"
    assert invoke(gauss, "train", "gauss-too", "--dataset", "toy-8gaussians", "--steps", 20, "--out", other,
                  "--no-progress").exit_code == 0
    res = invoke(gauss, *args, "--runs", other)
    assert res.exit_code == 0, res.output
    results = json.loads((out / "results.json").read_text())
    assert [(r["method"], r["path"]) for r in results["runs"]][-1] == ("gauss-too", str(other))
    bad = invoke(gauss, *args, "--set", "lr=0.5")
    assert bad.exit_code == 2 and "another configuration" in bad.output
    # a config.toml written before a field existed (here: without `lr`, which then takes its default) is the same
    # configuration; the field at another value is not
    saved = out / "runs" / "gauss-seed0" / "config.toml"
    text = saved.read_text()
    assert "\nlr = " in text
    saved.write_text("\n".join(line for line in text.splitlines() if not line.startswith("lr = ")) + "\n")
    again = invoke(gauss, *args)
    assert again.exit_code == 0 and "reusing" in again.output, again.output
    saved.write_text(text.replace("\nlr = ", "\nlr = 0.25 # "))
    assert "another configuration" in invoke(gauss, *args).output
    saved.write_text(text)
    # a METHOD: prefix limits a --set to that method: for another method it changes nothing
    assert invoke(gauss, *args, "--set", "gauss-too:lr=0.5").exit_code == 0
