"""Suites: what ``boundprop run`` reads, as a list of :class:`Job`.

Two formats, told apart by content (not by name):

* the VNN-COMP ``instances.csv``: ``onnx,vnnlib,timeout`` per line, paths relative to the file;
  each line is a ``verify`` job with that timeout;
* JSON lines, one job per line (``#`` comments and blank lines skipped)::

    {"command": "verify", "model": "m.onnx", "property": "p.vnnlib", "timeout": 60}
    {"command": "certify", "model": "m.onnx", "set": {"linf": ["x.npy", 0.03], "clip": [0, 1]},
     "norm": "2", "out": "m.cert.json"}
    {"command": "check", "certificate": "m.cert.json", "model": "m.onnx"}
    {"command": "audit", "certificate": "m.cert.json", "model": "m.onnx"}

  ``set`` is ``"default"`` (the model's declared set), ``"global"``, ``{"box": [lo, hi]}``,
  ``{"linf": [x, eps], "clip": [lo, hi]}``, ``{"l2": [x, r]}`` or ``{"vnnlib": path}`` (numbers
  or ``.npy``/``.txt`` paths, as on the command line); ``args`` adds command-line options
  (``["--method", "alpha"]``). Paths are relative to the suite file.

A line that cannot be read becomes a job carrying its one-line ``error``: it is recorded as an
error and the rest of the suite runs. A job whose input is another job's ``out`` (check a
certificate the suite makes) runs after that job.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from dataclasses import dataclass, field

from boundprop.errors import BoundpropError
from boundprop.runner.sandbox import PLANTS_ENV
from boundprop.safe_io import check_input_file, short_path

COMMANDS = ("verify", "certify", "check", "audit")
# Keys of a JSON-lines job, per command (beyond "command", "timeout" and "args").
JOB_KEYS = {
    "verify": {"model", "property", "vnnlib"},
    "certify": {"model", "set", "norm", "out"},
    "check": {"certificate", "model"},
    "audit": {"certificate", "model"},
}
COMMON_KEYS = {"command", "timeout", "args"}
MAX_SUITE_BYTES = 64 * 2**20
MAX_LINE_CHARS = 100_000


@dataclass
class Job:
    """One command of a suite.

    ``argv``: the ``boundprop`` command line, without the result files the runner adds (``-o``);
    ``inputs``: the files whose contents key the job (model, property, certificate, arrays);
    ``options``: everything else that changes the answer, for the key; ``timeout``: the tool's
    budget in seconds (None: none); ``out``: the artifact the job was asked to write;
    ``error``: why the suite line could not be made a job (then nothing runs)."""

    index: int
    source: str
    command: str
    argv: list[str] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    options: dict = field(default_factory=dict)
    timeout: float | None = None
    out: str | None = None
    error: str | None = None
    model: str = ""
    prop: str = ""

    def describe(self) -> str:
        """``command model [property]`` with short paths, for messages and the results."""
        parts = [self.command, short_path(self.model) if self.model else ""]
        if self.prop:
            parts.append(short_path(self.prop))
        return " ".join(p for p in parts if p)


def read_suite(path: str) -> list[Job]:
    """The jobs of the suite file ``path`` (instances.csv or JSON lines), in file order."""
    check_input_file(path, "suite", MAX_SUITE_BYTES,
                     "give a VNN-COMP instances.csv or a JSON-lines job file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError:
        raise BoundpropError(f"suite {short_path(path)} is not UTF-8 text; give a VNN-COMP "
                             "instances.csv or a JSON-lines job file") from None
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    lines = [(k, line) for k, line in enumerate(text.splitlines(), 1)
             if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        raise BoundpropError(f"suite {short_path(path)} has no jobs; give one instance or job "
                             "per line")
    as_json = lines[0][1].lstrip().startswith("{")
    jobs = [(_json_job if as_json else _csv_job)(k, line, folder, name) for k, line in lines]
    _order_after_producers(jobs)
    return jobs


def _bad(index: int, source: str, message: str, command: str = "?") -> Job:
    return Job(index, source, command, error=f"{source}: {message}")


def _csv_job(index: int, line: str, folder: str, name: str) -> Job:
    source = f"{name} line {index}"
    if len(line) > MAX_LINE_CHARS:
        return _bad(index, source, "line too long; expected onnx,vnnlib,timeout", "verify")
    cells = [c.strip() for c in next(csv.reader(io.StringIO(line)))]
    if len(cells) != 3 or not all(cells):
        return _bad(index, source, f"expected 3 columns onnx,vnnlib,timeout, got "
                    f"{len([c for c in cells if c])}; fix the line", "verify")
    try:
        timeout = float(cells[2])
    except ValueError:
        timeout = float("nan")
    if not (timeout > 0 and timeout < float("inf")):
        return _bad(index, source, f"timeout '{cells[2][:30]}' is not a number of seconds > 0",
                    "verify")
    model, prop = (os.path.join(folder, c) for c in cells[:2])
    return _verify_job(index, source, model, prop, timeout, [])


def _verify_job(index: int, source: str, model: str, prop: str, timeout: float | None,
                extra: list[str]) -> Job:
    argv = ["verify", model, prop, "--json", "--quiet", *extra]
    if timeout is not None:
        argv += ["--timeout", repr(float(timeout))]
    return Job(index, source, "verify", argv, [model, prop], {"args": extra}, timeout,
               model=model, prop=prop)


def _json_job(index: int, line: str, folder: str, name: str) -> Job:
    source = f"{name} line {index}"
    if len(line) > MAX_LINE_CHARS:
        return _bad(index, source, f"line longer than {MAX_LINE_CHARS} characters")
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        return _bad(index, source, f"not JSON ({e.msg} at column {e.colno}); one JSON object "
                    "per line")
    if not isinstance(doc, dict):
        return _bad(index, source, "a job is a JSON object {\"command\": ..., \"model\": ...}")
    try:
        return _job_of(index, source, doc, folder)
    except BoundpropError as e:
        return _bad(index, source, str(e), str(doc.get("command", "?"))[:30])


def _path(doc: dict, key: str, folder: str, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None:
        if required:
            raise BoundpropError(f"missing \"{key}\" (a path relative to the suite file)")
        return None
    if not isinstance(value, str) or not value:
        raise BoundpropError(f"\"{key}\" must be a path (a string)")
    return os.path.join(folder, value)


def _job_of(index: int, source: str, doc: dict, folder: str) -> Job:
    command = doc.get("command")
    if os.environ.get(PLANTS_ENV) == "1" and str(command).startswith("plant-"):
        model = _path(doc, "model", folder)  # test-only: see sandbox._plant
        return Job(index, source, command, [command, model], [model], {}, doc.get("timeout"),
                   model=model)
    if command not in COMMANDS:
        raise BoundpropError(f"\"command\" must be one of {', '.join(COMMANDS)}, got "
                             f"{str(command)[:30]!r}")
    unknown = sorted(set(doc) - COMMON_KEYS - JOB_KEYS[command])
    if unknown:
        raise BoundpropError(f"unknown key {unknown[0]!r} for {command}; allowed: "
                             f"{', '.join(sorted(COMMON_KEYS | JOB_KEYS[command]))}")
    extra = doc.get("args", [])
    if not (isinstance(extra, list) and all(isinstance(a, str) for a in extra)):
        raise BoundpropError("\"args\" must be a list of command-line strings")
    timeout = doc.get("timeout")
    if timeout is not None and not (isinstance(timeout, (int, float)) and 0 < timeout < 1e9):
        raise BoundpropError("\"timeout\" must be a number of seconds > 0")
    model = _path(doc, "model", folder)
    if command == "verify":
        prop = _path(doc, "property", folder, False) or _path(doc, "vnnlib", folder)
        return _verify_job(index, source, model, prop, timeout, extra)
    if command == "certify":
        return _certify_job(index, source, doc, folder, model, extra, timeout)
    cert = _path(doc, "certificate", folder)
    argv = [command, cert, model, "--json", *extra]
    return Job(index, source, command, argv, [cert, model], {"args": extra}, timeout,
               model=model, prop=cert)


def _certify_job(index: int, source: str, doc: dict, folder: str, model: str,
                 extra: list[str], timeout: float | None) -> Job:
    argv = ["certify", model, "--json", *extra]
    inputs = [model]
    norm = doc.get("norm")
    if norm is not None:
        argv += ["--norm", str(norm)]
    prop = ""
    set_args, set_files = _set_args(doc.get("set", "default"), folder)
    argv += set_args
    inputs += set_files
    if set_args[:1] == ["--vnnlib"]:
        prop = set_files[0]
    out = _path(doc, "out", folder, False)
    options = {"args": extra, "norm": norm, "out": doc.get("out"),
               "set": [a if a not in set_files else "file" for a in set_args]}
    return Job(index, source, "certify", argv, inputs, options, timeout, out, model=model,
               prop=prop)


def _value(v, folder: str, files: list[str]) -> str:
    """A set parameter: a number as text, or a path made absolute (and keyed by content)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise BoundpropError("a set parameter is a number or a .npy/.txt path")
    if isinstance(v, str):
        try:
            float(v)
            return v
        except ValueError:
            files.append(os.path.join(folder, v))
            return files[-1]
    return repr(float(v))


