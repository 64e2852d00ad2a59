"""The ``boundprop report`` and ``boundprop compare`` subcommands."""

from __future__ import annotations

import argparse
import os
import sys

from boundprop.errors import BoundpropError
from boundprop.report.compare import compare_models, render_comparison
from boundprop.report.data import load_audit, load_certificate, write_output
from boundprop.report.plot import (
    PLOT_NOTE,
    PlotUnavailable,
    comparison_plot_png,
    figure_classes,
)
from boundprop.report.render import render_report
from boundprop.report.verdicts import is_negative, run_checker
from boundprop.safe_io import resolve_output_path

REPORT_FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md",
                  ".txt": "text", ".json": "json"}
COMPARE_FORMATS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
                   ".csv": "csv", ".txt": "text", ".json": "json"}


def _format_of(path: str, table: dict[str, str], what: str) -> str:
    """The format ``table`` gives the extension of ``path``; a one-line error if none."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in table:
        raise BoundpropError(f"cannot tell the {what} format of '{path}' from its extension; "
                             "use " + ", ".join(sorted(set(table))))
    return table[ext]


def cmd_report(args: argparse.Namespace) -> int:
    """``boundprop report``: write or print the report; exit 1 when a verdict is negative."""
    out = args.output
    fmt = "json" if args.json else (_format_of(out, REPORT_FORMATS, "report") if out
                                    else "text")
    inputs = tuple(p for p in (args.cert, args.model, args.audit) if p)
    if out is not None:  # checked before any work; never onto one of the inputs
        resolve_output_path(out, "-o", inputs)
    doc = load_certificate(args.cert)
    audit = load_audit(args.audit) if args.audit else None
    if args.model and not os.path.isfile(args.model):
        raise BoundpropError(f"model '{args.model}' not found (--model runs the checker on it)")
    if args.max_outputs < 0:
        raise BoundpropError("--max-outputs must be >= 0")
    check = run_checker(args.cert, args.model) if args.model else None
    plot_path = None
    if fmt == "md" and out:
        plot_path = os.path.join(os.path.dirname(out), os.path.splitext(os.path.basename(out))[0]
                                 + ".png")
        resolve_output_path(plot_path, "plot", inputs)
    text = render_report(doc, fmt, audit=audit, check=check, plot_path=plot_path,
                         max_outputs=args.max_outputs)
    if out:
        write_output(out, text, inputs)
        print(f"report written to {out}"
              + (f" (plot: {plot_path})" if plot_path and os.path.exists(plot_path)
                 and f"]({os.path.basename(plot_path)})" in text else ""))
        if fmt in ("html", "md") and PLOT_NOTE in text:
            print(PLOT_NOTE, file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if is_negative(check, audit) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``boundprop compare``: certify the models, print and write the table and plot."""
    fmt = _format_of(args.output, COMPARE_FORMATS, "table") if args.output else None
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise BoundpropError(f"--plot '{args.plot}' must be a .png file")
        figure_classes()  # fail now, not after certifying every model
    if args.radius and args.wrt != "params":
        raise BoundpropError("--radius applies with --wrt params")

    quiet = args.json or args.quiet
    # Refuse a bad -o / --plot before certifying every model, not after.
    for out in (args.output, args.plot):
        if out is not None:
            resolve_output_path(out, "-o" if out == args.output else "--plot", args.models)

    def progress(r):
        # For a person watching a terminal; a script's stderr stays empty.
        if not quiet and sys.stderr.isatty():
            print(f"  certified {r['model']} in {r['seconds']:.2f} s", file=sys.stderr,
                  flush=True)

    rows = compare_models(args.models, norm=args.norm, global_=args.global_, wrt=args.wrt,
                          radius=args.radius, method=args.method, progress=progress)
    if args.json:
        sys.stdout.write(render_comparison(rows, "json"))
    elif not args.quiet:
        sys.stdout.write(render_comparison(rows, "text"))
    if args.output:
        write_output(args.output, render_comparison(rows, fmt), tuple(args.models))
        if not quiet:
            print(f"table written to {args.output}")
    if args.plot:
        write_output(args.plot, comparison_plot_png(rows), tuple(args.models))
        if not quiet:
            print(f"plot written to {args.plot}")
    return 0


