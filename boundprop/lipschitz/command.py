"""The ``boundprop lipschitz`` subcommand: :func:`boundprop.local_lipschitz` on a set.

Prints the certified local Lipschitz constant (the upper bound of sup ‖J(x)‖ over the set),
the best lower bound found (‖J(x)‖ at points of the set) and their ratio; with
``--time-budget S`` it branches for S seconds, the certified value only decreasing.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from boundprop.cli import (
    _add_model_args,
    _input_set,
    _load,
    add_set_args,
    number,
)
from boundprop.cli_args import add_progress_args
from boundprop.errors import BoundpropError
from boundprop.lipschitz import local_lipschitz
from boundprop.safe_io import json_text, resolve_output_path, write_atomic
from boundprop.sets import Box
from boundprop.vnnlib import load_vnnlib

PROGRESS_INTERVAL_S = 2.0

EPILOG = """examples:
  boundprop lipschitz models/mlp_relu.onnx                     # the model's declared set, l-inf
  boundprop lipschitz net.onnx --vnnlib prop.vnnlib --time-budget 60
  boundprop lipschitz net.onnx --linf x.npy 0.03 --clip 0 1 --norm 2 --json

norms: inf (max_i ||grad f_i||_1, the l-inf -> l-inf operator norm) or 2 (largest singular
value). The lower bound is empirical (Jacobian norms at points of the set), not certified.
exit status: 0 done, 2 bad input (or a network with an op that has no Jacobian rule)."""


def run_command(args: argparse.Namespace) -> int:
    if args.clip and not args.linf:
        raise BoundpropError("--clip applies to an ℓ∞ ball: use it with --linf X EPS")
    budget = number(args.time_budget, "--time-budget S")
    if not budget >= 0:
        raise BoundpropError(f"--time-budget {args.time_budget} must be a number of seconds "
                             "≥ 0")
    inputs = [args.model] + ([args.vnnlib] if args.vnnlib else [])
    if args.output is not None:
        resolve_output_path(args.output, "-o result", inputs)
    net = _load(args)
    if args.vnnlib:
        n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
        boxes = load_vnnlib(args.vnnlib, n_in, n_out).boxes
        if len(boxes) != 1:
            raise BoundpropError(f"{args.vnnlib}: {len(boxes)} input boxes; the Lipschitz "
                                 "constant is computed on one box (give --box LO.npy HI.npy)")
        s = Box(boxes[0].lower.reshape(net.input_shape), boxes[0].upper.reshape(net.input_shape))
    else:
        s = _input_set(args, net, inputs)
    show = args.progress or (sys.stderr.isatty() and not args.quiet and not args.json)
    last = [0.0]

    def progress(st: dict) -> None:
        if show and time.perf_counter() - last[0] >= PROGRESS_INTERVAL_S:
            last[0] = time.perf_counter()
            print(f"lipschitz: {st['leaves']} domains, upper {st['upper']:.6g}, lower "
                  f"{st['lower']:.6g}, {st['elapsed']:.1f} s", file=sys.stderr)

    res = local_lipschitz(net, s, norm=args.norm, time_budget=budget, method=args.method,
                          seed=args.seed, progress=progress,
                          lmi={"auto": None, "on": True, "off": False}[args.lmi])
    doc = {"model": args.model, **res.to_json()}
    if args.output is not None:
        write_atomic(args.output, json_text(doc))
    if args.json:
        print(json_text(doc))
        return 0
    how = (f"branching ({res.mode} splits), {res.domains} domains" if res.domains > 1
           else "no branching")
    src = {"jacobian_bound": "Jacobian and set-local LMI bounds per domain" if res.domain_lmi
           else "Jacobian bound", "layer_product": "layer product",
           "lipschitz_lmi": "global LipSDP-Neuron bound",
           "lipschitz_lmi_local": "LipSDP-Neuron bound, slopes local to the set"
           }[res.upper_source]
    print(f"local Lipschitz (norm {args.norm}) ≤ {res.upper:.6g}   certified ({src}), {how}, "
          f"{res.elapsed_s:.2f} s")
    print(f"                      ≥ {res.lower:.6g}   empirical: ‖J(x)‖ at points of the set")
    print(f"ratio upper/lower      {res.ratio:.3g}")
    return 0


def register(sub) -> None:
    """Add ``boundprop lipschitz`` to the CLI's subparsers."""
    p = sub.add_parser(
        "lipschitz",
        help="local Lipschitz constant on a set: certified, with a lower bound beside it",
        description="Certified local Lipschitz constant of the model on an input set (default: "
        "the set the model declares), by bound propagation through the Jacobian graph, and "
        "with --time-budget by branching on the set; prints the empirical lower bound and "
        "the ratio beside it.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    group = add_set_args(p)
    group.add_argument("--vnnlib", metavar="FILE", help="the input box of a VNN-LIB property")
    p.add_argument("--norm", choices=["inf", "2"], default="inf",
                   help="inf (default: max_i ‖∇f_i‖₁) or 2 (largest singular value)")
    p.add_argument("--time-budget", default="0", metavar="S",
                   help="seconds of branching (default 0: the root bound only)")
    p.add_argument("--method", choices=["linear", "alpha"], default="linear",
                   help="bounds of the pre-activations the gates are derived from")
    p.add_argument("--lmi", choices=["auto", "on", "off"], default="auto",
                   help="ℓ2: cap by the verified LipSDP-Neuron certificates (auto: when the "
                   "LMI has at most 1000 rows; they can take seconds on larger MLPs)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled lower bound")
    p.add_argument("-o", "--output-result", dest="output", metavar="RESULT.json",
                   help="write the result as JSON (atomically)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_progress_args(p, "no progress lines")
    p.set_defaults(func=run_command)
