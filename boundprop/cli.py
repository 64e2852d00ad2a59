"""Command-line interface: ``boundprop certify|inspect|ops ...``.

Exit codes: 0 success, 1 a negative verdict (invalid certificate, violated property), 2 bad
input or usage (one-line message on stderr, never a traceback), 3 internal error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import re
import sys
import warnings
from collections.abc import Sequence

import numpy as np

from boundprop import __version__
from boundprop.errors import BoundpropError, BoundpropNote
from boundprop.safe_io import (
    check_input_file,
    json_text,
    load_array,
    os_reason,
    resolve_output_path,
    short_path,
)
from boundprop.sets import Box, L2Ball, LinfBall, default_input_set

EXAMPLES = """examples:
  boundprop certify models/mlp_784_100_100_10_relu.onnx
  boundprop certify model.onnx --box 0 1 --method interval --json
  boundprop certify models/lenet.onnx --norm inf -o cert.json
  boundprop check cert.json models/lenet.onnx          # exit 0 valid, 1 invalid
  boundprop audit cert.json models/lenet.onnx          # empirical lower bounds, tightness
  boundprop report cert.json -o report.html
  boundprop compare models/vgg_small_relu.onnx models/vgg_small_smooth.onnx --global
  boundprop inspect model.onnx --input-shape 1,3,32,32 --json
  boundprop ops --rules                                # which rules each IR primitive has
  boundprop verify model.onnx prop.vnnlib --timeout 60 -o result.txt   # sat/unsat/unknown

exit status: 0 success / valid, 1 negative verdict (invalid certificate, violation, property
not verified; for verify: unknown or timeout), 2 bad input or usage, 3 internal error.
"""


# Subcommands that live with their own module: command -> (the module whose register(sub) adds
# its parser, the one-line help `boundprop --help` lists). The module is imported only when the
# command is parsed (it may import onnx, onnxruntime, sympy, scipy), so --help stays fast;
# tests/test_cli.py checks that each help line is the one its module registers.
DEFERRED_COMMANDS = {
    "check": ("boundprop.checker",
              "re-verify a certificate against a model (exit 0 valid, 1 invalid)"),
    "audit": ("boundprop.audit.command",
              "empirical lower bounds and tightness ratios of a certificate"),
    "report": ("boundprop.report", "a readable report (html, md, text) of a certificate"),
    "compare": ("boundprop.report",
                "certify several models and compare their ℓ, L, B side by side"),
    "gn": ("boundprop.gn.command", "Gauss-Newton fit of inputs or weights through onnxruntime"),
    "verify": ("boundprop.verify_command",
               "decide a VNN-LIB property (VNN-COMP interface: sat, unsat, unknown, timeout)"),
    "run": ("boundprop.runner.command",
            "run a suite of jobs (instances.csv or JSON lines), resumable, in parallel"),
    "lipschitz": ("boundprop.lipschitz.command",
                  "local Lipschitz constant on a set: certified, with a lower bound beside it"),
}

# Tokens that are numbers, not options: argparse alone takes only -1 and -0.5 for numbers, so
# `--box -1e-3 1e-3` or `--clip -inf inf` were "expected 2 arguments" usage errors.
NEGATIVE_NUMBER = re.compile(r"^-(\d+\.?\d*(e[-+]?\d+)?|\.\d+(e[-+]?\d+)?|inf|infinity|nan)$",
                             re.IGNORECASE)

# The floating-point warnings numpy emits (overflow, 0·∞, ...): never spilled on stderr.
NUMPY_FP_WARNING = re.compile(r"(overflow|invalid value|divide by zero|underflow) encountered")


class Parser(argparse.ArgumentParser):
    """argparse with negative numbers in any notation as values (-1e-3, -inf) and usage
    errors on one line (what is wrong, and where to look)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = NEGATIVE_NUMBER

    def error(self, message: str):  # noqa: D102 - argparse's hook
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}; see "
                     f"'{self.prog} --help'\n")


