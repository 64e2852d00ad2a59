"""``boundprop gn MODEL --targets Y.npy ...``: a Gauss-Newton fit through onnxruntime."""

from __future__ import annotations

import argparse
import io
import math
import sys

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.safe_io import json_text, load_array, resolve_output_path, write_atomic

EPILOG = """examples:
  boundprop gn models/mlp_tanh.onnx --targets y.npy                  # reconstruct an input
  boundprop gn models/mlp_tanh.onnx --targets y.npy --certified-radius 0.5
  boundprop gn models/mlp_784_100_100_10_relu.onnx --variables last --inputs X.npy \\
      --targets Y.npy --max-iter 20 -o w.npy --json
  boundprop gn model.onnx --variables fc.weight fc.bias --inputs X.npy --targets labels.npy \\
      --loss cross_entropy

One progress line per iteration: cost, step norm, damping 1/γ, accepted, forward passes
(point evaluations) and onnxruntime calls. Exit 0 when converged (relative cost ≤ --tol, the
graph's noise floor, or a stationary point), 1 when stalled or at the iteration limit, 2 on bad
input."""


def register(sub) -> None:
    """Add the ``gn`` subcommand to the CLI's subparsers."""
    p = sub.add_parser(
        "gn", help="Gauss-Newton fit of inputs or weights through onnxruntime",
        description="Regularized Gauss-Newton / Levenberg-Marquardt on an ONNX model run by "
        "onnxruntime, with Jacobians from batched finite differences: fit the input "
        "(reconstruction) or chosen initializers (e.g. the last layer) to targets.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--targets", required=True, metavar="Y.npy",
                   help="targets: outputs to reach (squared) or class per row (cross_entropy)")
    p.add_argument("--variables", nargs="+", default=["input"], metavar="NAME",
                   help="'input' (default), 'last' (the last layer's weight and bias), or "
                   "initializer names")
    p.add_argument("--inputs", metavar="X.npy", help="with initializer variables: the data batch")
    p.add_argument("--x0", metavar="X0.npy", help="with --variables input: the start point")
    p.add_argument("--loss", choices=["squared", "cross_entropy"], default="squared")
    p.add_argument("--regularization", type=float, default=0.0, metavar="LAMBDA",
                   help="ridge weight λ on ‖w − w0‖²/2 (default 0)")
    p.add_argument("--max-iter", type=int, default=50)
    p.add_argument("--tol", type=float, default=1e-10, help="relative cost to reach")
    p.add_argument("--damping", choices=["lm", "grad_norm"], default="lm")
    p.add_argument("--subspace", type=int, default=None, metavar="K",
                   help="random-subspace GN with K directions (for many variables)")
    p.add_argument("--dtype", choices=["auto", "float32", "float64"], default="auto",
                   help="graph precision (auto: a float64 copy when onnxruntime can run it)")
    p.add_argument("--difference", choices=["central", "forward"], default="central")
    p.add_argument("--certified-radius", type=float, default=None, metavar="RHO",
                   help="also take the certified gradient step on balls of radius RHO when "
                   "it decreases the cost more (a guaranteed-decrease safeguard)")
    p.add_argument("-o", "--output", metavar="W.npy", help="write the fitted variables (.npy)")
    p.add_argument("--json", action="store_true", help="print a JSON summary only")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.set_defaults(func=run)


