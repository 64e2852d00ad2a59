"""Command-line interface: ``boundprop certify|inspect|ops ...``.

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
  boundprop certify models/mlp_784_100_100_10_relu.onnx
  boundprop certify model.onnx --box 0 1 --method interval --json
  boundprop certify models/lenet.onnx --norm inf -o cert.json
  boundprop check cert.json models/lenet.onnx          # exit 0 valid, 1 invalid
  boundprop audit cert.json models/lenet.onnx          # empirical lower bounds, tightness
  boundprop report cert.json -o report.html
  boundprop compare models/vgg_small_relu.onnx models/vgg_small_smooth.onnx --global
  boundprop inspect model.onnx --input-shape 1,3,32,32 --json
  boundprop ops

exit status: 0 success / valid, 1 negative verdict (invalid certificate, violation, property
not verified), 2 bad input or usage, 3 internal error.
"""


# Modules that register subcommands (check, audit, report/compare).
PLUGGED_COMMANDS = ("checker", "audit", "report", "gn.command")


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


def _array_arg(text: str, what: str):
    """A number, or a .npy / .txt file of numbers."""
    import numpy as np

    from boundprop.sets import InputSetError

    try:
        return float(text)
    except ValueError:
        pass
    try:
        return np.load(text) if text.endswith(".npy") else np.loadtxt(text)
    except (OSError, ValueError) as e:
        raise InputSetError(f"{what} '{text}' is neither a number nor a readable .npy/.txt "
                            f"file ({e})") from None


def _input_set(args: argparse.Namespace, net):
    from boundprop.sets import Box, L2Ball, LinfBall, default_input_set

    if args.box:
        s = Box(_array_arg(args.box[0], "--box lower"), _array_arg(args.box[1], "--box upper"))
    elif args.linf:
        s = LinfBall(_array_arg(args.linf[0], "--linf center"), float(args.linf[1]),
                     clip=tuple(args.clip) if args.clip else None)
    elif args.l2:
        s = L2Ball(_array_arg(args.l2[0], "--l2 center"), float(args.l2[1]))
    else:
        return default_input_set(net)
    return s.fit(net.input_shape)


def _describe_set(s) -> str:
    d = s.to_json()
    if d["kind"] == "box":
        lo, hi = s.lower, s.upper
        if lo.min() == lo.max() and hi.min() == hi.max():
            return f"box [{lo.flat[0]:g}, {hi.flat[0]:g}]^{lo.size}"
        return f"box of {lo.size} intervals, widths {float((hi - lo).min()):g}..." \
               f"{float((hi - lo).max()):g}"
    if d["kind"] == "linf":
        return f"l-inf ball of radius {d['eps']:g}" + (f", clipped to {d['clip']}"
                                                       if d.get("clip") else "")
    return f"l2 ball of radius {d['radius']:g}"


def _fmt(x) -> str:
    if x is None:
        return "-"
    return "inf" if x == float("inf") else f"{x:.6g}"


