"""``compare``: certify several models with the same options and tabulate their global
constants side by side (text, Markdown, HTML, CSV or JSON)."""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import time

from boundprop.certify import certify
from boundprop.errors import BoundpropError
from boundprop.importer import load
from boundprop.report.data import (
    cert_number,
    describe_input_set,
    fmt_number,
    json_number,
    short_reason,
)
from boundprop.report.html import HTML_CSS, html_table
from boundprop.report.markdown import md_cell, md_table, text_table
from boundprop.sets import default_input_set


def _norm_text(norm: str) -> str:
    """ℓ∞, ℓ1, ℓ2."""
    return {"inf": "ℓ∞", "1": "ℓ1", "2": "ℓ2"}.get(str(norm), str(norm))


def compare_models(paths: list[str], norm: str = "2", global_: bool = False,
                   wrt: str = "input", radius: float = 0.0, method: str = "linear",
                   progress=None) -> list[dict]:
    """Certify each model with the same options; one dict per model with its global constants
    (floats, ±inf), parameter and node counts, the set used and the seconds taken."""
    _check_options(paths, norm, global_, wrt, radius)
    # Every model is loaded before any is certified: a bad one is one error line, no wasted work.
    loaded = []
    for p in paths:
        t0 = time.perf_counter()
        loaded.append((p, load(p), time.perf_counter() - t0))
    rows = []
    for p, net, load_s in loaded:
        t1 = time.perf_counter()
        t0 = t1 - load_s
        s = None if global_ else default_input_set(net)
        c = certify(net, s, norm=norm, wrt=wrt, method=method, param_radius=radius)
        t2 = time.perf_counter()
        d = c.to_json()
        set_text, _ = describe_input_set(d)
        row = {
            "model": os.path.splitext(os.path.basename(p))[0], "path": p,
            "parameters": int(net.num_parameters()), "nodes": len(net.nodes) - 1,
            "lipschitz": float(c.lipschitz),
            "lipschitz_product": cert_number(d.get("lipschitz_product")),
            "lipschitz_enclosure": cert_number(d.get("lipschitz_enclosure")),
            "enclosure_note": d.get("enclosure_note"),
            "smoothness": float(c.smoothness), "smoothness_reason": d.get("smoothness_reason"),
            "bound": float(c.bound), "seconds": t2 - t0, "load_s": t1 - t0,
            "certify_s": t2 - t1, "norm": norm, "wrt": wrt, "local": not global_,
            "param_radius": radius if wrt == "params" else None, "input_set": set_text,
            "norm_text": f"{_norm_text(norm)} norm",
            "scope": ("global" if global_ else "on each model's declared set")
            + (f", w.r.t. parameters (radius {radius:g})" if wrt == "params" else ""),
        }
        rows.append(row)
        if progress is not None:
            progress(row)
    return rows


def _check_options(paths, norm, global_, wrt, radius) -> None:
    """One-line errors for options compare cannot use, before any model is loaded."""
    if norm not in ("2", "inf", "1"):
        raise BoundpropError(f"unknown norm '{norm}'; use 2, inf or 1")
    if wrt not in ("input", "params"):
        raise BoundpropError(f"unknown wrt '{wrt}'; use input or params")
    if wrt == "params" and global_:
        raise BoundpropError("--wrt params needs the data (the models' declared input sets): "
                             "drop --global")
    if not (radius >= 0 and math.isfinite(radius)):
        raise BoundpropError(f"--radius {radius} must be a finite number >= 0")
    if not paths:
        raise BoundpropError("compare needs at least one model")
    for p in paths:
        if not os.path.isfile(p):
            raise BoundpropError(f"model '{p}' not found; give paths to ONNX files")


COMPARE_HEAD = ("model", "parameters", "nodes", "ℓ", "ℓ product", "ℓ enclosure", "L", "B",
                "seconds")


def _compare_cells(r: dict) -> tuple[str, ...]:
    """One row of COMPARE_HEAD (an infinite L followed by the start of its reason)."""
    L = fmt_number(r.get("smoothness"))
    if L == "inf" and r.get("smoothness_reason"):
        L += f" ({short_reason(r['smoothness_reason'])})"
    return (str(r.get("model")), f"{r.get('parameters', 0):,}", str(r.get("nodes")),
            fmt_number(r.get("lipschitz")), fmt_number(r.get("lipschitz_product")),
            fmt_number(r.get("lipschitz_enclosure")) if r.get("lipschitz_enclosure") is not None
            else "n/a", L, fmt_number(r.get("bound")),
            f"{r.get('seconds', 0):.2f}")


def _compare_title(rows: list[dict]) -> str:
    """Norm and scope of the comparison."""
    r = rows[0] if rows else {}
    return f"{r.get('norm_text', '')}, {r.get('scope', '')}"


def _json_row(r: dict) -> dict:
    """A row for JSON (±inf as strings; the display-only keys left out)."""
    return {k: (json_number(v) if isinstance(v, float) else v) for k, v in r.items()
            if k not in ("norm_text", "scope")}


def render_comparison(rows: list[dict], fmt: str = "text") -> str:
    """The comparison table: text, md, html, csv (full precision) or json."""
    right = {1, 2, 3, 4, 5, 7, 8}
    cells = [_compare_cells(r) for r in rows]
    title = _compare_title(rows)
    if fmt == "json":
        return json.dumps([_json_row(r) for r in rows], indent=1) + "\n"
    notes = [f"{r.get('model')}: {r['enclosure_note']}" for r in rows
             if r.get("lipschitz_enclosure") is None and r.get("enclosure_note")]
    if fmt == "text":
        return (f"{title}\n" + "\n".join(text_table(COMPARE_HEAD, cells, right)) + "\n"
                + "".join(f"  ({n})\n" for n in notes))
    if fmt == "md":
        return (f"Constants of each model: {title}.\n\n"
                + "\n".join(md_table(COMPARE_HEAD, cells, right)) + "\n"
                + "".join(f"\n- {md_cell(n)}" for n in notes) + ("\n" if notes else ""))
    if fmt == "html":
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>boundprop compare</title><style>{HTML_CSS}</style></head><body>\n"
                f"<h1>boundprop compare</h1><p>{html.escape(title, quote=False)}</p>\n"
                + html_table(COMPARE_HEAD, cells, right, values={3, 4, 5, 6, 7})
                + "\n</body></html>\n")
    if fmt == "csv":
        return _csv_table(rows)
    raise BoundpropError(f"unknown comparison format '{fmt}'; use text, md, html, csv or json")


def _csv_table(rows: list[dict]) -> str:
    """The comparison as CSV, full precision (inf as "inf", absent as empty)."""
    keys = ("model", "path", "parameters", "nodes", "lipschitz", "lipschitz_product",
            "lipschitz_enclosure", "smoothness", "smoothness_reason", "bound", "seconds",
            "norm", "wrt", "local", "param_radius")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(keys)
    for r in rows:
        w.writerow(["inf" if isinstance(r.get(k), float) and math.isinf(r[k])
                    else ("" if r.get(k) is None else r.get(k)) for k in keys])
    return buf.getvalue()
