"""The results of a batch run: one row per job, written atomically as each job ends.

The CSV (and, with ``--json``, a JSON document beside it) is rewritten whole through a
temporary file renamed into place after every job: a reader, or a driver killed with ``kill
-9`` at any moment, sees the file as it was after some job, never half a row. A rerun reads it
back and skips the jobs whose key (:func:`boundprop.runner.suite.job_key`) it holds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections import Counter

from boundprop.errors import BoundpropError
from boundprop.runner.suite import Job
from boundprop.safe_io import short_path, write_atomic

COLUMNS = ["index", "key", "source", "command", "model", "property", "result", "seconds",
           "worker", "lipschitz", "smoothness", "bound", "margin", "artifact", "error",
           "finished"]
# VNN-COMP 2021 scoring: 10 points per correct sat/unsat (the time bonus needs the other tools'
# times, the penalty for a wrong answer the ground truth: neither is known to one run).
POINTS_PER_DECIDED = 10


def _last_error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if ln.startswith("boundprop: error:") or ln.startswith("boundprop: internal error:"):
            return ln.removeprefix("boundprop: ")
        if ln.startswith("boundprop: ") and "error" in ln:
            return ln.removeprefix("boundprop: ")
    return lines[-1] if lines else "failed without a message"


def _number(doc: dict, key: str) -> str:
    v = doc.get(key)
    return repr(float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else ""


def outcome_fields(job: Job, reply: dict, hard_limit: float | None) -> dict:
    """The row fields of a job's reply from its worker (see :mod:`boundprop.runner.sandbox`)."""
    row = {"seconds": f"{float(reply.get('seconds', 0.0)):.3f}",
           "worker": reply.get("worker", "")}
    killed = reply.get("killed")
    if killed == "timeout":
        return row | {"result": "timeout",
                      "error": f"killed at the hard limit of {hard_limit:g} s"}
    if killed == "memory":
        return row | {"result": "error", "error": "the worker passed its memory limit and was "
                      "killed; give more --memory-mb or fewer --workers"}
    if killed:
        sig, words = reply.get("exit_signal"), reply.get("last_words")
        return row | {"result": "error", "error": "the worker died mid-job" +
                      (f" (signal {sig})" if sig else "") + (f": {words}" if words else "")}
    status, stdout = reply.get("exit"), reply.get("stdout", "")
    if status not in (0, 1):
        return row | {"result": "error", "error": _last_error_line(reply.get("stderr", ""))}
    try:
        doc = json.loads(stdout) if stdout.strip() else {}
    except json.JSONDecodeError:
        doc = {}
    if job.command == "verify" or "result" in doc:
        result = doc.get("result") or ("unsat" if status == 0 else "unknown")
        return row | {"result": result, "margin": _number(doc, "margin")}
    if job.command == "certify":
        return row | {"result": "certified", "lipschitz": _number(doc, "lipschitz"),
                      "smoothness": _number(doc, "smoothness"), "bound": _number(doc, "bound")}
    if job.command == "check":
        return row | {"result": "valid" if doc.get("valid") else "invalid",
                      "error": "" if doc.get("valid") else str(doc.get("reason") or "")[:300]}
    return row | {"result": "ok" if doc.get("ok") else "violated"}


class ResultsFile:
    """Rows keyed by job key, kept in ``path`` (CSV) and ``json_path`` (JSON) after each job."""

    def __init__(self, path: str, json_path: str | None, resume: bool,
                 protect: list[str]) -> None:
        self.path, self.json_path, self.protect = path, json_path, protect
        self.rows: dict[str, dict] = {}
        if resume and os.path.exists(path):
            self.rows = self._read(path)

    @staticmethod
    def _read(path: str) -> dict[str, dict]:
        try:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != COLUMNS:
                    raise BoundpropError(f"{short_path(path)} is not a results file of "
                                         "boundprop run (other columns); give another -o, or "
                                         "--no-resume to overwrite it")
                return {r["key"]: r for r in reader}
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise BoundpropError(f"cannot read the results {short_path(path)} ({e}); give "
                                 "another -o, or --no-resume to overwrite it") from None

    def has(self, key: str) -> bool:
        return key in self.rows

    def add(self, job: Job, key: str, fields: dict) -> dict:
        """Record a finished job and rewrite the files."""
        row = dict.fromkeys(COLUMNS, "")
        row.update(index=str(job.index), key=key, source=job.source, command=job.command,
                   model=short_path(job.model) if job.model else "",
                   property=short_path(job.prop) if job.prop else "",
                   finished=time.strftime("%Y-%m-%dT%H:%M:%S"))
        row.update({k: v for k, v in fields.items() if k in COLUMNS})
        self.rows[key] = row
        self.write()
        return row

    def ordered(self) -> list[dict]:
        return sorted(self.rows.values(), key=lambda r: (int(r["index"] or 0), r["finished"]))

    def write(self) -> None:
        text = io.StringIO()
        w = csv.DictWriter(text, COLUMNS, lineterminator="\n")
        w.writeheader()
        rows = self.ordered()
        w.writerows(rows)
        write_atomic(self.path, text.getvalue(), "-o results", self.protect)
        if self.json_path:
            doc = {"schema": "boundprop.run/1", "summary": summary(rows),
                   "jobs": [_typed(r) for r in rows]}
            write_atomic(self.json_path, json.dumps(doc, indent=1) + "\n", "--json results",
                         self.protect)


NUMERIC = ("seconds", "lipschitz", "smoothness", "bound", "margin")


def _typed(row: dict) -> dict:
    """A row for JSON: numbers as numbers, empty cells as null."""
    out = {k: (v if v != "" else None) for k, v in row.items()}
    out["index"] = int(row["index"]) if row["index"] else None
    for k in NUMERIC:
        if out[k] is not None:
            out[k] = float(out[k])
    return out


def summary(rows: list[dict]) -> dict:
    """Counts of results and the VNN-COMP score of the verify jobs."""
    counts = Counter(r["result"] for r in rows)
    decided = counts["sat"] + counts["unsat"]
    seconds = sum(float(r["seconds"] or 0) for r in rows)
    return {"jobs": len(rows), "decided": decided, **{k: counts[k] for k in (
        "sat", "unsat", "unknown", "timeout", "error")},
        "other": {k: v for k, v in counts.items()
                  if k not in ("sat", "unsat", "unknown", "timeout", "error")},
        "vnncomp_score": POINTS_PER_DECIDED * decided, "job_seconds": round(seconds, 3)}


def summary_line(s: dict, ran: int, skipped: int, wall: float) -> str:
    """One line: what the suite decided, what failed, the score, and this run's pace."""
    other = ", ".join(f"{k} {v}" for k, v in sorted(s["other"].items()))
    rate = ran / wall if wall > 0 else 0.0
    return (f"{s['jobs']} jobs: {s['decided']} decided (sat {s['sat']}, unsat {s['unsat']}), "
            f"unknown {s['unknown']}, timeout {s['timeout']}, error {s['error']}"
            + (f", {other}" if other else "")
            + f"; VNN-COMP score {s['vnncomp_score']} (10 per decided instance, before time "
            f"bonuses and penalties); ran {ran} in {wall:.1f} s ({rate:.2f} jobs/s), "
            f"{skipped} already recorded")
