"""The driver of ``boundprop run``: the suite's jobs to an executor, their results to a file.

Jobs are dispatched in suite order, at most as many at a time as the executor has slots (so a
killed driver has few jobs in flight, and a job that reads another's output waits for it); each
job's key (:func:`~boundprop.runner.suite.job_key`) is taken when it is dispatched, and a job
whose key the results already hold is skipped. Each finished job is written at once.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass

from boundprop.runner.pools import InProcess, LocalPool, Task
from boundprop.runner.results import ResultsFile, outcome_fields, summary
from boundprop.runner.suite import Job, job_key, read_suite
from boundprop.safe_io import write_atomic

DEFAULT_TIMEOUT_S = 3600.0


@dataclass
class RunOptions:
    """How to run a suite (``boundprop run``'s options)."""

    workers: int = 1
    scheduler: str | None = None
    cluster: object = None  # a running Dask LocalCluster (tests, benchmarks)
    resume: bool = True
    json_path: str | None = None
    memory_mb: int | None = None
    timeout: float = DEFAULT_TIMEOUT_S
    grace: float = 10.0
    shared_paths: bool = False
    retry_errors: bool = False
    progress: bool | None = None


@dataclass
class RunReport:
    """What a run did: its rows (every job of the results file), counts and times."""

    rows: list[dict]
    summary: dict
    ran: int
    skipped: int
    wall_s: float
    executor: str


def hard_limit(job: Job, options: RunOptions) -> float:
    """Seconds after which a job is killed: its budget plus the grace (10% of the budget
    more: the verifier ends its bounding round before it stops)."""
    budget = job.timeout if job.timeout is not None else options.timeout
    return budget + options.grace + 0.1 * budget


def make_executor(options: RunOptions):
    if options.scheduler is not None or options.cluster is not None:
        from boundprop.runner.dask_pool import DaskPool  # lazy: the optional Dask extra

        return DaskPool(options.scheduler, options.cluster, options.memory_mb,
                        options.shared_paths)
    if options.workers == 0:
        return InProcess()
    return LocalPool(options.workers, options.memory_mb)


def _task(job: Job, key: str, files_dir: str, options: RunOptions) -> tuple[Task, str | None]:
    """The job's command line with its result file (VNN-COMP result, certificate) added."""
    argv = list(job.argv)
    artifact = None
    if job.command == "verify":
        artifact = os.path.join(files_dir, f"{job.index:04d}-{key[:8]}.result")
    elif job.command == "certify" and "--vnnlib" not in argv:
        artifact = job.out or os.path.join(files_dir, f"{job.index:04d}-{key[:8]}.cert.json")
    if artifact is not None:
        argv += ["-o", artifact]
    return Task(argv, hard_limit(job, options), list(job.inputs),
                [artifact] if artifact else []), artifact


class _Bar:
    """tqdm's bar with ETA on a terminal (or when asked), nothing otherwise."""

    def __init__(self, total: int, show: bool) -> None:
        self.bar = None
        if show:
            from tqdm import tqdm  # lazy: only a terminal run shows a bar

            self.bar = tqdm(total=total, unit="job", file=sys.stderr, dynamic_ncols=True)

    def update(self, result: str | None = None) -> None:
        if self.bar is not None:
            if result:
                self.bar.set_postfix_str(result, refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_suite(suite: str, results: str, options: RunOptions) -> RunReport:
    """Run every job of ``suite`` not yet in ``results``; see :mod:`boundprop.runner`."""
    start = time.perf_counter()
    jobs = read_suite(suite)
    for job in jobs:  # a job without a budget gets --timeout's (and it keys the job)
        if job.timeout is None and not job.error:
            job.timeout = options.timeout
            if job.command == "verify":
                job.argv += ["--timeout", repr(float(options.timeout))]
    made = {os.path.realpath(j.out) for j in jobs if j.out}  # outputs later jobs read
    protect = [suite] + [p for j in jobs for p in j.inputs if os.path.realpath(p) not in made]
    store = ResultsFile(results, options.json_path, options.resume, protect)
    files_dir = os.path.splitext(results)[0] + ".files"
    show = options.progress if options.progress is not None else sys.stderr.isatty()
    bar = _Bar(len(jobs), show)
    executor = make_executor(options)
    digests: dict[str, str] = {}
    pending, running, done_index = list(jobs), {}, set()
    ran = skipped = 0

    def record(job: Job, key: str, fields: dict) -> None:
        store.add(job, key, fields)
        done_index.add(job.index)
        bar.update(fields.get("result"))

    try:
        while pending or running:
            for job in _ready(pending, done_index, running, executor.slots):
                pending.remove(job)
                key = job_key(job, digests)
                prior = store.rows.get(key)
                if prior is not None and not (options.retry_errors
                                              and prior["result"] == "error"):
                    skipped += 1
                    done_index.add(job.index)
                    bar.update()
                elif job.error:
                    record(job, key, {"result": "error", "error": job.error})
                    ran += 1
                else:
                    os.makedirs(files_dir, exist_ok=True)
                    task, artifact = _task(job, key, files_dir, options)
                    running[executor.submit(task)] = (job, key, task, artifact)
            if not running:
                continue
            finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                job, key, task, artifact = running.pop(fut)
                reply = fut.result()
                fields = outcome_fields(job, reply, task.hard_limit)
                fields["artifact"] = _keep_artifact(reply, artifact, results, protect)
                record(job, key, fields)
                ran += 1
    finally:
        executor.close()
        bar.close()
    rows = store.ordered()
    if not store.rows:  # every job skipped into an empty file: still leave a results file
        store.write()
    return RunReport(rows, summary(rows), ran, skipped, time.perf_counter() - start,
                     executor.name)


def _ready(pending: list[Job], done_index: set[int], running: dict, slots: int) -> list[Job]:
    """Pending jobs to dispatch now: in order, those whose producers are done, up to the free
    slots (a job whose producer never runs — a cycle — is released once nothing else can)."""
    free = slots - len(running)
    out = []
    for job in pending:
        if len(out) >= free:
            break
        if all(i in done_index for i in job.options.get("after", ())):
            out.append(job)
    if not out and not running and pending:
        out = [pending[0]]
    return out


def _keep_artifact(reply: dict, artifact: str | None, results: str, protect: list[str]) -> str:
    """Write a file a remote worker sent back; the artifact's path relative to the results."""
    if artifact is None:
        return ""
    data = reply.get("artifacts", {}).get(artifact)
    if data is not None:
        write_atomic(artifact, data, "job artifact", protect)
    if not os.path.exists(artifact):
        return ""
    return os.path.relpath(artifact, os.path.dirname(os.path.abspath(results)))