def cmd_certify(args: argparse.Namespace) -> int:
    from boundprop.certify import certify

    net = _load(args)
    if args.vnnlib:
        return _certify_vnnlib(args, net)
    if args.execution != "real" and args.wrt == "params":
        raise BoundpropError("--execution float32 applies to output bounds w.r.t. the input")
    s = None if args.global_ else _input_set(args, net)
    targets = None
    if args.targets:
        targets = _array_arg(args.targets, "--targets")
    if args.wrt == "params" and s is None:
        raise BoundpropError("--wrt params needs the data: give --box/--linf/--l2 (a batch "
                             "is --box X.npy X.npy) or rely on the model's declared set")
    cert = certify(net, s, norm=args.norm, wrt=args.wrt, method=args.method,
                   param_radius=args.radius, loss=args.loss, targets=targets,
                   free=tuple(args.free or ()), symbolic=True)
    if args.execution == "float32" and s is not None:
        from boundprop.analysis import output_bounds

        b32 = output_bounds(net, s, args.method, "float32")
        cert.output_lower, cert.output_upper = b32.lower, b32.upper
        cert.execution = "float32"
    if args.output:
        cert.save(args.output)
    if args.json:
        print(json.dumps(cert.to_json()))
        return 0
    if args.quiet:
        return 0
    c = cert.constants
    where = "all inputs (global)" if s is None else _describe_set(s)
    wrt = "input" if args.wrt == "input" else f"parameters (ball of radius {args.radius:g})"
    print(f"{net.source}: certified over {where}, norm {c.norm}, w.r.t. the {wrt}, "
          f"{cert.elapsed_s:.3f} s")
    if cert.output_lower is not None:
        print(f"{'output':>8}  {'lower':>14}  {'upper':>14}  {'width':>12}")
        lows, ups = cert.output_lower.reshape(-1), cert.output_upper.reshape(-1)
        for i, (lo, hi) in enumerate(zip(lows, ups)):
            if i == 20 and len(lows) > 24:
                print(f"{'...':>8}  ({len(lows) - 20} more; --json prints all)")
                break
            print(f"{i:>8}  {lo:>14.6g}  {hi:>14.6g}  {hi - lo:>12.4g}")
    print(f"\nper layer (ℓ, L, B of each node's output as a function of the {args.wrt}; "
          "ℓφ, Lφ: the op's own):")
    print(f"{'#':>4}  {'node':<26} {'op':<15} {'ℓφ':>10} {'Lφ':>10} {'ℓ':>11} {'L':>11} "
          f"{'B':>11}")
    for lc in c.layers:
        print(f"{lc.index:>4}  {lc.node[:26]:<26} {lc.op[:15]:<15} {_fmt(lc.op_lipschitz):>10} "
              f"{_fmt(lc.op_smoothness):>10} {_fmt(lc.lipschitz):>11} {_fmt(lc.smoothness):>11} "
              f"{_fmt(lc.bound):>11}")
    print(f"\nLipschitz ℓ  = {_fmt(c.lipschitz)}   (layer product {_fmt(c.lipschitz_product)}"
          + (f", Jacobian enclosure {_fmt(c.lipschitz_enclosure)}" if c.lipschitz_enclosure
             is not None else f"; {c.enclosure_note}" if c.enclosure_note else "") + ")")
    print(f"smoothness L = {_fmt(c.smoothness)}"
          + (f"   ({c.smoothness_reason})" if c.smoothness_reason else ""))
    print(f"bound B      = {_fmt(c.bound)}")
    if cert.objective is not None:
        o = cert.objective
        print(f"objective ({o.loss}, {o.reduction}): ℓ_F = {_fmt(o.lipschitz)}, "
              f"L_F = {_fmt(o.smoothness)}, certified step 1/L_F = {o.step_size:.6g}")
    if args.symbolic or args.latex:
        import sympy as sp

        for which in ("lipschitz", "smoothness", "bound"):
            expr = c.formula(which, tuple(args.free)) if args.free else getattr(
                c, f"{which}_formula")
            text = c.latex(which, tuple(args.free) if args.free else None) if args.latex \
                else sp.sstr(expr)
            print(f"\n{which} = {text}")
        if not args.latex:
            used = set()
            for which in ("lipschitz", "smoothness", "bound"):
                used |= getattr(c, f"{which}_formula").free_symbols
            print("\nwhere:")
            for sym in sorted(used, key=str):
                print(f"  {str(sym):<22} = {_fmt(c.values.get(sym))}  {c.meaning.get(sym, '')}")
    if args.output:
        print(f"\ncertificate written to {args.output}")
    return 0


