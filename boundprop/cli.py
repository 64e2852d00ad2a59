"""Command-line interface: ``boundprop inspect|ops ...``.

Exit codes: 0 success, 1 a negative verdict (invalid certificate, violated property), 2 bad
input or usage (one-line message on stderr, never a traceback), 3 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from boundprop import __version__
from boundprop.errors import BoundpropError

EXAMPLES = """examples:
  boundprop inspect models/lenet.onnx
  boundprop inspect model.onnx --input-shape 1,3,32,32 --json
  boundprop ops
"""


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape like 1,3,32,32") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape of positive integers")
    return dims


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="ONNX model file")
    p.add_argument("--input-shape", type=_shape, metavar="D0,D1,...",
                   help="static input shape, for models with dynamic dimensions")
    p.add_argument("--input", dest="input_name", metavar="NAME",
                   help="graph input to analyse, for models with several")
    p.add_argument("--output", dest="output_name", metavar="NAME",
                   help="graph output to analyse (default: the first)")


def _load(args: argparse.Namespace):
    import boundprop as bp

    return bp.load(args.model, input_shape=args.input_shape, input_name=args.input_name,
                   output_name=args.output_name)


def cmd_inspect(args: argparse.Namespace) -> int:
    net = _load(args)
    if args.json:
        doc = {
            "model": net.source, "sha256": net.sha256, "opset": net.opset,
            "input": {"name": net.input_name, "shape": list(net.input_shape)},
            "output": {"name": net.output_name, "shape": list(net.output_shape)},
            "parameters": net.num_parameters(),
            "nodes": [{"index": k, "node": n.name, "family": n.family, "op": n.op.kind,
                       "onnx_op": n.onnx_op, "inputs": list(n.inputs), "shape": list(n.shape),
                       "parameters": n.op.num_parameters(), "detail": n.op.describe()}
                      for k, n in enumerate(net.nodes)],
        }
        print(json.dumps(doc, indent=2))
    else:
        print(net.summary())
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    from boundprop.ops import supported_onnx_ops

    ops = supported_onnx_ops()
    print(json.dumps(ops) if args.json else "\n".join(ops))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boundprop", description="Sound bounds, Lipschitz and smoothness certificates "
        "for ONNX neural networks.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"boundprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="print the IR of a model, one line per node")
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("ops", help="list the supported ONNX op types")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ops)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BoundpropError as e:
        print(f"boundprop: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("boundprop: error: out of memory; try a smaller model or input set",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("boundprop: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback for the user; say it is our bug
        msg = " ".join(str(e).split())[:300]
        print(f"boundprop: internal error: {type(e).__name__}: {msg} (please report this with "
              "the model)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