def number(text: str, what: str) -> float:
    """The float ``text`` spells (also inf, -inf, nan: the sets and checks decide on those);
    a one-line :class:`BoundpropError` naming ``what`` otherwise."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise BoundpropError(f"{what} '{text[:60]}' is not a number") from None


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


class Commands(argparse._SubParsersAction):
    """The subcommands' action; a command of :data:`DEFERRED_COMMANDS` is listed (name and help,
    in ``boundprop --help`` and in the choices of a usage error) before its parser exists: the
    parser is built by its module's ``register(sub)`` when it is first looked up (the command
    is parsed, or ``choices[name]`` read)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._name_parser_map = self.choices = DeferredParsers(self)

    def defer(self, name: str, module: str, help: str) -> None:
        """List command ``name`` with ``help``; its parser comes from ``module``'s register."""
        self._choices_actions.append(self._ChoicesPseudoAction(name, (), help))
        self._name_parser_map[name] = module

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        if not isinstance(self._name_parser_map.get(name), str):  # .get: no registering
            return super().add_parser(name, **kwargs)
        # The deferred command's module registers it: it keeps its place in the listing.
        kwargs.pop("help", None)
        kwargs.setdefault("prog", f"{self._prog_prefix} {name}")
        parser = self._parser_class(**kwargs)
        self._name_parser_map[name] = parser
        return parser


class DeferredParsers(dict):
    """Command name -> parser, where a deferred command's value is its module's name until the
    parser is looked up: then the module is imported and registers it."""

    def __init__(self, commands: Commands) -> None:
        super().__init__()
        self.commands = commands

    def __getitem__(self, name: str) -> argparse.ArgumentParser:
        value = super().__getitem__(name)
        if isinstance(value, str):
            importlib.import_module(value).register(self.commands)
            value = super().__getitem__(name)
        return value


def _load(args: argparse.Namespace):
    from boundprop.importer import load  # lazy: onnx (--help stays fast)

    # Regular files only (a FIFO would hang), and a 5,000-character path is a one-line error.
    check_input_file(args.model, "model", 2**62, "give an ONNX file")
    cache = getattr(args, "model_cache", None)  # the batch runner's workers keep their models
    key = None
    if cache is not None:
        st = os.stat(args.model)
        key = (os.path.realpath(args.model), st.st_size, st.st_mtime_ns, args.input_shape,
               args.input_name, args.output_name)
        if key in cache:
            return cache[key]
    net = load(args.model, input_shape=args.input_shape, input_name=args.input_name,
               output_name=args.output_name)
    if cache is not None:
        cache[key] = net
    return net


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


def _array_arg(text: str, what: str, files: list[str]):
    """A number, or a .npy / .txt file of numbers (read safely, its path added to
    ``files``: the inputs an output must not overwrite)."""
    try:
        return float(text)
    except ValueError:
        pass
    files.append(text)
    return load_array(text, what)


def _input_set(args: argparse.Namespace, net, files: list[str]):
    if args.box:
        s = Box(_array_arg(args.box[0], "--box lower", files),
                _array_arg(args.box[1], "--box upper", files))
    elif args.linf:
        s = LinfBall(_array_arg(args.linf[0], "--linf center", files),
                     number(args.linf[1], "--linf radius EPS"),
                     clip=tuple(args.clip) if args.clip else None)
    elif args.l2:
        s = L2Ball(_array_arg(args.l2[0], "--l2 center", files),
                   number(args.l2[1], "--l2 radius R"))
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


def _check_certify_options(args: argparse.Namespace) -> None:
    """One-line errors for options that would be silently ignored or are out of range."""
    has_set = bool(args.box or args.linf or args.l2)
    if args.clip and not args.linf:
        raise BoundpropError("--clip applies to an ℓ∞ ball: use it with --linf X EPS (a box "
                             "is already clipped: --box LO HI)")
    if args.vnnlib and (args.output is not None or args.wrt != "input" or args.global_):
        raise BoundpropError("--vnnlib prints a verdict: it takes no -o, --wrt params or "
                             "--global (certify without --vnnlib for a certificate)")
    if args.global_ and has_set:
        raise BoundpropError("--global certifies over all inputs: drop --box/--linf/--l2, or "
                             "drop --global to certify on the set")
    if args.global_ and args.execution != "real":
        raise BoundpropError("--execution float32 encloses outputs over an input set; it does "
                             "not apply with --global")
    if args.execution != "real" and args.wrt == "params":
        raise BoundpropError("--execution float32 applies to output bounds w.r.t. the input")
    if args.targets is not None and not args.loss:
        raise BoundpropError("--targets are the targets of a loss: add --loss squared or "
                             "--loss cross_entropy (with --wrt params)")
    if not (math.isfinite(args.radius) and args.radius >= 0):
        raise BoundpropError(f"--radius {args.radius:g} must be a finite number ≥ 0")
    if args.radius and args.wrt != "params":
        raise BoundpropError("--radius is the parameter-ball radius: it applies with "
                             "--wrt params")


