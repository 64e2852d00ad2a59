"""Where jobs run: in this process, on a pool of local worker processes, or on a Dask cluster.

Every executor takes a :class:`Task` and returns a :class:`concurrent.futures.Future` of the
worker's reply (the dict of :mod:`boundprop.runner.sandbox`), so the driver does not know which
one it talks to.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from boundprop.runner.sandbox import ModelCache, Sandbox, run_argv


@dataclass
class Task:
    """A command line to run, its hard limit in seconds, the files it reads (shipped by content
    to a cluster that does not share them) and the files it writes (brought back)."""

    argv: list[str]
    hard_limit: float | None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class InProcess:
    """Jobs one after the other in the driver's own process: the reference for the others, and
    a debugging aid; no hard limit, no memory limit, no isolation."""

    name = "in-process"
    slots = 1

    def __init__(self) -> None:
        self.cache = ModelCache()

    def submit(self, task: Task) -> Future:
        fut: Future = Future()
        reply = run_argv(task.argv, self.cache)
        reply["worker"] = f"in-process:{os.getpid()}"
        fut.set_result(reply)
        return fut

    def close(self) -> None:
        self.cache.clear()


class LocalPool:
    """``workers`` worker processes on this machine, each one :class:`Sandbox` driven by one
    thread of the driver (the thread blocks in ``select`` while its worker computes)."""

    def __init__(self, workers: int, memory_mb: int | None) -> None:
        self.name = f"{workers} local worker{'s' if workers > 1 else ''}"
        self.slots = workers
        self.memory_mb = memory_mb
        self.threads = ThreadPoolExecutor(workers, thread_name_prefix="boundprop-worker")
        self.local = threading.local()
        self.sandboxes: list[Sandbox] = []
        self.lock = threading.Lock()

    def _run(self, task: Task) -> dict:
        sandbox = getattr(self.local, "sandbox", None)
        if sandbox is None:
            sandbox = self.local.sandbox = Sandbox(self.memory_mb)
            with self.lock:
                self.sandboxes.append(sandbox)
        return sandbox.run(task.argv, task.hard_limit)

    def submit(self, task: Task) -> Future:
        return self.threads.submit(self._run, task)

    def close(self) -> None:
        """Kill the workers (their threads then see the pipes close and end)."""
        with self.lock:
            for sandbox in self.sandboxes:
                sandbox.close()
        self.threads.shutdown(wait=True, cancel_futures=True)
        with self.lock:
            for sandbox in self.sandboxes:  # a thread may have started one meanwhile
                sandbox.close()