def _certify_vnnlib(args: argparse.Namespace, net) -> int:
    from boundprop.verifier import verify

    v = verify(net, args.vnnlib, method=args.method)
    if args.json:
        print(json.dumps(v.to_json()))
    elif not args.quiet:
        print(f"{net.source} with {args.vnnlib}: {v.status}"
              + f" (certified margin {v.margin:.4g})"
              + f", {v.elapsed_s:.3f} s")
    return 0 if v.status == "verified" else 1


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

    p = sub.add_parser(
        "inspect", help="print the IR of a model, one line per node",
        epilog="examples:\n  boundprop inspect models/lenet.onnx\n"
        "  boundprop inspect model.onnx --input-shape 1,3,32,32 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser(
        "certify", help="certified output bounds over an input set (default: the model's own)",
        description="Certified bounds on every output of the model over an input set. Without "
        "a set option, the set the model declares in its metadata is used.",
        epilog="examples:\n  boundprop certify models/mlp_784_100_100_10_relu.onnx\n"
        "  boundprop certify model.onnx --box 0 1 --method interval\n"
        "  boundprop certify model.onnx --linf x.npy 0.03 --clip 0 1 --json\n"
        "  boundprop certify model.onnx --global --norm inf --symbolic\n"
        "  boundprop certify model.onnx --box X.npy X.npy --wrt params --radius 0.1 \\\n"
        "      --loss squared --targets Y.npy -o cert.json\n"
        "  boundprop certify ACASXU.onnx --vnnlib prop_1.vnnlib",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--box", nargs=2, metavar=("LO", "HI"),
                       help="box [LO, HI]: numbers (broadcast) or .npy files")
    group.add_argument("--linf", nargs=2, metavar=("X", "EPS"),
                       help="l-inf ball around X (number or .npy) of radius EPS")
    group.add_argument("--l2", nargs=2, metavar=("X", "R"), help="l2 ball around X of radius R")
    group.add_argument("--vnnlib", metavar="FILE", help="a VNN-LIB property: prints the verdict "
                       "(exit 0 verified, 1 falsified or unknown)")
    p.add_argument("--clip", nargs=2, type=float, metavar=("LO", "HI"),
                   help="with --linf: intersect the ball with the box [LO, HI]")
    p.add_argument("--method", choices=["interval", "linear"], default="linear",
                   help="interval (fast) or linear (back-substitution, tighter; default)")
    p.add_argument("--execution", choices=["real", "float32"], default="real",
                   help="enclose the real-arithmetic function (default) or also its float32 "
                   "evaluation, as onnxruntime computes it")
    p.add_argument("--norm", choices=["2", "inf", "1"], default="2",
                   help="norm of the Lipschitz/smoothness constants (default 2)")
    p.add_argument("--wrt", choices=["input", "params"], default="input",
                   help="constants w.r.t. the input (default) or the dense/conv parameters")
    p.add_argument("--radius", type=float, default=0.0, metavar="RHO",
                   help="with --wrt params: radius of the parameter ball around the current "
                   "weights of each layer (default 0)")
    p.add_argument("--loss", choices=["squared", "cross_entropy"],
                   help="with --wrt params: constants of the loss on top, and the certified "
                   "step size 1/L")
    p.add_argument("--targets", metavar="Y", help="targets of the loss (number or .npy)")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="global constants (over all inputs) instead of on the input set")
    p.add_argument("--symbolic", action="store_true",
                   help="print the global formulas of ℓ, L, B in the named constants")
    p.add_argument("--latex", action="store_true", help="print the formulas as LaTeX")
    p.add_argument("--free", nargs="+", metavar="NAME",
                   help="keep these constants symbolic in the formulas (e.g. eps_bn)")
    p.add_argument("-o", "--output-cert", dest="output", metavar="CERT.json",
                   help="write the certificate (JSON) to this file")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.set_defaults(func=cmd_certify)

    p = sub.add_parser("ops", help="list the supported ONNX op types")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ops)

    # Commands that live with their own module: each module's register(sub) adds its
    # parser(s) and sets func; its imports stay light so --help is fast.
    import importlib

    for module in PLUGGED_COMMANDS:
        importlib.import_module(f"boundprop.{module}").register(sub)
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
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours; silence the flush at exit.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as e:  # never a traceback for the user; say it is our bug
        msg = " ".join(str(e).split())[:300]
        print(f"boundprop: internal error: {type(e).__name__}: {msg} (please report this with "
              "the model)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