def _set_args(spec, folder: str) -> tuple[list[str], list[str]]:
    """``certify`` options for the set ``spec`` and the files they read."""
    files: list[str] = []
    if spec in ("default", None):
        return [], files
    if spec == "global":
        return ["--global"], files
    if not isinstance(spec, dict) or not spec:
        raise BoundpropError("\"set\" is \"default\", \"global\" or an object {\"box\": [lo, "
                             "hi]} / {\"linf\": [x, eps]} / {\"l2\": [x, r]} / {\"vnnlib\": p}")
    kind = next(iter(spec))
    if kind == "vnnlib":
        path = spec["vnnlib"]
        if not isinstance(path, str):
            raise BoundpropError("\"set\": {\"vnnlib\": path}")
        files.append(os.path.join(folder, path))
        return ["--vnnlib", files[-1]], files
    if kind not in ("box", "linf", "l2") or set(spec) - {kind, "clip"}:
        raise BoundpropError(f"\"set\" keys: box, linf (with clip), l2 or vnnlib; got "
                             f"{sorted(spec)}")
    pair = spec[kind]
    if not (isinstance(pair, list) and len(pair) == 2):
        raise BoundpropError(f"\"set\": {{\"{kind}\": [two values]}}")
    args = [f"--{kind}", *(_value(v, folder, files) for v in pair)]
    if "clip" in spec:
        clip = spec["clip"]
        if kind != "linf" or not (isinstance(clip, list) and len(clip) == 2):
            raise BoundpropError("\"clip\": [lo, hi] goes with \"linf\"")
        args += ["--clip", *(_value(v, folder, files) for v in clip)]
    return args, files


