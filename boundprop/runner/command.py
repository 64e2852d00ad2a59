"""The ``boundprop run`` subcommand: a suite of jobs to its end, resumable."""

from __future__ import annotations

import argparse
import math
import os
import sys

from boundprop.cli_args import add_progress_args, count_type
from boundprop.errors import BoundpropError
from boundprop.runner.drive import DEFAULT_TIMEOUT_S, RunOptions, run_suite
from boundprop.runner.results import summary_line
from boundprop.safe_io import resolve_output_path, short_path

EPILOG = """examples:
  boundprop run ../shared/vnncomp2021/test/test_instances.csv -o results.csv
  boundprop run jobs.jsonl -o results.csv --workers 2 --json
  boundprop run instances.csv -o results.csv --scheduler tcp://head:8786

SUITE: a VNN-COMP instances.csv (onnx,vnnlib,timeout per line, paths relative to it: verify
jobs) or JSON lines, one job per line, paths relative to the suite file:
  {"command": "verify", "model": "m.onnx", "property": "p.vnnlib", "timeout": 60}
  {"command": "certify", "model": "m.onnx", "set": {"linf": ["x.npy", 0.03]}, "norm": "2",
   "out": "m.cert.json"}
  {"command": "check", "certificate": "m.cert.json", "model": "m.onnx"}
  {"command": "audit", "certificate": "m.cert.json", "model": "m.onnx"}
(set: "default", "global", {"box": [lo, hi]}, {"linf": [x, eps], "clip": [lo, hi]},
{"l2": [x, r]} or {"vnnlib": path}; "args": [extra command-line options]).

RESULTS (CSV; --json adds RESULTS.json) gets one row per job as it ends: the result (sat,
unsat, unknown, timeout, certified, valid, invalid, ok, violated, error), seconds, worker,
constants, the error's one line. Result files and certificates go to RESULTS.files/. A rerun
with the same RESULTS skips every job already recorded (same model, property and options, by
content); --no-resume starts over.

exit status: 0 every job has a result and none is an error, 1 some job is an error,
2 unusable suite or option, 130 interrupted (rerun to resume).
"""


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:30]}' is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"'{text[:30]}' must be a finite number > 0")
    return v


def default_memory_mb(workers: int) -> int:
    """Four fifths of the machine's memory shared among the workers."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 0
    return int(0.8 * total / max(1, workers))


def run_command(args: argparse.Namespace) -> int:
    results = args.output or os.path.splitext(args.suite)[0] + ".results.csv"
    resolve_output_path(results, "-o results", [args.suite])
    json_path = None
    if args.json:
        json_path = os.path.splitext(results)[0] + ".json"
        if os.path.abspath(json_path) == os.path.abspath(results):
            json_path = results + ".json"
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    if args.scheduler is not None and args.workers is not None:
        raise BoundpropError("--workers is for this machine; with --scheduler the cluster's "
                             "workers run the jobs: drop one of them")
    if args.resume and args.no_resume:
        raise BoundpropError("--resume and --no-resume contradict each other; give one")
    memory_mb = args.memory_mb
    if memory_mb is None and args.scheduler is None:  # a cluster's machines are not this one
        memory_mb = default_memory_mb(workers)
    options = RunOptions(
        workers=workers, scheduler=args.scheduler, resume=not args.no_resume,
        json_path=json_path, memory_mb=memory_mb,
        timeout=args.timeout, grace=args.grace, shared_paths=args.shared_paths,
        retry_errors=args.retry_errors, progress=True if args.progress else
        (False if args.quiet else None))
    try:
        report = run_suite(args.suite, results, options)
    except KeyboardInterrupt:
        print(f"boundprop: interrupted; finished jobs are in {short_path(results)}: rerun the "
              "same command to resume", file=sys.stderr)
        return 130
    print(summary_line(report.summary, report.ran, report.skipped, report.wall_s))
    print(f"results: {short_path(results)}" + (f", {short_path(json_path)}" if json_path
                                                  else ""))
    return 1 if report.summary["error"] else 0


def register(sub) -> None:
    """Add ``boundprop run`` to the CLI's subparsers."""
    p = sub.add_parser(
        "run", help="run a suite of jobs (instances.csv or JSON lines), resumable, in parallel",
        description="Run every job of a suite — a VNN-COMP instances.csv or a JSON-lines job "
        "file — on a pool of worker processes or a Dask cluster, each job with a hard time "
        "and memory limit, and record each result as it ends.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", metavar="SUITE", help="instances.csv or a .jsonl job file")
    p.add_argument("-o", "--output", metavar="RESULTS",
                   help="results CSV (default: SUITE's name with .results.csv)")
    p.add_argument("--workers", type=count_type(4096), default=None, metavar="N",
                   help="worker processes on this machine (default: one per core; 0 runs the "
                   "jobs in this process, without hard limits)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="send the jobs to the Dask scheduler at tcp://HOST:PORT "
                   "(pip install 'boundprop[distributed]')")
    p.add_argument("--shared-paths", action="store_true",
                   help="with --scheduler: every worker reads the suite's paths (a shared "
                   "file system); default: models and properties are sent by content")
    p.add_argument("--resume", action="store_true",
                   help="skip the jobs RESULTS already holds (the default when it exists)")
    p.add_argument("--no-resume", action="store_true",
                   help="start over: RESULTS is rewritten from the first finished job")
    p.add_argument("--retry-errors", action="store_true",
                   help="with resume: run again the jobs recorded as errors")
    p.add_argument("--timeout", type=_positive, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help="budget of a job that gives none (instances.csv lines give theirs); "
                   f"default {DEFAULT_TIMEOUT_S:g}")
    p.add_argument("--grace", type=_positive, default=10.0, metavar="S",
                   help="a job is killed at its budget + 10%% + S seconds (default 10)")
    p.add_argument("--memory-mb", type=_count_mb, default=None, metavar="MB",
                   help="memory limit per worker (default: 80%% of RAM / workers)")
    p.add_argument("--json", action="store_true", help="also write RESULTS.json")
    add_progress_args(p, "no progress bar")
    p.set_defaults(func=run_command)


def _count_mb(text: str) -> int:
    v = _positive(text)
    if v < 64:
        raise argparse.ArgumentTypeError(f"{v:g} MB is too little for a worker (≥ 64)")
    return int(v)

