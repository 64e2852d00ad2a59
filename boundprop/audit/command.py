"""The ``boundprop audit`` subcommand."""

from __future__ import annotations

import argparse

from boundprop.audit.run import DEFAULT_SAMPLES, DEFAULT_STEPS, audit
from boundprop.cli_args import count_type
from boundprop.safe_io import json_text

EPILOG = """examples:
  boundprop certify models/mlp_relu.onnx -o cert.json
  boundprop audit cert.json models/mlp_relu.onnx
  boundprop audit cert.json model.onnx --samples 10000 --steps 50 --seed 1
  boundprop audit cert.json model.onnx --json > audit.json
  boundprop audit cert.json model.onnx --quiet && echo "no violation"

exit status: 0 no violation, 1 a certified value is beaten by an empirical one, 2 bad input
(unreadable certificate, missing model, certificate issued for another model).
"""


def run_command(args: argparse.Namespace) -> int:
    """``boundprop audit``: print the rows (or JSON); exit 1 on a violation."""
    res = audit(args.cert, args.model, samples=args.samples, steps=args.steps, seed=args.seed,
                progress=not (args.quiet or args.no_progress or args.json))
    if args.json:
        print(json_text(res.to_json()))
    elif not args.quiet:
        print(res.format())
    return 0 if res.ok else 1


MAX_SAMPLES = 10**6  # --samples beyond this hangs for hours or exhausts memory
MAX_STEPS = 10**4


def register(sub) -> None:
    """Add ``boundprop audit`` to the CLI's subparsers."""
    p = sub.add_parser(
        "audit", help="empirical lower bounds and tightness ratios of a certificate",
        description="Search for inputs (or parameters, for --wrt params certificates) that "
        "come close to every certified quantity: output bounds, Lipschitz ℓ, smoothness L, "
        "bound B, and each IR node's. Prints certified, empirical (a lower bound of the true "
        "value) and their ratio; any empirical value beyond its certified one is a violation "
        "(exit 1). Values come from boundprop's float64 evaluator of the model, cross-checked "
        "against onnxruntime.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cert", metavar="CERT.json", help="certificate from 'boundprop certify -o'")
    p.add_argument("model", metavar="MODEL", help="the ONNX model it was issued for")
    p.add_argument("--samples", type=count_type(MAX_SAMPLES), default=DEFAULT_SAMPLES, metavar="N",
                   help=f"random points of the set (default {DEFAULT_SAMPLES}, at most "
                   f"{MAX_SAMPLES:,})")
    p.add_argument("--steps", type=count_type(MAX_STEPS), default=DEFAULT_STEPS, metavar="K",
                   help=f"iterations of each ascent / random search (default {DEFAULT_STEPS}, "
                   f"at most {MAX_STEPS:,})")
    p.add_argument("--seed", type=count_type(2**32 - 1), default=0,
                   help="random seed, 0 to 2^32 − 1 (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document of every row")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run_command)
