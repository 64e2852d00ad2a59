"""Jobs on a Dask cluster (``boundprop[distributed]``): ``boundprop run --scheduler ADDRESS``.

Each job is one Dask task, :func:`dask_task`, which runs the command in a worker process of its
own (a :class:`~boundprop.runner.sandbox.Sandbox` per Dask worker thread), so the hard
per-job limit and the memory limit hold on the cluster as they do locally. Models and
properties reach the workers by content unless ``shared_paths`` (every machine reads the same
paths): each distinct file is scattered once and written, by digest, to the worker's temporary
folder; the files a job writes (certificates, result files) come back in its reply.

A Dask worker that dies mid-job has the job rescheduled by the scheduler as long as its
``distributed.scheduler.allowed-failures`` permits (the runner's own :class:`LocalCluster` sets
1: once more, then the job is an error); the reply then says the worker died.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from concurrent.futures import Future

from boundprop.errors import BoundpropError
from boundprop.runner.pools import Task
from boundprop.runner.sandbox import Sandbox
from boundprop.runner.suite import file_digest

_LOCAL = threading.local()
ALLOWED_FAILURES = 1
CONNECT_TIMEOUT = "20s"  # to reach the scheduler before the one-line error


def _import_distributed():
    try:
        import distributed  # optional extra: boundprop[distributed]
    except ImportError:
        raise BoundpropError("--scheduler needs Dask: pip install 'boundprop[distributed]'"
                             ) from None
    return distributed


def _materialise(shipped: dict[str, tuple[str, bytes]]) -> dict[str, str]:
    """Write each shipped file once per worker machine, under its digest; path -> local path."""
    root = os.path.join(tempfile.gettempdir(), "boundprop-shipped")
    local = {}
    for path, (digest, data) in shipped.items():
        target = os.path.join(root, digest, os.path.basename(path))
        if not os.path.exists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        local[path] = target
    return local


def dask_task(argv: list[str], hard_limit: float | None, memory_mb: int | None,
              shipped: dict[str, tuple[str, bytes]] | None, outputs: list[str]) -> dict:
    """Run one job in this Dask worker's sandbox; files by content when ``shipped``."""
    sandbox = getattr(_LOCAL, "sandbox", None)
    if sandbox is None:
        sandbox = _LOCAL.sandbox = Sandbox(memory_mb)
    if shipped is None:
        return sandbox.run(argv, hard_limit)
    out_dir = tempfile.mkdtemp(prefix="boundprop-out-")
    try:
        here = _materialise(shipped)
        made = {p: os.path.join(out_dir, f"{k}-{os.path.basename(p)}")
                for k, p in enumerate(outputs)}
        back = {v: k for k, v in {**here, **made}.items()}
        reply = sandbox.run([here.get(a, made.get(a, a)) for a in argv], hard_limit)
        for key in ("stdout", "stderr"):  # messages name the user's paths, not the worker's
            for local, path in back.items():
                if key in reply:
                    reply[key] = reply[key].replace(local, path)
        reply["artifacts"] = {}
        for path, local in made.items():
            if os.path.exists(local):
                with open(local, "rb") as f:
                    reply["artifacts"][path] = f.read()
        return reply
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


class DaskPool:
    """The jobs go to the Dask scheduler at ``address`` (or to ``cluster``, a running
    ``LocalCluster``)."""

    def __init__(self, address: str | None = None, cluster=None, memory_mb: int | None = None,
                 shared_paths: bool = False) -> None:
        distributed = _import_distributed()
        self.distributed = distributed
        try:
            self.client = distributed.Client(cluster if cluster is not None else address,
                                             timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as e:
            raise BoundpropError(f"cannot reach the Dask scheduler {address} ({e}); start it "
                                 "with 'dask scheduler' and give its tcp://HOST:PORT") from None
        threads = sum(self.client.nthreads().values()) or 1
        self.slots = 2 * threads  # a few queued per worker: no idle gaps between jobs
        self.name = f"Dask at {self.client.scheduler.address} ({threads} worker threads)"
        self.memory_mb, self.shared_paths = memory_mb, shared_paths
        self.scattered: dict[str, object] = {}
        self.digests: dict[str, str] = {}

    def _ship(self, paths: list[str]) -> dict:
        """Each file's scattered (digest, bytes), read and sent once per content."""
        shipped = {}
        for path in paths:
            digest = file_digest(path, self.digests)
            if digest.startswith("missing:"):
                continue  # the job says which file is missing
            if digest not in self.scattered:
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                self.scattered[digest] = self.client.scatter((digest, data), hash=False)
            shipped[path] = self.scattered[digest]
        return shipped

    def submit(self, task: Task) -> Future:
        shipped = None if self.shared_paths else self._ship(task.inputs)
        fut: Future = Future()
        dfut = self.client.submit(dask_task, task.argv, task.hard_limit, self.memory_mb,
                                  shipped, task.outputs, pure=False)
        killed = self.distributed.KilledWorker

        def done(df) -> None:
            try:
                fut.set_result(df.result())
            except killed:
                fut.set_result({"killed": "died", "seconds": 0.0, "worker": "dask",
                                "exit_signal": None})
            except Exception as e:  # the cluster's own failure: this job is an error
                fut.set_result({"exit": 3, "stdout": "", "seconds": 0.0, "worker": "dask",
                                "stderr": f"boundprop: error: Dask failed the job "
                                f"({type(e).__name__}: {' '.join(str(e).split())[:200]})"})
        dfut.add_done_callback(done)
        return fut

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()


def local_cluster(workers: int):
    """A ``LocalCluster`` of ``workers`` single-threaded worker processes that reschedules a
    job whose worker dies once (:data:`ALLOWED_FAILURES`), then fails it."""
    distributed = _import_distributed()
    import dask  # comes with distributed

    dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
    return distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, silence_logs=50)