def cmd_certify(args: argparse.Namespace) -> int:
    from boundprop.certify import certify  # lazy: sympy, onnx (--help stays fast)

    _check_certify_options(args)
    inputs = [args.model] + ([args.vnnlib] if args.vnnlib else [])
    if args.output is not None:  # refuse a bad -o before the work, not after
        resolve_output_path(args.output, "-o certificate", inputs)
    net = _load(args)
    if args.vnnlib:
        return _certify_vnnlib(args, net)
    s = None if args.global_ else _input_set(args, net, inputs)
    targets = None
    if args.targets is not None:
        targets = _array_arg(args.targets, "--targets", inputs)
    if args.wrt == "params" and s is None:
        raise BoundpropError("--wrt params needs the data: give --box/--linf/--l2 (a batch "
                             "is --box X.npy X.npy) or rely on the model's declared set")
    cert = certify(net, s, norm=args.norm, wrt=args.wrt, method=args.method,
                   param_radius=args.radius, loss=args.loss, targets=targets,
                   free=tuple(args.free or ()), symbolic=True)
    if args.execution == "float32" and s is not None:
        from boundprop.analysis import output_bounds  # lazy: onnx

        b32 = output_bounds(net, s, args.method, "float32")
        cert.output_lower, cert.output_upper = b32.lower, b32.upper
        cert.execution = "float32"
        if b32.note:  # which node may overflow float32: say it rather than a generic note
            note(args, b32.note)
    if args.output is not None:  # strict JSON: a NaN is an error before anything is written
        cert.save(args.output, protect=inputs)
    _note_infinite_bounds(args, cert)
    if args.json:
        print(json_text(cert.to_json()))
        return 0
    if args.quiet:
        return 0
    _print_certificate(args, net, cert, s)
    return 0


def _note_infinite_bounds(args: argparse.Namespace, cert) -> None:
    """Say once, in words, when output bounds are infinite (the set is so large that float64
    overflows): the certificate is sound ("inf" bounds) but bounds nothing there."""
    if cert.output_lower is None or getattr(args, "fp_noted", False):
        return
    lo, hi = np.asarray(cert.output_lower), np.asarray(cert.output_upper)
    n = int(np.sum(~np.isfinite(lo)) + np.sum(~np.isfinite(hi)))
    if n:
        note(args, f"{n} of the {lo.size + hi.size} output bounds are infinite: the values "
                   "overflow float64 on this input set (or float32, with --execution float32); "
                   "they are written as \"inf\" (sound, but no bound): use a smaller set")


def note(args: argparse.Namespace, message: str) -> None:
    """One line on stderr, once per run: the run's floating-point warnings are explained."""
    print(f"boundprop: note: {message}", file=sys.stderr)
    args.fp_noted = True


def _print_certificate(args: argparse.Namespace, net, cert, s) -> None:
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
             is not None else f"; {c.enclosure_note}" if c.enclosure_note else "")
          + (f", LipSDP-Neuron {_fmt(c.lipschitz_lmi)}" if c.lipschitz_lmi is not None
             else f"; LipSDP-Neuron: {c.lmi_note}" if c.lmi_note else "") + ")")
    print(f"smoothness L = {_fmt(c.smoothness)}"
          + (f"   ({c.smoothness_reason})" if c.smoothness_reason else "")
          + (f"   (curvature method {_fmt(c.smoothness_curvature)})"
             if c.smoothness_curvature is not None and not c.smoothness_reason else ""))
    print(f"bound B      = {_fmt(c.bound)}")
    if cert.objective is not None:
        o = cert.objective
        print(f"objective ({o.loss}, {o.reduction}): ℓ_F = {_fmt(o.lipschitz)}, "
              f"L_F = {_fmt(o.smoothness)}, certified step 1/L_F = {o.step_size:.6g}")
    if args.symbolic or args.latex:
        import sympy as sp  # lazy: heavy, only for the formulas

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


def _certify_vnnlib(args: argparse.Namespace, net) -> int:
    from boundprop.verifier import verify  # lazy: onnx, onnxruntime

    v = verify(net, args.vnnlib, method=args.method)
    if args.json:
        print(json_text(v.to_json()))
    elif not args.quiet:
        print(f"{net.source} with {args.vnnlib}: {v.status}"
              + f" (certified margin {v.margin:.4g})"
              + f", {v.elapsed_s:.3f} s")
    return 0 if v.status == "verified" else 1


