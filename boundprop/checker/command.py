"""``boundprop check CERT MODEL``: exit 0 valid, 1 invalid (the first failing item printed),
2 unreadable input."""

from __future__ import annotations

import argparse
import json

from boundprop.bab.proof import SCHEMA as PROOF_SCHEMA
from boundprop.checker.proof import check_proof
from boundprop.checker.result import CheckResult
from boundprop.checker.run import check
from boundprop.errors import BoundpropError
from boundprop.importer import load
from boundprop.safe_io import read_input_text
from boundprop.strict_json import loads_strict


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
        "  boundprop verify net.onnx prop.vnnlib --proof proof.json\n"
        "  boundprop check proof.json net.onnx prop.vnnlib\n"
        "  boundprop check cert.json models/mlp_tanh.onnx --json --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("certificate", help="certificate JSON written by boundprop certify -o, or "
                   "proof JSON written by boundprop verify --proof")
    p.add_argument("model", help="the ONNX model it is about")
    p.add_argument("property", nargs="?", help="for a proof: the VNN-LIB property it proves")
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


def _proof_document(path: str) -> dict | None:
    """The parsed file if it is a ``boundprop.proof/1`` document, else None."""
    text = read_input_text(path, "certificate or proof")
    doc = loads_strict(text, path, "pass a certificate or a proof written by boundprop")
    return doc if isinstance(doc, dict) and doc.get("schema") == PROOF_SCHEMA else None


def run_proof(args: argparse.Namespace, doc: dict) -> int:
    """``check PROOF MODEL PROPERTY``: exit 0 valid, 1 invalid."""
    if args.property is None:
        raise BoundpropError(f"{args.certificate} is a proof: give the VNN-LIB property too "
                             "(boundprop check PROOF MODEL PROPERTY)")
    r = check_proof(doc, load(args.model), args.model, args.property)
    if args.json:
        print(json.dumps({"valid": r.valid, "reason": r.reason, "leaves": r.leaves,
                          "elapsed_s": r.elapsed_s, "prover_seconds": r.prover_seconds}))
    elif not args.quiet:
        if r.valid:
            ratio = "" if not r.prover_seconds else \
                f"; {r.elapsed_s / r.prover_seconds:.2f}× the verifier's time"
            print(f"{args.certificate}: valid proof for {args.model} and {args.property} "
                  f"({r.leaves} leaves recomputed; {r.elapsed_s:.2f} s{ratio})")
        else:
            print(f"{args.certificate}: INVALID proof for {args.model}: {r.reason}")
    return 0 if r.valid else 1


def run(args: argparse.Namespace) -> int:
    """The ``check`` command: its exit status."""
    doc = _proof_document(args.certificate)
    if doc is not None:
        return run_proof(args, doc)
    result = check(args.certificate, args.model, raise_on_invalid=False)
    if args.json:
        print(json.dumps(result.to_json()))
    elif not args.quiet:
        _print_result(args, result)
    return 0 if result.valid else 1
