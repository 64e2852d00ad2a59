"""The batch runner: ``boundprop run SUITE``, a suite of jobs to its end without losing any.

A suite (:mod:`~boundprop.runner.suite`: a VNN-COMP ``instances.csv`` or JSON lines of
``verify`` / ``certify`` / ``check`` / ``audit`` jobs) is run by :func:`run_suite`
(:mod:`~boundprop.runner.drive`) on an executor (:mod:`~boundprop.runner.pools`: this process,
local worker processes; :mod:`~boundprop.runner.dask_pool`: a Dask cluster). Each job runs as
the ``boundprop`` command line it stands for, in a worker process with a hard time and memory
limit (:mod:`~boundprop.runner.sandbox`), and its row is written atomically as it ends
(:mod:`~boundprop.runner.results`); a rerun skips the recorded jobs.
"""

from boundprop.runner.drive import RunOptions, RunReport, run_suite
from boundprop.runner.suite import Job, job_key, read_suite

__all__ = ["Job", "RunOptions", "RunReport", "job_key", "read_suite", "run_suite"]
