"""``boundprop report CERT`` and ``boundprop compare A.onnx B.onnx ...``.

``report`` turns a certificate (JSON written by ``boundprop certify -o``) into a readable report:
the per-layer table of ℓφ, Lφ, ℓ, L, B, a plot of B, ℓ, L across depth, the input set, the model,
the global constants and output bounds, and optionally two verdicts: the independent checker
(``--model``) and an audit file (``--audit``, written by ``boundprop audit --json``). Formats by
the extension of ``-o``: ``.html`` (one self-contained file, the plot embedded), ``.md`` (the
plot written next to it as ``<stem>.png``), ``.txt`` or no ``-o`` (plain text), ``.json``.

``compare`` certifies several models with the same options and prints their global constants
side by side (the architecture study as one command).

Python API: :func:`render_report`, :func:`report_summary`, :func:`load_certificate`,
:func:`compare_models`, :func:`render_comparison`, :func:`layer_plot_png`,
:func:`comparison_plot_png`, :func:`run_checker`.

Modules: ``data`` (numbers as shown, files read, rows and the JSON summary), ``verdicts``
(checker and audit), ``plot`` (PNG plots; needs the optional extra ``boundprop[plot]``:
matplotlib, Agg canvas, pyplot's global state never touched), ``markdown`` (text and Markdown),
``html``, ``render`` (:func:`render_report`), ``compare``, ``command`` (CLI).
"""

from boundprop.report.command import register
from boundprop.report.compare import compare_models, render_comparison
from boundprop.report.data import load_certificate, report_summary
from boundprop.report.plot import PLOT_NOTE, PlotUnavailable, comparison_plot_png, layer_plot_png
from boundprop.report.render import render_report
from boundprop.report.verdicts import run_checker

__all__ = ["PLOT_NOTE", "PlotUnavailable", "compare_models", "comparison_plot_png",
           "layer_plot_png", "load_certificate", "register", "render_comparison",
           "render_report", "report_summary", "run_checker"]
