"""The ``boundprop verify`` subcommand: the VNN-COMP interface to :func:`boundprop.verify`.

``boundprop verify MODEL PROP`` prints one word on stdout — ``unsat`` (the property is
verified: no input of its boxes reaches the unsafe region), ``sat`` (falsified: a counterexample
confirmed by onnxruntime), ``unknown`` or ``timeout`` (unknown because the deadline passed) —
and with ``-o RESULT`` writes the competition's result file (VNN-COMP 2022 rules): the word on
the first line and, for ``sat``, the witness::

    sat
    (
    (X_0 0.25)
    ...
    (Y_0 -1.5)
    ...
    )

one ``X_i`` per (flattened) model input and one ``Y_j`` per output, each value the shortest
decimal that reads back to the float64 holding it exactly (``repr``): the float32 input the
model was run on and onnxruntime's float32 outputs are reproduced bit for bit.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import TextIO

import numpy as np

from boundprop.cli import _add_model_args, _load
from boundprop.cli_args import add_progress_args
from boundprop.errors import BoundpropError
from boundprop.safe_io import (
    check_input_file,
    json_text,
    resolve_output_path,
    short_path,
    write_atomic,
)

# Exit status: a decided answer is a success, whichever it is (the word says which).
EXIT_DECIDED = 0  # sat or unsat
EXIT_UNDECIDED = 1  # unknown or timeout
# bp.verify's status -> the competition's word
WORDS = {"verified": "unsat", "falsified": "sat", "unknown": "unknown"}
PROGRESS_INTERVAL_S = 2.0

EPILOG = """examples:
  boundprop verify model.onnx prop.vnnlib
  boundprop verify model.onnx prop.vnnlib --timeout 60 -o result.txt
  boundprop verify model.onnx prop.vnnlib --method alpha --seed 1 --proof proof.json
  boundprop verify model.onnx prop.vnnlib --json

prints one word: unsat (verified), sat (falsified; -o writes the counterexample), unknown, or
timeout (unknown because --timeout passed).

exit status: 0 a decided answer (sat or unsat), 1 unknown or timeout, 2 bad input (missing or
unreadable model or property, property sized for another model, bad option), 3 internal error.
"""


def result_word(verdict) -> str:
    """The competition's word for a :class:`~boundprop.verifier.Verdict`."""
    word = WORDS[verdict.status]
    if word == "unknown" and getattr(verdict, "timed_out", False):
        return "timeout"
    return word


def result_text(verdict, word: str) -> str:
    """The VNN-COMP result file: ``word``, then for ``sat`` the witness (``X_i`` inputs and
    ``Y_j`` outputs, flattened, at repr precision)."""
    lines = [word]
    if word == "sat":
        if verdict.counterexample is None:  # verify() never says falsified without one
            raise RuntimeError("a falsified verdict without a counterexample")
        x, y = verdict.counterexample
        lines.append("(")
        lines += [f"(X_{i} {float(v)!r})" for i, v in enumerate(np.asarray(x).reshape(-1))]
        lines += [f"(Y_{j} {float(v)!r})" for j, v in enumerate(np.asarray(y).reshape(-1))]
        lines.append(")")
    return "\n".join(lines) + "\n"


