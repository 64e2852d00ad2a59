"""The batch runner, ``boundprop run``: same answers however jobs run, nothing lost when the
driver is killed, hung / memory-hungry / crashing jobs recorded, bad suite lines reported."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from boundprop.cli import main
from boundprop.runner import RunOptions, read_suite, run_suite
from boundprop.runner.results import COLUMNS
from boundprop.runner.sandbox import PLANTS_ENV

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
SHARED_TEST = ROOT.parent / "shared" / "vnncomp2021" / "test"


def _prop(path: Path, threshold: str) -> Path:
    """A VNN-LIB property of the 8-input shipped MLPs: inputs in [-0.1, 0.1], unsafe when
    Y_0 ≥ threshold (1e6: unreachable, unsat; -1e6: always, sat)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(8)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(4)]
    lines += [f"(assert (<= X_{i} 0.1))\n(assert (>= X_{i} -0.1))" for i in range(8)]
    lines.append(f"(assert (>= Y_0 {threshold}))")
    path.write_text("\n".join(lines) + "\n")
    return path


def _rel(path: Path, folder: Path) -> str:
    return os.path.relpath(path, folder)


def _suite(tmp: Path, jobs: list[dict]) -> Path:
    suite = tmp / "jobs.jsonl"
    suite.write_text("".join(json.dumps(j) + "\n" for j in jobs))
    return suite


def _mixed_jobs(tmp: Path) -> list[dict]:
    unsat, sat = _prop(tmp / "unsat.vnnlib", "1e6"), _prop(tmp / "sat.vnnlib", "-1e6")
    jobs = []
    for name in ("mlp_relu", "mlp_tanh"):
        model = _rel(MODELS / f"{name}.onnx", tmp)
        jobs += [{"command": "verify", "model": model, "property": "unsat.vnnlib",
                  "timeout": 30},
                 {"command": "verify", "model": model, "property": "sat.vnnlib",
                  "timeout": 30},
                 {"command": "certify", "model": model, "norm": "2",
                  "out": f"{name}.cert.json"},
                 {"command": "check", "certificate": f"{name}.cert.json", "model": model}]
    assert unsat.exists() and sat.exists()
    return jobs


def _answers(rows: list[dict]) -> list[tuple]:
    return [(r["index"], r["command"], r["result"], r["lipschitz"], r["error"]) for r in rows]


