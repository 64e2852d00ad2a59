"""The HTML report: one self-contained page, the plot embedded as a base64 PNG."""

from __future__ import annotations

import base64
import html
import os
from typing import Any

from boundprop.report.data import (
    LAYER_HEAD,
    LAYER_KEYS,
    audit_rows,
    cert_number,
    formulas,
    global_facts,
    layer_entries,
    layer_rows,
    output_bound_rows,
    wrt_text,
)
from boundprop.report.verdicts import verdict_lines

HTML_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.35em;word-break:break-all}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.86em;margin:.4em 0}
th,td{border:1px solid #ddd;padding:.25em .55em;vertical-align:top}
th{background:#f3f3f3;text-align:left}td.n{text-align:right;font-variant-numeric:tabular-nums;
white-space:nowrap}td.inf{color:#a00;font-weight:600}td.zero{color:#999}
table.kv th{width:12em}.ok{color:#070;font-weight:600}.bad{color:#a00;font-weight:600}
.note{color:#666;font-style:italic}img{max-width:100%;border:1px solid #eee}
pre{white-space:pre-wrap;word-break:break-all;font-size:.8em;background:#f8f8f8;padding:.6em}
"""


def _html_cell(text: str, numeric: bool, raw: Any = None, value: bool = False) -> str:
    """One <td>: class "n" for numbers (plus "inf"/"zero" for value cells), the exact value
    ``raw`` as its tooltip."""
    cls = ["n"] if numeric else []
    if value and text == "inf":
        cls.append("inf")
    elif value and text == "0":
        cls.append("zero")
    title = ""
    if raw is not None and not isinstance(raw, str) and cert_number(raw) is not None:
        title = f' title="{html.escape(repr(cert_number(raw)))}"'
    cl = f' class="{" ".join(cls)}"' if cls else ""
    return f"<td{cl}{title}>{html.escape(text, quote=False)}</td>"


def html_table(head, rows, right: set[int] | None = None, raws=None,
               values: set[int] | None = None) -> str:
    """Cells in ``right`` are right-aligned numbers; in ``values`` also coloured when inf or 0;
    ``raws``: per row, {column: exact value} shown as the cell's tooltip."""
    right, values = right or set(), values or set()
    head_cells = "".join(f"<th>{html.escape(h, quote=False)}</th>" for h in head)
    out = ["<table>", f"<tr>{head_cells}</tr>"]
    for k, r in enumerate(rows):
        raw = raws[k] if raws else {}
        out.append("<tr>" + "".join(_html_cell(c, i in right, raw.get(i), i in values)
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def render_html(doc, check, audit, max_outputs, png, plot_note) -> str:
    """The HTML page of the certificate document ``doc``; the plot ``png`` (bytes) embedded,
    or ``plot_note`` without one."""
    model = str((doc.get("model") or {}).get("path", "?"))
    def e(text: str) -> str:  # text content: quotes need no escaping there
        return html.escape(text, quote=False)

    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>boundprop report: {e(os.path.basename(model))}</title>",
             f"<style>{HTML_CSS}</style></head><body>",
             f"<h1>boundprop certificate report: <code>{e(model)}</code></h1>",
             "<table class=\"kv\">"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in global_facts(doc)]
    parts.append("</table>")
    verdicts = verdict_lines(check, audit)
    if verdicts:
        parts.append("<h2>Verdicts</h2><ul>")
        for k, v in verdicts:
            good = v.startswith("VALID") or v.startswith("no violations")
            bad = v.startswith(("INVALID", "NOT CHECKED")) or "violation(s)" in v
            cls = " class=\"ok\"" if good else (" class=\"bad\"" if bad else "")
            parts.append(f"<li><b>{e(k)}</b>: <span{cls}>{e(v)}</span></li>")
        parts.append("</ul>")
    parts.append("<h2>B, ℓ, L across depth</h2>")
    if png:
        parts.append("<img alt=\"B, l, L per node, log scale\" src=\"data:image/png;base64,"
                     + base64.b64encode(png).decode("ascii") + "\">")
    else:
        parts.append(f"<p class=\"note\">{e(plot_note)}</p>")
    out_rows, n_out = output_bound_rows(doc, max_outputs)
    if n_out:
        parts.append("<h2>Output bounds</h2>")
        parts.append(f"<p>{n_out} outputs" + (f", first {len(out_rows)} shown" if n_out >
                                               len(out_rows) else "") + ".</p>")
        parts.append(html_table(("#", "lower", "upper", "width"), out_rows, {0, 1, 2, 3}))
    parts.append("<h2>Per layer</h2>")
    parts.append(f"<p>ℓφ, Lφ: the op's own constants; ℓ, L, B: of the node's output as a "
                 f"function of {e(wrt_text(doc))}; width: largest interval width of the "
                 "node's output.</p>")
    raws = [{4 + i: lc.get(key) for i, key in enumerate(LAYER_KEYS)} for lc in layer_entries(doc)]
    parts.append(html_table(LAYER_HEAD, layer_rows(doc), {0, 4, 5, 6, 7, 8, 9}, raws,
                              {4, 5, 6, 7, 8, 9}))
    if audit is not None:
        rows, _ = audit_rows(audit)
        if rows:
            parts.append("<h2>Audit</h2>")
            parts.append(html_table(("quantity", "certified", "empirical", "ratio",
                                      "violated"), rows, {1, 2, 3}))
    forms = formulas(doc)
    if forms:
        parts.append("<details><summary>Symbolic formulas</summary><pre>"
                     + e("\n\n".join(f"{k} = {v}" for k, v in forms)) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