class ProgressLine:
    """A ``progress=`` callable for :func:`~boundprop.verifier.verify`: one status line on
    ``stream`` at most every ``interval`` seconds (rewritten in place on a terminal, one line per
    update otherwise)."""

    def __init__(self, stream: TextIO, interval: float = PROGRESS_INTERVAL_S) -> None:
        self.stream, self.interval = stream, interval
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.last = -math.inf
        self.shown = False

    def __call__(self, status: dict) -> None:
        now = time.monotonic()
        if now - self.last < self.interval:
            return
        self.last = now
        parts = [f"boundprop: {status.get('phase', 'working')}"]
        if status.get("domains_left") is not None:
            parts.append(f"{int(status['domains_left'])} domains left")
        if status.get("best_bound") is not None:
            parts.append(f"best bound {float(status['best_bound']):.4g}")
        if status.get("elapsed") is not None:
            parts.append(f"{float(status['elapsed']):.1f} s")
        line = ", ".join(parts)
        if self.tty:
            self.stream.write(f"\r{line}\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        """End the rewritten terminal line, if one was shown."""
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def _check_outputs(args: argparse.Namespace) -> list[str]:
    """Refuse bad output paths (-o, --proof) before any work; returns the protected inputs."""
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise BoundpropError(f"--timeout {args.timeout:g} must be a finite number of seconds > 0")
    inputs = [args.model, args.prop]
    check_input_file(args.prop, "VNN-LIB property", hint="give a .vnnlib text file")
    targets = {}
    for path, what in ((args.output, "-o result"), (args.proof, "--proof")):
        if path is not None:
            target = os.path.abspath(resolve_output_path(path, what, inputs))
            if target in targets:
                raise BoundpropError(f"{what} {short_path(path)} is also the {targets[target]} "
                                     "file; give two different paths")
            targets[target] = what
    return inputs


def _write_proof(args: argparse.Namespace, verdict, inputs: list[str]) -> None:
    """Write the verdict's proof (a JSON-able dict) to --proof, or say there is none."""
    proof = getattr(verdict, "proof", None)
    if proof is None:
        print(f"boundprop: note: no proof for this verdict ({result_word(verdict)}); "
              f"{short_path(args.proof)} not written", file=sys.stderr)
        return
    write_atomic(args.proof, json_text(proof, indent=1) + "\n", "--proof", inputs)


def run_command(args: argparse.Namespace) -> int:
    """``boundprop verify``: decide the property, print the word, write the files."""
    from boundprop.verifier import verify  # lazy: onnx, onnxruntime

    start = time.perf_counter()
    inputs = _check_outputs(args)
    net = _load(args)
    # --timeout is the whole run's budget, as in the competition: loading the model counts
    timeout = None if args.timeout is None else max(0.0, args.timeout - (time.perf_counter()
                                                                         - start))
    show = not args.quiet and (args.progress or sys.stderr.isatty())
    progress = ProgressLine(sys.stderr) if show else None
    try:
        v = verify(net, args.prop, method=args.method, timeout=timeout, seed=args.seed,
                   progress=progress)
    finally:
        if progress is not None:
            progress.close()
    word = result_word(v)
    if args.output is not None:
        write_atomic(args.output, result_text(v, word), "-o result", inputs)
    if args.proof is not None:
        _write_proof(args, v, inputs)
    if args.json:
        print(json_text({"result": word, **v.to_json(),
                         "proof": getattr(v, "proof", None) is not None}))
    else:
        print(word)
    return EXIT_DECIDED if word in ("sat", "unsat") else EXIT_UNDECIDED


def _seed(text: str) -> int:
    """An argparse type: a seed in [0, 2^32 − 1]."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' is not an integer") from None
    if not 0 <= v < 2**32:
        raise argparse.ArgumentTypeError(f"'{text[:40]}' must be in 0 … 2^32 − 1")
    return v


def register(sub) -> None:
    """Add ``boundprop verify`` to the CLI's subparsers."""
    p = sub.add_parser(
        "verify",
        help="decide a VNN-LIB property (VNN-COMP interface: sat, unsat, unknown, timeout)",
        description="Decide a VNN-LIB property on an ONNX model, as VNN-COMP tools do: "
        "certified bounds prove it (unsat), a counterexample confirmed by onnxruntime refutes "
        "it (sat), or neither within the budget (unknown; timeout when --timeout passed). A "
        "dynamic leading (batch) dim of the model input is fixed to 1.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("prop", metavar="PROP", help="VNN-LIB property (.vnnlib)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds for the whole run, model loading included (default: no limit, "
                   "one search round); the bounding of one box is not interrupted")
    p.add_argument("-o", "--output-result", dest="output", metavar="RESULT",
                   help="write the VNN-COMP result file (the word, and the witness for sat)")
    p.add_argument("--proof", metavar="PROOF.json",
                   help="write the verdict's proof as JSON, when the verifier gives one")
    p.add_argument("--method", choices=["linear", "alpha", "interval"], default="linear",
                   help="bound method (default linear: back-substitution, escalated to alpha "
                   "on the boxes it leaves open)")
    p.add_argument("--seed", type=_seed, default=0, help="seed of the counterexample search")
    p.add_argument("--json", action="store_true",
                   help="print a JSON document (result word, margins, times) instead of the word")
    add_progress_args(p, "no progress on stderr (the result word is still printed)")
    p.set_defaults(func=run_command)