def _order_after_producers(jobs: list[Job]) -> None:
    """Record in ``options["after"]`` the jobs whose ``out`` a job reads (it runs after them)."""
    made = {os.path.realpath(j.out): j.index for j in jobs if j.out and not j.error}
    for j in jobs:
        after = sorted({made[p] for p in map(os.path.realpath, j.inputs) if p in made}
                       - {j.index})
        if after:
            j.options["after"] = after


def file_digest(path: str, cache: dict[str, str] | None = None) -> str:
    """sha256 of the file's bytes ("missing:PATH" when it cannot be read: the job will say why,
    and the key changes once the file appears)."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
    except OSError:
        return f"missing:{real}"
    stamp = f"{real}\0{st.st_size}\0{st.st_mtime_ns}"  # a rewritten file is hashed again
    if cache is not None and stamp in cache:
        return cache[stamp]
    h = hashlib.sha256()
    try:
        with open(real, "rb") as f:
            for block in iter(lambda: f.read(2**20), b""):
                h.update(block)
        digest = h.hexdigest()
    except OSError:
        return f"missing:{real}"
    if cache is not None:
        cache[stamp] = digest
    return digest


def job_key(job: Job, digests: dict[str, str] | None = None) -> str:
    """The job's identity for ``--resume``: the command, the digests of the files it reads and
    its options (a bad suite line: its text)."""
    if job.error:
        doc = {"error": job.error}
    else:
        doc = {"command": job.command, "inputs": [file_digest(p, digests) for p in job.inputs],
               "timeout": job.timeout,
               "options": {k: v for k, v in job.options.items() if k != "after"}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]
