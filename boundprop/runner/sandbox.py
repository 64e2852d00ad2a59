"""A worker process that runs ``boundprop`` commands for the batch runner, and its driver side.

:class:`Sandbox` keeps one child process (``python -m boundprop.runner.sandbox``) and sends it
one job at a time as a JSON line; the child runs the command line through :func:`boundprop.cli.
main` with stdout and stderr captured and its loaded models kept in a small cache, and answers
with one JSON line. The driver waits at most the job's hard limit: a job that hangs is killed
with its process group and recorded as ``timeout``; a child over its memory limit gets
``MemoryError`` (``RLIMIT_DATA``: the command's one-line "out of memory" error) or, past the
resident-size watchdog, is killed and recorded as an error; a child that dies is replaced.

The child runs with numpy/BLAS and onnxruntime pinned to one thread, so N workers use N cores
rather than fighting over them, and it dies with its driver (``PR_SET_PDEATHSIG`` on Linux): a
``kill -9`` of the driver leaves no orphan computing.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import json
import mmap
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import OrderedDict

import boundprop

MEMORY_ENV = "BOUNDPROP_WORKER_MEMORY_MB"
PLANTS_ENV = "BOUNDPROP_RUNNER_PLANTS"  # test-only jobs that hang, allocate or crash
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "BOUNDPROP_THREADS")
MODEL_CACHE_SIZE = 4
WATCH_INTERVAL_S = 0.25
# Resident memory allowed above the data limit (code, mapped model files) before the watchdog
# kills the child: RLIMIT_DATA catches the allocations, the watchdog what escapes it.
RSS_MARGIN_MB = 512
TAIL_CHARS = 4000


class ModelCache(OrderedDict):
    """The last :data:`MODEL_CACHE_SIZE` loaded models (least recently used dropped)."""

    def __getitem__(self, key):
        value = super().__getitem__(key)
        self.move_to_end(key)
        return value

    def __setitem__(self, key, value) -> None:
        super().__setitem__(key, value)
        while len(self) > MODEL_CACHE_SIZE:
            self.popitem(last=False)


def run_argv(argv: list[str], cache: dict | None = None) -> dict:
    """Run ``boundprop ARGV`` in this process; its exit status, stdout, stderr and seconds."""
    from boundprop.cli import main  # the child imports the CLI once, on its first job

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv, model_cache=cache)
        except SystemExit as e:  # argparse's usage errors and --help
            status = e.code if isinstance(e.code, int) else 2
    return {"exit": status, "stdout": out.getvalue(), "stderr": err.getvalue()[-TAIL_CHARS:],
            "seconds": time.perf_counter() - start}


def _plant(argv: list[str]) -> dict:
    """Test-only jobs (``$BOUNDPROP_RUNNER_PLANTS=1``): a job that hangs, one that allocates
    without end (private memory, or shared memory the data limit does not see), one that
    kills its process, one that kills the process's parent once."""
    kind = argv[0]
    if kind == "plant-sleep":
        time.sleep(10**6)
    if kind == "plant-allocate":
        hoard = []
        try:
            while True:
                hoard.append(bytearray(64 * 2**20))
        except MemoryError:
            hoard.clear()
            return {"exit": 2, "stdout": "", "seconds": 0.0,
                    "stderr": "boundprop: error: out of memory; try a smaller model or input set"}
    if kind == "plant-shared-allocate":  # memory RLIMIT_DATA does not count: the watchdog's
        maps = []
        while True:
            block = mmap.mmap(-1, 64 * 2**20, flags=mmap.MAP_SHARED)
            block.write(b"\1" * len(block))
            maps.append(block)
    if kind == "plant-crash":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "plant-kill-parent-once":  # a Dask worker that dies mid-job, the first time
        marker = argv[1] + ".killed"
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getppid(), signal.SIGKILL)
            time.sleep(60)
        return {"exit": 0, "stdout": "{\"ok\": true}", "stderr": "", "seconds": 0.0}
    return {"exit": 2, "stdout": "", "stderr": f"boundprop: error: unknown plant {kind}",
            "seconds": 0.0}


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies (a killed driver leaves no orphan)."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _limit_memory() -> None:
    mb = int(os.environ.get(MEMORY_ENV, "0") or 0)
    if mb > 0:
        import resource  # POSIX only: imported where it is used

        limit = mb * 2**20
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def child_main() -> None:
    """The child's loop: a JSON job per line on stdin, a JSON reply per line on the protocol
    stream (the original stdout; fd 1 itself goes to /dev/null so that stray writes of native
    libraries cannot corrupt the protocol)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    _die_with_parent()
    _limit_memory()
    cache = ModelCache()
    plants = os.environ.get(PLANTS_ENV) == "1"
    for line in sys.stdin:
        spec = json.loads(line)
        argv = spec["argv"]
        if plants and argv and argv[0].startswith("plant-"):
            reply = _plant(argv)
        else:
            reply = run_argv(argv, cache)
        reply["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        proto.write(json.dumps(reply) + "\n")


def child_env(memory_mb: int | None) -> dict[str, str]:
    """The child's environment: one thread per library, the memory limit, and this boundprop
    importable (the driver may run from a source tree that is not installed)."""
    env = dict(os.environ)
    env.update({k: "1" for k in THREAD_ENV})
    env[MEMORY_ENV] = str(memory_mb or 0)
    root = os.path.dirname(os.path.dirname(os.path.abspath(boundprop.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


class Sandbox:
    """One worker child process, replaced when it dies or is killed."""

    def __init__(self, memory_mb: int | None = None) -> None:
        self.memory_mb = memory_mb
        self.proc: subprocess.Popen | None = None
        self.errors = None
        self.buffer = b""

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            if self.errors is not None:
                self.errors.close()
            # The child's own stderr (not the jobs': those are captured per job) says why a
            # worker that cannot start died.
            self.errors = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "boundprop.runner.sandbox"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self.errors,
                env=child_env(self.memory_mb), start_new_session=True)
            self.buffer = b""
        return self.proc

    def close(self) -> None:
        """Stop the child (and anything it started)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def run(self, argv: list[str], hard_limit: float | None) -> dict:
        """Run one command line in the child; the reply, or ``{"killed": why, ...}`` when it
        passed ``hard_limit`` seconds, its memory, or died."""
        proc = self._start()
        start = time.perf_counter()
        try:
            proc.stdin.write((json.dumps({"argv": argv}) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._killed("died", start)
        deadline = None if hard_limit is None else start + hard_limit
        while b"\n" not in self.buffer:
            wait = WATCH_INTERVAL_S if deadline is None else max(
                0.0, min(WATCH_INTERVAL_S, deadline - time.perf_counter()))
            ready, _, _ = select.select([proc.stdout], [], [], wait)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    return self._killed("died", start)
                self.buffer += chunk
            elif deadline is not None and time.perf_counter() >= deadline:
                return self._killed("timeout", start)
            elif self.memory_mb and _rss_mb(proc.pid) > self.memory_mb + RSS_MARGIN_MB:
                return self._killed("memory", start)
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)

    def _killed(self, why: str, start: float) -> dict:
        proc, self.proc = self.proc, None
        code = None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # the job's own children too
            code = proc.wait()
        return {"killed": why, "exit_signal": -code if code and code < 0 else None,
                "seconds": time.perf_counter() - start, "last_words": self._last_words(),
                "worker": f"{socket.gethostname()}:{proc.pid if proc else 0}"}

    def _last_words(self) -> str:
        """The last line the dead child wrote on its stderr, if any."""
        if self.errors is None:
            return ""
        with contextlib.suppress(OSError):
            self.errors.seek(0, os.SEEK_END)
            self.errors.seek(max(0, self.errors.tell() - 2000))
            lines = self.errors.read().decode("utf-8", "replace").strip().splitlines()
            return lines[-1].strip()[:300] if lines else ""
        return ""

if __name__ == "__main__":
    child_main()
