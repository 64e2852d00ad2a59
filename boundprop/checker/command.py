"""``boundprop check CERT MODEL``: exit 0 valid, 1 invalid (the first failing item printed),
2 unreadable input."""

from __future__ import annotations

import argparse
import json

from boundprop.checker.result import CheckResult
from boundprop.checker.run import check


def register(sub) -> None:
    """Add the ``check`` subcommand to the CLI's subparsers ``sub``."""
    p = sub.add_parser(
        "check", help="re-verify a certificate against a model (exit 0 valid, 1 invalid)",
        description="Independent re-verification of a certificate: model hash, schema, "
        "re-propagated enclosures, every named constant re-derived (operator norms by a "
        "Cholesky certificate), every composition in exact rational arithmetic. Exit 0: "
        "valid; 1: invalid (the first failing item is printed); 2: unreadable input. The "
        "prover functions the 'recomputed' items trust are listed.",
        epilog="examples:\n  boundprop certify models/mlp_tanh.onnx -o cert.json\n"
        "  boundprop check cert.json models/mlp_tanh.onnx\n"
        "  boundprop check cert.json models/mlp_tanh.onnx --json --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("certificate", help="certificate JSON written by boundprop certify -o")
    p.add_argument("model", help="the ONNX model it is about")
    p.add_argument("--verbose", "-v", action="store_true", help="print every checked item")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.set_defaults(func=run)


def _print_result(args: argparse.Namespace, result: CheckResult) -> None:
    if args.verbose:
        for it in result.items:
            print(f"  {'ok ' if it.ok else 'BAD'} [{it.how:<11}] {it.name}: {it.detail}")
    summary = ", ".join(f"{v} {k}" for k, v in sorted(result.counts().items()))
    ratio = "" if not result.prover_elapsed_s else \
        f"; {result.elapsed_s / result.prover_elapsed_s:.2f}× the prover's time"
    if result.valid:
        print(f"{args.certificate}: valid for {args.model} ({len(result.items)} items: "
              f"{summary}; {result.elapsed_s:.2f} s{ratio})")
        if result.unverified:
            print(f"  not verified (informational): {', '.join(result.unverified)}")
    else:
        print(f"{args.certificate}: INVALID for {args.model}: {result.reason}")
    if result.trusted:
        print(f"  trusted prover code (recomputed items): {'; '.join(result.trusted)}")


def run(args: argparse.Namespace) -> int:
    """The ``check`` command: its exit status."""
    result = check(args.certificate, args.model, raise_on_invalid=False)
    if args.json:
        print(json.dumps(result.to_json()))
    elif not args.quiet:
        _print_result(args, result)
    return 0 if result.valid else 1