def _compare_or_plot_error(args: argparse.Namespace) -> int:
    """cmd_compare, with a missing matplotlib as a one-line error."""
    try:
        return cmd_compare(args)
    except PlotUnavailable as e:
        raise BoundpropError(str(e)) from None


REPORT_EPILOG = """examples:
  boundprop certify models/lenet.onnx -o cert.json
  boundprop report cert.json                        # plain text on stdout
  boundprop report cert.json -o report.html         # one self-contained file, plot embedded
  boundprop report cert.json -o report.md           # plus report.png next to it
  boundprop report cert.json --model models/lenet.onnx --audit audit.json -o report.html
  boundprop report cert.json --json                 # per-layer series and globals as JSON

exit status: 0 report written; 1 written, but the checker rejected the certificate (or could
not run) or the audit found a violation; 2 bad input (unreadable certificate, unknown -o
extension), nothing written.
plots need matplotlib: pip install 'boundprop[plot]'
"""

COMPARE_EPILOG = """examples:
  boundprop compare models/vgg_small_relu.onnx models/vgg_small_smooth.onnx \\
      models/vgg_small_smooth_bn_train.onnx --global
  boundprop compare models/mlp_*.onnx --norm inf -o table.md --plot constants.png
  boundprop compare models/mlp_tanh.onnx models/mlp_sigmoid.onnx --wrt params --radius 0.1
  boundprop compare models/lenet.onnx models/vgg_small_relu.onnx --global --json

Without --global each model is certified on the input set it declares in its metadata.
"""


def register(sub) -> None:
    """Add the ``report`` and ``compare`` subcommands to the CLI's subparsers."""
    _add_report_parser(sub)
    _add_compare_parser(sub)


def _add_report_parser(sub) -> None:
    p = sub.add_parser(
        "report", help="a readable report (html, md, text) of a certificate",
        description="Render a certificate (boundprop certify -o CERT.json) as a report: the "
        "per-layer table of ℓφ, Lφ, ℓ, L, B, a plot of B, ℓ, L across depth, the input set, "
        "model, global constants and output bounds, and optionally the verdicts of the "
        "independent checker (--model) and of an audit (--audit). The format follows the "
        "extension of -o: .html, .md, .txt, .json; without -o, text on stdout.",
        epilog=REPORT_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cert", metavar="CERT", help="certificate JSON written by boundprop certify")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="report file: .html (self-contained), .md (+ <stem>.png), .txt, .json")
    p.add_argument("--model", metavar="MODEL",
                   help="ONNX model: run the independent checker and show its verdict")
    p.add_argument("--audit", metavar="AUDIT.json",
                   help="include an audit result (boundprop audit --json)")
    p.add_argument("--max-outputs", type=int, default=10, metavar="N",
                   help="output-bound rows shown (default 10; the count is always given)")
    p.add_argument("--json", action="store_true",
                   help="a JSON summary (per-layer series and globals) instead of the report")
    p.set_defaults(func=cmd_report)


def _add_compare_parser(sub) -> None:
    p = sub.add_parser(
        "compare", help="certify several models and compare their ℓ, L, B side by side",
        description="Certify each model with the same options and print their constants side "
        "by side: parameters, nodes, ℓ (certified, layer product, Jacobian enclosure), L, B "
        "and seconds. The architecture study as one command.",
        epilog=COMPARE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", metavar="MODEL", help="ONNX model files")
    p.add_argument("--norm", choices=["2", "inf", "1"], default="2",
                   help="norm of the constants (default 2)")
    p.add_argument("--global", dest="global_", action="store_true",
                   help="global constants (over all inputs) instead of on each declared set")
    p.add_argument("--wrt", choices=["input", "params"], default="input",
                   help="constants w.r.t. the input (default) or the parameters")
    p.add_argument("--radius", type=float, default=0.0, metavar="RHO",
                   help="with --wrt params: radius of the parameter ball (default 0)")
    p.add_argument("--method", choices=["interval", "linear", "alpha"], default="linear",
                   help="bounds used for local constants (default linear)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing (still writes -o/--plot)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="also write the table: .md, .html, .csv, .txt or .json")
    p.add_argument("--plot", metavar="FILE.png",
                   help="grouped bar chart of ℓ, L, B per model (log scale; needs "
                   "boundprop[plot])")
    p.set_defaults(func=_compare_or_plot_error)
