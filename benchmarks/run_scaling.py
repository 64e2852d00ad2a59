"""``boundprop run`` scaling: the shared VNN-COMP suite with 1 and 2 local workers and on a
2-worker Dask ``LocalCluster``, measured in one run on this machine.

    python benchmarks/run_scaling.py [--timeout 20] [--trivial 40] [--no-dask]

Suite: the 26 instances of ``../shared/vnncomp2021`` (those of
``benchmarks/vnncomp_verdicts.py``), each with ``--timeout`` seconds (default 20: the two
ResNet instances run to it, every other one is decided in 0–8 s); CPU-bound jobs. Per executor:
wall time, jobs/s, speed-up over 1 worker, and whether the verdicts are the same as with 1
worker. Overhead per job: a suite of ``--trivial`` jobs that compute for milliseconds (the
``test_nano`` instance, each with its own timeout so that no two share a key), wall time per
job minus the job's own seconds. Writes ``benchmarks/results/run_scaling.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vnncomp_verdicts import INSTANCES, VNN  # noqa: E402

from boundprop.runner import RunOptions, run_suite  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "run_scaling.json"


def _suite(folder: Path, lines: list[str], name: str) -> Path:
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _measure(suite: Path, folder: Path, label: str, options: RunOptions) -> dict:
    t0 = time.perf_counter()
    report = run_suite(str(suite), str(folder / f"{label}.csv"), options)
    wall = time.perf_counter() - t0
    job_s = sum(float(r["seconds"]) for r in report.rows)
    return {"executor": report.executor, "jobs": len(report.rows), "wall_s": round(wall, 2),
            "jobs_per_s": round(len(report.rows) / wall, 3), "job_seconds": round(job_s, 2),
            "verdicts": [r["result"] for r in report.rows], "summary": report.summary}


def _executors(workers_cluster) -> list[tuple[str, RunOptions]]:
    runs = [("1 worker", RunOptions(workers=1, resume=False)),
            ("2 workers", RunOptions(workers=2, resume=False))]
    if workers_cluster is not None:
        runs.append(("Dask LocalCluster, 2 workers",
                     RunOptions(cluster=workers_cluster, resume=False)))
    return runs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per instance")
    ap.add_argument("--trivial", type=int, default=40, help="jobs of the overhead suite")
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()
    if not VNN.is_dir():
        raise SystemExit("../shared/vnncomp2021 is absent")
    cluster = None
    if not args.no_dask:
        try:
            from boundprop.runner.dask_pool import local_cluster

            cluster = local_cluster(2)
        except Exception as e:  # noqa: BLE001 - the extra is optional: say so and go on
            print(f"no Dask LocalCluster ({e}); local pools only")
    folder = Path(tempfile.mkdtemp(prefix="run_scaling-"))
    suite = _suite(folder, [f"{VNN / m},{VNN / p},{args.timeout:g}" for m, p in INSTANCES],
                   "instances.csv")
    nano = (VNN / "test/test_nano.onnx", VNN / "test/test_nano.vnnlib")
    trivial = _suite(folder, [f"{nano[0]},{nano[1]},{60 + k}" for k in range(args.trivial)],
                     "trivial.csv")
    rows = []
    try:
        for label, options in _executors(cluster):
            key = label.replace(" ", "_").replace(",", "")
            cpu = _measure(suite, folder, f"cpu_{key}", options)
            light = _measure(trivial, folder, f"trivial_{key}", options)
            slots = 2 if "2" in label else 1
            cpu["overhead_per_job_s"] = round(
                (light["wall_s"] * slots - light["job_seconds"]) / light["jobs"], 4)
            cpu["label"] = label
            rows.append(cpu)
            print(f"{label}: {cpu['wall_s']} s, {cpu['jobs_per_s']} jobs/s, overhead "
                  f"{cpu['overhead_per_job_s']} s/job", flush=True)
    finally:
        if cluster is not None:
            cluster.close()
    base = rows[0]
    print("\n| executor | wall s | jobs/s | speed-up | overhead per job | same verdicts |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r["speedup"] = round(r["jobs_per_s"] / base["jobs_per_s"], 2)
        r["same_verdicts"] = r["verdicts"] == base["verdicts"]
        print(f"| {r['label']} | {r['wall_s']} | {r['jobs_per_s']} | {r['speedup']}× | "
              f"{r['overhead_per_job_s'] * 1000:.0f} ms | {r['same_verdicts']} |")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"timeout": args.timeout, "instances": len(INSTANCES),
                               "runs": rows}, indent=1) + "\n")
    return 0 if all(r["same_verdicts"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