def _check_numbers(args: argparse.Namespace) -> None:
    """One-line errors for numeric options out of range (a NaN λ or tolerance would make
    every step NaN; argparse's float() accepts 'nan')."""
    for name, value in (("--regularization", args.regularization), ("--tol", args.tol),
                        ("--certified-radius", args.certified_radius)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise BoundpropError(f"{name} {value:g} must be a finite number ≥ 0")
    if not args.max_iter > 0:
        raise BoundpropError(f"--max-iter must be positive, got {args.max_iter}")
    if args.subspace is not None and args.subspace <= 0:
        raise BoundpropError(f"--subspace K must be a positive number of directions, got "
                             f"{args.subspace}")


def _progress_line(h: dict) -> None:
    """One line of the iteration table (the solver's history entry ``h``)."""
    damp = h.get("damping", h.get("gamma"))
    print(f"{h.get('iteration', 0):>4} {h.get('cost', float('nan')):>12.5e} "
          f"{h.get('step_norm', 0.0):>10.3e} "
          f"{(damp if damp is not None else float('nan')):>10.3e} "
          f"{'yes' if h.get('accepted', True) else 'no':>3} "
          f"{h.get('forward_passes', 0):>7} {h.get('ort_calls', 0):>6} "
          f"{h.get('seconds', 0.0):>7.2f}" + (f"  ({h['step_kind']})" if
                                              h.get("step_kind") else ""), flush=True)


def _variables(args: argparse.Namespace, last_layer_names):
    """(variables, data batch or None, start point or None) from the options."""
    variables = args.variables
    if variables == ["input"]:
        variables = "input"
        if args.inputs:
            raise BoundpropError("--inputs is the data batch for initializer variables; with "
                                 "--variables input give the start point with --x0")
    elif variables == ["last"]:
        variables = last_layer_names(args.model)
    inputs = load_array(args.inputs, "--inputs") if args.inputs else None
    x0 = load_array(args.x0, "--x0") if args.x0 else None
    if variables != "input" and inputs is None:
        raise BoundpropError("fitting initializers needs the data batch: give --inputs X.npy")
    return variables, inputs, x0


def _report(args: argparse.Namespace, problem, result) -> None:
    """The JSON summary (--json) or the closing line (verbose)."""
    summary = result.to_json()
    summary.pop("history", None)
    summary.pop("w", None)
    summary.update(model=str(args.model), p=problem.p, q=problem.q, dtype=problem.dtype)
    if args.json:
        print(json_text(summary))
    elif not args.quiet:
        print(f"{result.status}: cost {result.cost:.6e} (from {result.cost0:.6e}) in "
              f"{result.iterations} iterations, {result.forward_passes} forward passes, "
              f"{result.ort_calls} onnxruntime calls, {result.seconds:.2f} s", file=sys.stdout)
        if args.output is not None:
            print(f"variables written to {args.output}")


def run(args: argparse.Namespace) -> int:
    """The command: load the arrays, build the problem, solve, write and report; exit 0 when
    the solve converged, 1 when it stalled or hit the iteration limit."""
    # onnx, onnxruntime and scipy come with these: imported on run so that `boundprop gn
    # --help` stays light
    from boundprop.gn.layers import last_layer_names
    from boundprop.gn.oracle import Problem
    from boundprop.gn.solver import solve
    from boundprop.gn.uses import certified_step

    _check_numbers(args)
    given_files = [p for p in (args.model, args.targets, args.inputs, args.x0) if p]
    if args.output is not None:  # refuse a bad -o before the fit, not after
        resolve_output_path(args.output, "-o", given_files)
    targets = load_array(args.targets, "--targets")
    variables, inputs, x0 = _variables(args, last_layer_names)
    problem = Problem(args.model, variables=variables, targets=targets, inputs=inputs,
                      loss=args.loss, regularization=args.regularization, x0=x0,
                      dtype=args.dtype, difference=args.difference)
    safeguard = None
    if args.certified_radius is not None:
        safeguard = certified_step(problem, args.certified_radius)
    verbose = not (args.json or args.quiet)
    if verbose:
        names = "input" if variables == "input" else ", ".join(variables)
        print(f"{args.model}: {problem.p} variables ({names}), {problem.q} residuals, "
              f"{args.loss} loss, {problem.dtype} graph", flush=True)
        print(f"{'iter':>4} {'cost':>12} {'step':>10} {'1/γ':>10} {'acc':>3} {'passes':>7} "
              f"{'ort':>6} {'s':>7}", flush=True)
    result = solve(problem, max_iter=args.max_iter, tol=args.tol, damping=args.damping,
                   method="subspace" if args.subspace else "full",
                   subspace_dim=args.subspace, callback=_progress_line if verbose else None,
                   certified_step=safeguard)
    if args.output is not None:
        buf = io.BytesIO()
        np.save(buf, np.asarray(result.x), allow_pickle=False)
        write_atomic(args.output, buf.getvalue(), "-o", given_files)
    _report(args, problem, result)
    return 0 if result.success else 1
