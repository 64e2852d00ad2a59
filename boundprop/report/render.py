"""``render_report``: a certificate's report in one of the formats."""

from __future__ import annotations

import json
import os

from boundprop.errors import BoundpropError
from boundprop.report.data import load_audit, load_certificate, report_summary, write_output
from boundprop.report.html import render_html
from boundprop.report.markdown import render_md, render_text
from boundprop.report.plot import PLOT_NOTE, PlotUnavailable, layer_plot_png
from boundprop.report.verdicts import run_checker


def render_report(cert: str | os.PathLike | dict, fmt: str = "text", *,
                  model: str | None = None, audit: str | dict | None = None,
                  plot_path: str | None = None, plot_link: str | None = None,
                  max_outputs: int = 10, check: dict | None = None) -> str:
    """The report of a certificate (a path or its JSON dict) as a string.

    ``fmt``: ``"text"``, ``"html"`` (self-contained: the plot embedded as base64 PNG),
    ``"md"`` (the plot written to ``plot_path`` and linked as ``plot_link``, default its file
    name) or ``"json"`` (:func:`report_summary`). ``model``: run the independent checker on
    this ONNX file; ``audit``: an audit result (path or dict) to include. Without matplotlib the
    html/md reports say so instead of showing the plot."""
    if fmt not in ("text", "html", "md", "json"):
        raise BoundpropError(f"unknown report format '{fmt}'; use text, html, md or json")
    doc = load_certificate(cert)
    if isinstance(audit, (str, os.PathLike)):
        audit = load_audit(os.fspath(audit))
    if check is None and model is not None:
        check = run_checker(cert, model)
    if fmt == "json":
        return json.dumps(report_summary(doc, check, audit), indent=1) + "\n"
    if fmt == "text":
        return render_text(doc, check, audit, max_outputs)
    png, note = None, PLOT_NOTE
    if fmt == "html" or plot_path:
        try:
            png = layer_plot_png(doc)
        except PlotUnavailable:
            png = None
    if fmt == "html":
        return render_html(doc, check, audit, max_outputs, png, note)
    link = None
    if png is not None and plot_path:
        write_output(plot_path, png)
        link = plot_link or os.path.basename(plot_path)
    elif png is None and plot_path is None:
        note = "plot not written (no plot_path given)"
    return render_md(doc, check, audit, max_outputs, link, note)