def _read(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == COLUMNS
        return list(reader)


def test_same_answers_in_process_and_on_two_workers(tmp_path):
    suite = _suite(tmp_path, _mixed_jobs(tmp_path))
    seq = run_suite(str(suite), str(tmp_path / "seq.csv"), RunOptions(workers=0))
    par = run_suite(str(suite), str(tmp_path / "par.csv"), RunOptions(workers=2))
    assert [r["result"] for r in seq.rows] == ["unsat", "sat", "certified", "valid"] * 2
    assert _answers(seq.rows) == _answers(par.rows)
    assert len({r["worker"] for r in par.rows}) == 2  # both workers took jobs
    # the check jobs ran after the certify jobs whose certificates they read
    assert (tmp_path / "mlp_relu.cert.json").exists()
    text = (tmp_path / par.rows[1]["artifact"]).read_text()
    assert text.startswith("sat\n(\n(X_0 ")  # the VNN-COMP result file with the witness
    again = run_suite(str(suite), str(tmp_path / "par.csv"), RunOptions(workers=2))
    assert (again.ran, again.skipped) == (0, 8)  # resume: every job already recorded


def test_same_answers_on_a_dask_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    from boundprop.runner.dask_pool import local_cluster

    suite = _suite(tmp_path, _mixed_jobs(tmp_path))
    seq = run_suite(str(suite), str(tmp_path / "seq.csv"), RunOptions(workers=0))
    with local_cluster(2) as cluster:
        shipped = run_suite(str(suite), str(tmp_path / "dask.csv"),
                            RunOptions(cluster=cluster))
        shared = run_suite(str(suite), str(tmp_path / "shared.csv"),
                           RunOptions(cluster=cluster, shared_paths=True))
        status = main(["run", str(suite), "-o", str(tmp_path / "cli.csv"), "--quiet",
                       "--scheduler", cluster.scheduler_address])
    assert status == 0
    assert _answers(seq.rows) == _answers(shipped.rows) == _answers(shared.rows) \
        == _answers(_read(tmp_path / "cli.csv"))
    # by content, the certificate and result files came back from the workers
    assert all((tmp_path / r["artifact"]).exists() for r in shipped.rows if r["artifact"])


def test_dask_worker_death_reschedules_the_job_once(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    from boundprop.runner.dask_pool import local_cluster

    monkeypatch.setenv(PLANTS_ENV, "1")
    model = "model.onnx"  # the plant leaves model.onnx.killed beside it: a copy in tmp_path
    shutil.copy(MODELS / "mlp_relu.onnx", tmp_path / model)
    suite = _suite(tmp_path, [{"command": "plant-kill-parent-once", "model": model},
                              {"command": "certify", "model": model}])
    with local_cluster(2) as cluster:
        report = run_suite(str(suite), str(tmp_path / "r.csv"),
                           RunOptions(cluster=cluster, shared_paths=True, timeout=60))
    # the first attempt killed its Dask worker; the scheduler ran the job again
    assert [r["result"] for r in report.rows] == ["ok", "certified"]
    assert (tmp_path / f"{model}.killed").exists()


def test_hung_memory_hungry_and_crashing_jobs_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv(PLANTS_ENV, "1")
    model = _rel(MODELS / "mlp_relu.onnx", tmp_path)
    suite = _suite(tmp_path, [
        {"command": "plant-sleep", "model": model, "timeout": 1},
        {"command": "plant-allocate", "model": model},
        {"command": "plant-crash", "model": model},
        {"command": "plant-shared-allocate", "model": model},
        {"command": "certify", "model": model}])
    report = run_suite(str(suite), str(tmp_path / "r.csv"),
                       RunOptions(workers=1, grace=1, memory_mb=400))
    rows = {r["command"]: r for r in report.rows}
    assert rows["plant-sleep"]["result"] == "timeout"
    assert "hard limit" in rows["plant-sleep"]["error"]
    assert float(rows["plant-sleep"]["seconds"]) < 10
    assert rows["plant-allocate"]["result"] == "error"
    assert "out of memory" in rows["plant-allocate"]["error"]
    assert rows["plant-crash"]["result"] == "error"
    assert "died" in rows["plant-crash"]["error"] and "signal 9" in rows["plant-crash"]["error"]
    # shared memory escapes RLIMIT_DATA: the resident-size watchdog kills the worker
    assert rows["plant-shared-allocate"]["result"] == "error"
    assert "memory limit" in rows["plant-shared-allocate"]["error"]
    assert rows["certify"]["result"] == "certified"  # the replaced worker ran the rest
    assert float(rows["certify"]["lipschitz"]) > 0


def test_bad_suite_lines_are_reported_per_job(tmp_path):
    (tmp_path / "p.vnnlib").write_text("(declare-const X_0 Real)\n")
    _prop(tmp_path / "ok.vnnlib", "1e6")
    model = _rel(MODELS / "mlp_relu.onnx", tmp_path)
    suite = tmp_path / "instances.csv"
    suite.write_text(f"{model},ok.vnnlib,30\n"
                     f"{model},ok.vnnlib\n"                # missing column
                     "missing.onnx,ok.vnnlib,30\n"          # missing model
                     f"{model},p.vnnlib,30\n"              # property of another model
                     f"{model},ok.vnnlib,soon\n"          # bad timeout
                     f"{model},nope.vnnlib,30\n")         # missing property
    report = run_suite(str(suite), str(tmp_path / "r.csv"), RunOptions(workers=1))
    results = [r["result"] for r in report.rows]
    errors = [r["error"] for r in report.rows]
    assert results == ["unsat", "error", "error", "error", "error", "error"]
    assert "line 2" in errors[1] and "3 columns" in errors[1]
    assert "missing.onnx" in errors[2]
    assert "X_1" in errors[3] or "input" in errors[3]
    assert "line 5" in errors[4] and "timeout" in errors[4]
    assert "nope.vnnlib" in errors[5]
    assert all("\n" not in e and "Traceback" not in e for e in errors)


def test_json_suite_errors_name_the_line(tmp_path):
    model = _rel(MODELS / "mlp_relu.onnx", tmp_path)
    suite = tmp_path / "jobs.jsonl"
    suite.write_text(json.dumps({"command": "certify", "model": model}) + "\n"
                     + "{not json\n"
                     + json.dumps({"command": "prove", "model": model}) + "\n"
                     + json.dumps({"command": "certify", "model": model, "colour": 1}) + "\n"
                     + json.dumps({"command": "certify", "model": model,
                                   "set": {"linf": [0.0, 0.05]}}) + "\n")
    jobs = read_suite(str(suite))
    assert [j.error is None for j in jobs] == [True, False, False, False, True]
    assert "not JSON" in jobs[1].error and "line 2" in jobs[1].error
    assert "one of verify" in jobs[2].error
    assert "'colour'" in jobs[3].error


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "boundprop.cli", "run", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_the_driver_loses_nothing(tmp_path):
    models = ["mlp_relu", "mlp_tanh", "mlp_sigmoid", "mlp_elu", "mlp_gelu", "mlp_softplus",
              "mlp_leakyrelu", "mlp_clip", "mlp_prelu", "mlp_hardsigmoid"]
    suite = _suite(tmp_path, [{"command": "certify", "model": _rel(MODELS / f"{m}.onnx",
                                                                   tmp_path), "norm": norm}
                              for m in models for norm in ("2", "inf")])
    results = tmp_path / "r.csv"
    proc = _cli(str(suite), "-o", str(results), "--workers", "1", cwd=tmp_path)
    seen, invalid = [], []

    def watch() -> None:  # the file is valid whenever anyone reads it
        while proc.poll() is None:
            if results.exists():
                try:
                    seen.append(len(_read(results)))
                except (AssertionError, csv.Error, KeyError) as e:
                    invalid.append(repr(e))
            time.sleep(0.01)
    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 120
    while (not seen or seen[-1] < 4) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    watcher.join()
    assert not invalid
    before = _read(results)
    assert 4 <= len(before) < 20
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in before}
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:  # the worker died with its driver
        pids = {p for p in pids if _alive(p)}
        time.sleep(0.05)
    assert not pids
    rerun = _cli(str(suite), "-o", str(results), "--workers", "2", cwd=tmp_path)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    after = _read(results)
    assert len(after) == 20 and len({r["key"] for r in after}) == 20
    assert f"ran {20 - len(before)} in" in out and f"{len(before)} already recorded" in out
    kept = {r["key"]: r for r in after}
    assert all(kept[r["key"]] == r for r in before)  # the first run's rows untouched
    assert all(r["result"] == "certified" for r in after)


def test_cli_one_line_errors(tmp_path):
    proc = _cli(str(tmp_path / "nope.csv"), cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.count("\n") == 1 and "suite" in err
    suite = _suite(tmp_path, [{"command": "certify", "model": "m.onnx"}])
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    proc = _cli(str(suite), "-o", str(tmp_path / "other.csv"), cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "not a results file" in err and err.count("\n") == 1
    proc = _cli(str(suite), "--workers", "-3", cwd=tmp_path)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.count("\n") == 1


@pytest.mark.skipif(not SHARED_TEST.is_dir(), reason="../shared/vnncomp2021 absent")
def test_vnncomp_instances_csv(tmp_path):
    report = run_suite(str(SHARED_TEST / "test_instances.csv"), str(tmp_path / "r.csv"),
                       RunOptions(workers=2, json_path=str(tmp_path / "r.json")))
    assert report.summary["decided"] == 5 and report.summary["sat"] == 1
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["summary"]["vnncomp_score"] == 50 and len(doc["jobs"]) == 5
    assert [j["index"] for j in doc["jobs"]] == [1, 2, 3, 4, 5]
    assert all(isinstance(j["seconds"], float) and j["error"] is None for j in doc["jobs"])


def test_the_example_suite_runs(tmp_path):
    """examples/suite/jobs.jsonl, as a user runs it (a copy, beside a link to models/)."""
    shutil.copytree(ROOT / "examples" / "suite", tmp_path / "examples" / "suite")
    (tmp_path / "models").symlink_to(MODELS)
    suite = tmp_path / "examples" / "suite" / "jobs.jsonl"
    status = main(["run", str(suite), "--workers", "2", "--quiet"])
    rows = _read(tmp_path / "examples" / "suite" / "jobs.results.csv")
    assert status == 0
    assert [r["result"] for r in rows] == ["unsat", "sat", "certified", "valid", "ok",
                                           "certified", "certified"]


def test_option_conflicts_and_an_unreachable_scheduler(tmp_path, monkeypatch, capsys):
    suite = _suite(tmp_path, [{"command": "certify", "model": _rel(MODELS / "mlp_relu.onnx",
                                                                   tmp_path)}])
    out = str(tmp_path / "r.csv")
    for extra, words in ((["--resume", "--no-resume"], "contradict"),
                         (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers")):
        assert main(["run", str(suite), "-o", out, *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1
    pytest.importorskip("distributed")
    from boundprop.runner import dask_pool

    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT", "1s")
    assert main(["run", str(suite), "-o", out, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler" in err and err.count("\n") == 1
    assert not (tmp_path / "r.csv").exists()  # nothing half-written