def cmd_ops(args: argparse.Namespace) -> int:
    if args.rules:
        # lazy: onnx (importing the ops package registers every primitive class)
        from boundprop.ops.contract import rules_matrix, rules_matrix_rows

        print(json.dumps(rules_matrix_rows()) if args.json else rules_matrix())
        return 0
    from boundprop.ops import supported_onnx_ops  # lazy: onnx

    ops = supported_onnx_ops()
    print(json.dumps(ops) if args.json else "\n".join(ops))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="boundprop", description="Sound bounds, Lipschitz and smoothness certificates "
        "for ONNX neural networks.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"boundprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", action=Commands)
    _add_inspect(sub)
    _add_certify(sub)
    _add_ops(sub)
    for name, (module, help_line) in DEFERRED_COMMANDS.items():
        sub.defer(name, module, help_line)
    return parser


def _add_inspect(sub: Commands) -> None:
    p = sub.add_parser(
        "inspect", help="print the IR of a model, one line per node",
        epilog="examples:\n  boundprop inspect models/lenet.onnx\n"
        "  boundprop inspect model.onnx --input-shape 1,3,32,32 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_model_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_inspect)


def _add_certify(sub: Commands) -> None:
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
    group = add_set_args(p)
    group.add_argument("--vnnlib", metavar="FILE", help="a VNN-LIB property: prints the verdict "
                       "(exit 0 verified, 1 falsified or unknown)")
    p.add_argument("--method", choices=["interval", "linear", "alpha"], default="linear",
                   help="interval (fast), linear (back-substitution, tighter; default) or "
                   "alpha (linear with optimised slopes, tightest, slower)")
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


def add_set_args(p: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """The input-set options (--box, --linf [--clip], --l2; read by ``_input_set``); returns
    their exclusive group, for a command to add alternatives."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--box", nargs=2, metavar=("LO", "HI"),
                       help="box [LO, HI]: numbers (broadcast) or .npy files")
    group.add_argument("--linf", nargs=2, metavar=("X", "EPS"),
                       help="l-inf ball around X (number or .npy) of radius EPS")
    group.add_argument("--l2", nargs=2, metavar=("X", "R"), help="l2 ball around X of radius R")
    p.add_argument("--clip", nargs=2, type=float, metavar=("LO", "HI"),
                   help="with --linf: intersect the ball with the box [LO, HI]")
    return group


def _add_ops(sub: Commands) -> None:
    p = sub.add_parser("ops", help="list the supported ONNX op types")
    p.add_argument("--rules", action="store_true",
                   help="the matrix IR primitive × rule: which optional rules (interval, "
                   "back-substitution, constants, Jacobian, onnxruntime interval, ...) each "
                   "primitive implements")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_ops)


def main(argv: Sequence[str] | None = None, model_cache: dict | None = None) -> int:
    """``boundprop ARGV``; its exit status. ``model_cache``: loaded models kept between calls
    (the batch runner's workers), keyed by file identity and import options."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.model_cache = model_cache
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with warnings.catch_warnings(record=True) as caught:
        status = _run(args)
    # After an error, its one line is all there is to say.
    _replay_warnings(args, caught, note_fp=status in (0, 1))
    return status


def _replay_warnings(args: argparse.Namespace, caught: list, note_fp: bool) -> None:
    """numpy's floating-point warnings (overflow, 0·∞ → NaN, …: 10–30 lines of them on a
    huge input set) become one note line, unless the command explained them already; each
    distinct :class:`BoundpropNote` is one note line (none after an error); other warnings are
    shown as usual."""
    fp = 0
    notes: set[str] = set()
    for w in caught:
        if issubclass(w.category, RuntimeWarning) and NUMPY_FP_WARNING.search(str(w.message)):
            fp += 1
        elif issubclass(w.category, BoundpropNote):  # how the input was read: once, one line
            if note_fp and str(w.message) not in notes:
                notes.add(str(w.message))
                print(f"boundprop: note: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if fp and note_fp and not getattr(args, "fp_noted", False):
        print(f"boundprop: note: {fp} floating-point overflow or invalid-value warnings were "
              "silenced (values beyond float64 range are treated as infinite)", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    """The command's exit status; errors as one line on stderr (2 bad input, 3 our bug)."""
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
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as e:  # a path the user gave that the OS refuses (name too long, ...)
        where = f" {short_path(e.filename)}" if e.filename else ""
        print(f"boundprop: error: cannot use{where}: {os_reason(e)}; check the path",
              file=sys.stderr)
        return 2
    except RecursionError:
        print("boundprop: error: the input is nested too deeply to process; simplify it",
              file=sys.stderr)
        return 2
    except Exception as e:  # never a traceback for the user; say it is our bug
        msg = " ".join(str(e).split())[:300]
        print(f"boundprop: internal error: {type(e).__name__}: {msg} (please report this with "
              "the model)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
