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
:func:`compare_models`, :func:`render_comparison`.

Module-level imports are stdlib only, so ``boundprop --help`` stays fast; numpy, matplotlib and
boundprop's analysis are imported inside the functions. Plotting needs the optional extra
``boundprop[plot]`` (matplotlib, Agg canvas; pyplot's global state is never touched).
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import sys
import tempfile
import time
from typing import Any

from boundprop.safe_io import read_input_text, resolve_output_path
from boundprop.strict_json import loads_strict

PLOT_NOTE = "plot unavailable: pip install 'boundprop[plot]'"
REPORT_FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md",
                  ".txt": "text", ".json": "json"}
COMPARE_FORMATS = {".md": "md", ".markdown": "md", ".html": "html", ".htm": "html",
                   ".csv": "csv", ".txt": "text", ".json": "json"}

# (certificate key, symbol, meaning, colour, marker) of the plotted series.
SERIES = (("bound", "B", "bound on ‖node output‖", "#1f77b4", "s"),
          ("lipschitz", "ℓ", "Lipschitz constant", "#ff7f0e", "o"),
          ("smoothness", "L", "smoothness constant", "#2ca02c", "D"))


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (the optional extra ``boundprop[plot]``)."""


def _error(message: str):
    from boundprop.errors import BoundpropError

    return BoundpropError(message)


# ----------------------------------------------------------------------------- numbers


def _num(x: Any) -> float | None:
    """A certificate number: float, "inf"/"Infinity" strings, None; anything else → None."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, (int, float)):
        return float(x)
    if isinstance(x, str):
        t = x.strip().lower()
        if t in ("inf", "+inf", "infinity", "+infinity", "oo"):
            return math.inf
        if t in ("-inf", "-infinity", "-oo"):
            return -math.inf
        try:
            return float(t)
        except ValueError:
            return None
    try:  # numpy scalars
        return float(x)
    except (TypeError, ValueError):
        return None


def _fmt(x: Any, digits: int = 6) -> str:
    """How every number is shown: 6 significant digits, "inf", "-" when absent."""
    v = _num(x)
    if v is None:
        return "-" if x is None or not isinstance(x, str) else x
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def _json_num(x: Any) -> Any:
    """A number for JSON output: finite floats as they are, ±inf as strings, else None."""
    v = _num(x)
    if v is None or math.isnan(v):
        return None
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def _short_reason(reason: Any, limit: int = 48) -> str:
    if not reason:
        return ""
    text = " ".join(str(reason).split()).split(";")[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ----------------------------------------------------------------------------- files


def _write_atomic(path: str, data: str | bytes, protect: tuple[str | None, ...] = ()) -> None:
    """Never half a file, never onto a device, FIFO or folder, nor onto one of ``protect``
    (the command's inputs): see :func:`boundprop.safe_io.write_atomic`."""
    from boundprop.safe_io import write_atomic

    write_atomic(path, data, "-o", [p for p in protect if p])


def _read_json(path: str, what: str, hint: str) -> Any:
    """JSON of a regular file (a FIFO or device is refused before it is opened: reading one
    would hang), read strictly (duplicate keys, NaN tokens and absurd nesting refused)."""
    return loads_strict(read_input_text(path, what, hint=hint), f"{what} '{path}'", hint)


def load_certificate(cert: str | os.PathLike | dict) -> dict:
    """The certificate document (a dict), from a path or as given; checks its shape only."""
    from boundprop.certify import read_certificate_json

    doc = read_certificate_json(cert)
    where = "certificate" if isinstance(cert, dict) else f"certificate '{os.fspath(cert)}'"
    hint = "create one with `boundprop certify MODEL -o CERT.json`"
    layers = doc.get("layers")
    if layers is not None and (not isinstance(layers, list)
                               or not all(isinstance(lc, dict) for lc in layers)):
        raise _error(f"{where} is garbled: 'layers' must be a list of objects; {hint}")
    for key in ("model", "output_bounds", "objective", "tool", "symbolic"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise _error(f"{where} is garbled: '{key}' must be an object; {hint}")
    return doc


def _load_audit(path: str) -> dict:
    doc = _read_json(path, "audit file", "write one with `boundprop audit CERT MODEL --json > "
                     "AUDIT.json`")
    if isinstance(doc, list):
        doc = {"rows": doc}
    if not isinstance(doc, dict):
        raise _error(f"audit file '{path}' is JSON but not an audit result (a "
                     f"{type(doc).__name__}); write one with `boundprop audit --json`")
    rows = doc.get("rows")
    if rows is not None and not isinstance(rows, list):
        raise _error(f"audit file '{path}' is garbled: 'rows' must be a list")
    return doc


# ----------------------------------------------------------------------------- content


def _layers(doc: dict) -> list[dict]:
    return [lc for lc in (doc.get("layers") or []) if isinstance(lc, dict)]


def _shape_text(shape: Any) -> str:
    if isinstance(shape, (list, tuple)) and shape:
        return "x".join(str(d) for d in shape)
    return "?" if shape is None else str(shape)


def _describe_input_set(doc: dict) -> tuple[str, dict]:
    """One line describing the certificate's input set, and its facts as a dict."""
    s = doc.get("input_set")
    if not s:
        return "all inputs (global constants)", {"kind": "global"}
    if not isinstance(s, dict):
        return str(s), {"kind": "?"}
    text, facts = _describe_set_kind(doc, s)
    if isinstance(facts.get("shape"), list):
        text += f" (shape {_shape_text(facts['shape'])})"
    return text, facts


def _describe_set_kind(doc: dict, s: dict) -> tuple[str, dict]:
    kind = str(s.get("kind", "?"))
    facts: dict[str, Any] = {"kind": kind}
    shape = s.get("shape")
    if isinstance(shape, list) and shape:
        facts["shape"] = shape
    if kind == "box":
        lo = [_num(v) for v in (s.get("lower") or [])]
        hi = [_num(v) for v in (s.get("upper") or [])]
        n = max(len(lo), len(hi))
        facts["dimension"] = n
        if lo and hi and len(lo) == len(hi) and None not in lo and None not in hi:
            widths = [h - low for low, h in zip(lo, hi)]
            facts.update(lower_min=min(lo), upper_max=max(hi), width_min=min(widths),
                         width_max=max(widths))
            if max(widths) == 0:
                what = "data points" if doc.get("wrt") == "params" else "a single point"
                return f"box of width 0 ({what}), {n} values", facts
            if min(lo) == max(lo) and min(hi) == max(hi):
                return f"box [{_fmt(lo[0])}, {_fmt(hi[0])}]^{n}", facts
            return (f"box of {n} intervals, widths {_fmt(min(widths))}..{_fmt(max(widths))}, "
                    f"within [{_fmt(min(lo))}, {_fmt(max(hi))}]"), facts
        return f"box of {n} intervals", facts
    center = s.get("center") or []
    facts["dimension"] = len(center) if isinstance(center, list) else None
    if kind == "linf":
        facts["radius"] = _num(s.get("eps"))
        clip = s.get("clip")
        text = f"ℓ∞ ball of radius {_fmt(s.get('eps'))} around a point of {len(center)} values"
        if clip:
            facts["clip"] = clip
            text += f", clipped to [{_fmt(clip[0])}, {_fmt(clip[1])}]"
        return text, facts
    if kind == "l2":
        facts["radius"] = _num(s.get("radius"))
        return f"ℓ2 ball of radius {_fmt(s.get('radius'))} around a point of {len(center)} " \
               "values", facts
    return f"{kind} set", facts


def _wrt_text(doc: dict) -> str:
    if doc.get("wrt") == "params":
        return f"the parameters (ball of radius {_fmt(doc.get('param_radius'))} around the " \
               "current weights)"
    return "the input"


def _lipschitz_detail(doc: dict) -> str:
    parts = [f"layer product {_fmt(doc.get('lipschitz_product'))}"]
    if doc.get("lipschitz_enclosure") is not None:
        parts.append(f"Jacobian enclosure {_fmt(doc.get('lipschitz_enclosure'))}")
    elif doc.get("enclosure_note"):
        parts.append(f"enclosure: {doc['enclosure_note']}")
    return "; ".join(parts)


def _globals(doc: dict) -> list[tuple[str, str]]:
    """(label, value) lines of the global facts, in the order shown."""
    model = doc.get("model") or {}
    tool = doc.get("tool") or {}
    set_text, _ = _describe_input_set(doc)
    sha = str(model.get("sha256") or "")
    rows = [
        ("model", f"{model.get('path', '?')} (sha256 {sha[:16] or '?'}…)"),
        ("input → output", f"'{model.get('input', '?')}' {_shape_text(model.get('input_shape'))}"
                           f" → '{model.get('output', '?')}' "
                           f"{_shape_text(model.get('output_shape'))}"),
        ("input set", set_text),
        ("norm", f"ℓ{doc.get('norm', '?')}" if doc.get("norm") in ("1", "2")
         else ("ℓ∞" if doc.get("norm") == "inf" else str(doc.get("norm", "?")))),
        ("w.r.t.", _wrt_text(doc)),
        ("method", f"{doc.get('method', '?')} bounds, "
                   f"{'local (on the set)' if doc.get('local') else 'global'} constants"),
        ("tool", f"{tool.get('name', 'boundprop')} {tool.get('version', '?')}, "
                 f"{_fmt(doc.get('elapsed_s'), 3)} s"),
        ("Lipschitz ℓ", f"{_fmt(doc.get('lipschitz'))}   ({_lipschitz_detail(doc)})"),
        ("smoothness L", _fmt(doc.get("smoothness"))
         + (f"   ({doc['smoothness_reason']})" if doc.get("smoothness_reason") else "")),
        ("bound B", _fmt(doc.get("bound"))),
    ]
    if doc.get("free"):
        rows.append(("kept symbolic", ", ".join(map(str, doc["free"]))))
    obj = doc.get("objective")
    if isinstance(obj, dict):
        rows.append(("objective", f"{obj.get('loss', '?')} loss ({obj.get('reduction', '?')}): "
                                  f"ℓ_F = {_fmt(obj.get('lipschitz'))}, "
                                  f"L_F = {_fmt(obj.get('smoothness'))}"))
        rows.append(("certified step 1/L_F", _fmt(obj.get("step_size"))))
    return rows


def _output_rows(doc: dict, limit: int) -> tuple[list[tuple[str, str, str, str]], int]:
    ob = doc.get("output_bounds") or {}
    lo, hi = ob.get("lower") or [], ob.get("upper") or []
    n = min(len(lo), len(hi))
    rows = []
    for i in range(min(n, limit)):
        a, b = _num(lo[i]), _num(hi[i])
        width = b - a if a is not None and b is not None else None
        rows.append((str(i), _fmt(a), _fmt(b), _fmt(width, 4)))
    return rows, n


LAYER_HEAD = ("#", "node", "op", "family", "ℓφ", "Lφ", "ℓ", "L", "B", "width", "smoothness reason")
LAYER_KEYS = ("op_lipschitz", "op_smoothness", "lipschitz", "smoothness", "bound",
              "interval_width")


def _layer_rows(doc: dict) -> list[tuple[str, ...]]:
    rows = []
    for k, lc in enumerate(_layers(doc)):
        rows.append((str(k), str(lc.get("node", "?")), str(lc.get("op", "?")),
                     str(lc.get("family", "?")))
                    + tuple(_fmt(lc.get(key)) if key != "interval_width"
                            else _fmt(lc.get(key), 4) for key in LAYER_KEYS)
                    + (" ".join(str(lc.get("smoothness_reason") or "").split()),))
    return rows


def _audit_rows(audit: dict) -> tuple[list[tuple[str, ...]], int]:
    rows, violated = [], 0
    for r in audit.get("rows") or []:
        if not isinstance(r, dict):
            continue
        v = r.get("violated")
        bad = bool(v) and v not in ("false", "False", "0", "no")
        violated += bad
        rows.append((str(r.get("quantity", "?")), _fmt(r.get("certified")),
                     _fmt(r.get("empirical")), _fmt(r.get("ratio"), 4),
                     "VIOLATED" if bad else ("no" if v is not None else "-")))
    if not rows and _num(audit.get("violations")):
        violated = int(_num(audit["violations"]) or 0)
    elif _num(audit.get("violations")) is not None:
        violated = max(violated, int(_num(audit["violations"]) or 0))
    return rows, violated


# ----------------------------------------------------------------------------- verdicts


def run_checker(cert: str | os.PathLike | dict, model_path: str) -> dict:
    """Run the independent checker; a dict {status: valid|invalid|error|unavailable, reason}.
    Never raises for the checker's own failures: they become the verdict."""
    try:
        from boundprop.checker import check
    except Exception:  # ImportError, or a half-written checker module
        return {"status": "unavailable", "reason": "checker unavailable"}
    tmp = None
    try:
        if isinstance(cert, dict):
            fd, tmp = tempfile.mkstemp(prefix=".boundprop-cert-", suffix=".json")
            with os.fdopen(fd, "w") as f:
                json.dump(cert, f)
            path = tmp
        else:
            path = os.fspath(cert)
        result = check(path, model_path)
    except Exception as e:
        from boundprop.errors import BoundpropError

        rejected = getattr(e, "result", None)  # the checker's "invalid" exception carries it
        if rejected is not None and not getattr(rejected, "valid", True):
            reason = getattr(rejected, "reason", None) or str(e)
            return {"status": "invalid", "reason": " ".join(str(reason).split())}
        kind = "" if isinstance(e, BoundpropError) else f"{type(e).__name__}: "
        return {"status": "error", "reason": f"{kind}{' '.join(str(e).split())}"}
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)
    valid = result if isinstance(result, bool) else getattr(result, "valid", result)
    reason = "" if isinstance(result, bool) else getattr(result, "reason", "") or ""
    out = {"status": "valid" if valid else "invalid", "reason": " ".join(str(reason).split())}
    items = getattr(result, "items", None)
    if valid and isinstance(items, list) and not out["reason"]:
        out["reason"] = f"{len(items)} items re-verified"
    unverified = getattr(result, "unverified", None)
    if isinstance(unverified, list) and unverified:
        out["unverified"] = [str(u) for u in unverified]  # fields no check item covers
    return out


def _verdict_lines(check: dict | None, audit: dict | None) -> list[tuple[str, str]]:
    out = []
    if check is not None:
        status = check.get("status", "?")
        text = {"valid": "VALID", "invalid": "INVALID", "error": "NOT CHECKED (error)",
                "unavailable": "checker unavailable"}.get(status, status)
        if check.get("reason") and status != "unavailable":
            text += f" ({check['reason']})" if status == "valid" else f": {check['reason']}"
        out.append(("independent checker", text))
        if check.get("unverified"):
            out.append(("not verified by the checker", ", ".join(check["unverified"])))
    if audit is not None:
        rows, violated = _audit_rows(audit)
        if rows or audit.get("violations") is not None:
            text = (f"{violated} violation(s): a certified constant is below an empirical "
                    "lower bound" if violated else f"no violations in {len(rows)} quantities")
        else:
            text = "no rows in the audit file"
        out.append(("audit", text))
    return out


def _negative(check: dict | None, audit: dict | None) -> bool:
    if check is not None and check.get("status") in ("invalid", "error"):
        return True
    return audit is not None and _audit_rows(audit)[1] > 0


# ----------------------------------------------------------------------------- plots


def _mpl():
    """matplotlib's Figure and Agg canvas, without pyplot (no global backend change)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(PLOT_NOTE) from None
    return Figure, FigureCanvasAgg


def _png(fig, canvas_cls) -> bytes:
    import io

    canvas_cls(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight",
                metadata={"Software": None})
    return buf.getvalue()


def _log_limits(values: list[float]) -> tuple[float, float]:
    """y limits (log scale) leaving bands at the top (∞) and bottom (0) of the axes: finite
    positive data occupy [8 %, 92 %] of the height."""
    pos = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not pos:
        return 0.1, 10.0
    lo, hi = math.log10(min(pos)), math.log10(max(pos))
    span = max(hi - lo, 1.0)
    mid = (lo + hi) / 2
    lo, hi = mid - span / 2, mid + span / 2
    total = span / 0.84
    return 10 ** (lo - 0.08 * total), 10 ** (hi + 0.08 * total)


def _edge_bands(ax, has_inf: bool, has_zero: bool) -> None:
    """Shade the top (∞) and bottom (0) bands, label them on the right, and keep the y ticks
    (decades) out of them so no tick value sits where a marker means ∞ or 0."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullLocator

    if has_inf:
        ax.add_patch(Rectangle((0, 0.94), 1, 0.06, transform=ax.transAxes, color="#f6e0e0",
                               zorder=0, lw=0))
        ax.text(1.006, 0.97, "∞", transform=ax.transAxes, ha="left", va="center",
                fontsize=12, color="#a00")
    if has_zero:
        ax.add_patch(Rectangle((0, 0), 1, 0.06, transform=ax.transAxes, color="#e8e8e8",
                               zorder=0, lw=0))
        ax.text(1.006, 0.03, "0", transform=ax.transAxes, ha="left", va="center",
                fontsize=10, color="#444")
    lo, hi = (math.log10(v) for v in ax.get_ylim())
    decades = [d for d in range(math.floor(lo), math.ceil(hi) + 1)
               if 0.07 <= (d - lo) / (hi - lo) <= 0.93]
    step = max(1, math.ceil(len(decades) / 12))
    ax.yaxis.set_major_locator(FixedLocator([10.0 ** d for d in decades[::step]]))
    ax.yaxis.set_major_formatter(LogFormatterSciNotation())
    if step > 1 or len(decades) > 8:
        ax.yaxis.set_minor_locator(NullLocator())


def layer_plot_png(cert: str | os.PathLike | dict) -> bytes:
    """PNG of B, ℓ, L of every node across depth (log scale; ∞ and 0 drawn as markers in bands
    at the top and bottom edges). Raises :class:`PlotUnavailable` without matplotlib."""
    Figure, Canvas = _mpl()
    from matplotlib.lines import Line2D
    from matplotlib.transforms import blended_transform_factory

    doc = load_certificate(cert)
    layers = _layers(doc)
    n = len(layers)
    names = [str(lc.get("node", k)) for k, lc in enumerate(layers)]
    fig = Figure(figsize=(max(7.0, min(18.0, 2.5 + 0.32 * n)), 4.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    every = [_num(lc.get(key)) for lc in layers for key, *_ in SERIES]
    ax.set_ylim(*_log_limits(every))
    ax.set_xlim(-0.6, max(n - 1, 0) + 0.6)
    band = blended_transform_factory(ax.transData, ax.transAxes)
    handles, has_inf, has_zero, has_missing = [], False, False, False
    for j, (key, sym, meaning, color, marker) in enumerate(SERIES):
        vals = [_num(lc.get(key)) for lc in layers]
        ys = [v if v is not None and math.isfinite(v) and v > 0 else math.nan for v in vals]
        ax.plot(range(n), ys, color=color, marker=marker, ms=4.5, lw=1.6, zorder=3)
        dx = (j - 1) * 0.18
        infs = [k for k, v in enumerate(vals) if v is not None and math.isinf(v)]
        zeros = [k for k, v in enumerate(vals) if v == 0]
        has_missing |= any(v is None for v in vals)
        if infs:
            has_inf = True
            ax.plot([k + dx for k in infs], [0.97] * len(infs), transform=band, ls="none",
                    marker="^", ms=6, color=color, clip_on=False, zorder=4)
        if zeros:
            has_zero = True
            ax.plot([k + dx for k in zeros], [0.03] * len(zeros), transform=band, ls="none",
                    marker="v", ms=6, color=color, clip_on=False, zorder=4)
        handles.append(Line2D([], [], color=color, marker=marker, lw=1.6,
                              label=f"{sym}: {meaning}"))
    _edge_bands(ax, has_inf, has_zero)
    if has_inf:
        handles.append(Line2D([], [], ls="none", marker="^", color="#666",
                              label="in the top band: infinite"))
    if has_zero:
        handles.append(Line2D([], [], ls="none", marker="v", color="#666",
                              label="in the bottom band: exactly 0"))
    if has_missing:
        handles.append(Line2D([], [], ls="none", label="(missing values omitted)"))
    step = max(1, math.ceil(n / 60))
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{k} {names[k]}" for k in ticks], rotation=60, ha="right",
                       rotation_mode="anchor", fontsize=8 if n <= 40 else 6.5)
    ax.set_xlabel("node (topological index)")
    ax.set_ylabel("value (log scale)")
    ax.grid(True, which="major", axis="y", alpha=0.35)
    ax.grid(True, which="major", axis="x", alpha=0.12)
    model = (doc.get("model") or {}).get("path", "model")
    scope = "local" if doc.get("local") else "global"
    norm = {"inf": "∞"}.get(str(doc.get("norm")), str(doc.get("norm", "?")))
    ax.set_title(f"{os.path.basename(str(model))}: B, ℓ, L per node — ℓ{norm} norm, "
                 f"w.r.t. {'parameters' if doc.get('wrt') == 'params' else 'input'}, {scope}",
                 fontsize=10.5)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 0.9), fontsize=8.5,
              frameon=False)
    return _png(fig, Canvas)


def comparison_plot_png(rows: list[dict]) -> bytes:
    """Grouped bar chart (log scale) of ℓ, L, B per model; ∞ bars reach the top band, hatched."""
    Figure, Canvas = _mpl()
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    n = len(rows)
    fig = Figure(figsize=(max(6.0, min(16.0, 2.0 + 1.6 * n)), 4.4))
    ax = fig.add_subplot(1, 1, 1)
    ax.set_yscale("log")
    keys = (("lipschitz", "ℓ (Lipschitz)", "#ff7f0e"), ("smoothness", "L (smoothness)",
                                                        "#2ca02c"),
            ("bound", "B (bound)", "#1f77b4"))
    lo, hi = _log_limits([_num(r.get(k)) for r in rows for k, *_ in keys])
    ax.set_ylim(lo, hi)
    band = blended_transform_factory(ax.transData, ax.transAxes)
    width = 0.26
    has_inf = has_zero = False
    for j, (key, _label, color) in enumerate(keys):
        for i, r in enumerate(rows):
            x = i + (j - 1) * width
            v = _num(r.get(key))
            if v is None:
                ax.text(x, 0.03, "n/a", transform=band, ha="center", fontsize=7)
            elif math.isinf(v):
                has_inf = True
                top = 10 ** (math.log10(lo) + 0.94 * (math.log10(hi) - math.log10(lo)))
                ax.bar(x, top - lo, bottom=lo, width=width, color=color, alpha=0.45,
                       hatch="//", edgecolor=color)
                ax.text(x, 0.97, "∞", transform=band, ha="center", va="center", fontsize=11)
            elif v <= 0:
                has_zero = True
                ax.text(x, 0.03, "0", transform=band, ha="center", va="center", fontsize=9)
            else:
                ax.bar(x, v - lo, bottom=lo, width=width, color=color)
                ax.text(x, v * (hi / lo) ** 0.012, _fmt(v, 3), ha="center", va="bottom",
                        fontsize=7, rotation=90 if n > 4 else 0)
    _edge_bands(ax, has_inf, has_zero)
    ax.set_xticks(range(n))
    ax.set_xticklabels([str(r.get("model", "?")) for r in rows], rotation=20 if n > 2 else 0,
                       ha="right" if n > 2 else "center", fontsize=8.5)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylabel("value (log scale)")
    ax.grid(True, axis="y", alpha=0.35)
    first = rows[0] if rows else {}
    ax.set_title(f"ℓ, L, B per model — {first.get('norm_text', '')}, {first.get('scope', '')}",
                 fontsize=10.5)
    handles = [Patch(color=c, label=lab) for _, lab, c in keys]
    if has_inf:
        handles.append(Patch(facecolor="white", edgecolor="#666", hatch="//",
                             label="hatched to the top band: infinite"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.03, 0.9), fontsize=8.5,
              frameon=False)
    return _png(fig, Canvas)


# ----------------------------------------------------------------------------- rendering


def report_summary(cert: str | os.PathLike | dict, check: dict | None = None,
                   audit: dict | None = None) -> dict:
    """The report as data: globals and the per-layer series (±inf as "inf" strings)."""
    doc = load_certificate(cert)
    layers = _layers(doc)
    set_text, set_facts = _describe_input_set(doc)
    model = doc.get("model") or {}
    ob = doc.get("output_bounds") or {}
    out = {
        "model": {k: model.get(k) for k in ("path", "sha256", "input", "output", "input_shape",
                                            "output_shape")},
        "input_set": dict(set_facts, description=set_text),
        "norm": doc.get("norm"), "wrt": doc.get("wrt"), "local": doc.get("local"),
        "param_radius": _json_num(doc.get("param_radius")),
        "method": doc.get("method"), "tool": doc.get("tool"),
        "elapsed_s": _json_num(doc.get("elapsed_s")),
        "lipschitz": _json_num(doc.get("lipschitz")),
        "lipschitz_product": _json_num(doc.get("lipschitz_product")),
        "lipschitz_enclosure": _json_num(doc.get("lipschitz_enclosure")),
        "enclosure_note": doc.get("enclosure_note"),
        "smoothness": _json_num(doc.get("smoothness")),
        "smoothness_reason": doc.get("smoothness_reason"),
        "bound": _json_num(doc.get("bound")),
        "outputs": len(ob.get("lower") or []),
        "objective": None if not isinstance(doc.get("objective"), dict) else {
            k: (_json_num(v) if not isinstance(v, str) else v)
            for k, v in doc["objective"].items()},
        "series": {
            "index": list(range(len(layers))),
            "node": [lc.get("node") for lc in layers],
            "op": [lc.get("op") for lc in layers],
            "family": [lc.get("family") for lc in layers],
            **{key: [_json_num(lc.get(key)) for lc in layers] for key in LAYER_KEYS},
            "smoothness_reason": [lc.get("smoothness_reason") for lc in layers],
        },
    }
    if check is not None:
        out["check"] = check
    if audit is not None:
        rows, violated = _audit_rows(audit)
        out["audit"] = {"violations": violated, "rows": audit.get("rows") or []}
    return out


def _text_table(head: tuple[str, ...], rows: list[tuple[str, ...]],
                right: set[int] | None = None) -> list[str]:
    right = right or set()
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(head)]
    last = len(head) - 1

    def line(cells):
        parts = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            if i == last and i not in right:
                parts.append(c)
            else:
                parts.append(c.rjust(w) if i in right else c.ljust(w))
        return "  ".join(parts).rstrip()

    return [line(head)] + [line(r) for r in rows]


def _render_text(doc, check, audit, max_outputs) -> str:
    model = (doc.get("model") or {}).get("path", "?")
    lines = [f"boundprop certificate report: {model}", ""]
    w = max(len(k) for k, _ in _globals(doc))
    lines += [f"  {k.ljust(w)}  {v}" for k, v in _globals(doc)]
    verdicts = _verdict_lines(check, audit)
    if verdicts:
        lines += ["", "verdicts:"] + [f"  {k}: {v}" for k, v in verdicts]
    out_rows, n_out = _output_rows(doc, max_outputs)
    if n_out:
        lines += ["", f"output bounds ({n_out} outputs"
                  + (f", first {len(out_rows)} shown" if n_out > len(out_rows) else "") + "):"]
        lines += ["  " + s for s in _text_table(("#", "lower", "upper", "width"), out_rows,
                                                {0, 1, 2, 3})]
    lines += ["", f"per layer ({len(_layers(doc))} nodes; ℓφ, Lφ: the op's own constants; "
              f"ℓ, L, B: of the node's output as a function of {_wrt_text(doc)}):"]
    lines += ["  " + s for s in _text_table(LAYER_HEAD, _layer_rows(doc),
                                            {0, 4, 5, 6, 7, 8, 9})]
    if audit is not None:
        rows, _ = _audit_rows(audit)
        if rows:
            lines += ["", "audit (certified vs empirical lower bound):"]
            lines += ["  " + s for s in _text_table(
                ("quantity", "certified", "empirical", "ratio", "violated"), rows, {1, 2, 3})]
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(head, rows, right: set[int] | None = None) -> list[str]:
    right = right or set()
    out = ["| " + " | ".join(_md_cell(h) for h in head) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return out


def _formulas(doc: dict) -> list[tuple[str, str]]:
    sym = doc.get("symbolic") or {}
    return [(k, str(sym[k])) for k in ("lipschitz", "smoothness", "bound") if sym.get(k)]


def _render_md(doc, check, audit, max_outputs, plot_link, plot_note) -> str:
    model = (doc.get("model") or {}).get("path", "?")
    lines = [f"# boundprop certificate report: `{model}`", ""]
    lines += _md_table(("", ""), [(f"**{k}**", v) for k, v in _globals(doc)])
    verdicts = _verdict_lines(check, audit)
    if verdicts:
        lines += ["", "## Verdicts", ""] + [f"- **{k}**: {v}" for k, v in verdicts]
    lines += ["", "## B, ℓ, L across depth", ""]
    lines += [f"![B, ℓ, L per node, log scale]({plot_link})" if plot_link else f"*{plot_note}*"]
    out_rows, n_out = _output_rows(doc, max_outputs)
    if n_out:
        lines += ["", "## Output bounds", "",
                  f"{n_out} outputs" + (f", first {len(out_rows)} shown" if n_out >
                                        len(out_rows) else "") + ".", ""]
        lines += _md_table(("#", "lower", "upper", "width"), out_rows, {0, 1, 2, 3})
    lines += ["", "## Per layer", "",
              f"ℓφ, Lφ: the op's own constants; ℓ, L, B: of the node's output as a function of "
              f"{_wrt_text(doc)}; width: largest interval width of the node's output.", ""]
    lines += _md_table(LAYER_HEAD, _layer_rows(doc), {0, 4, 5, 6, 7, 8, 9})
    if audit is not None:
        rows, _ = _audit_rows(audit)
        if rows:
            lines += ["", "## Audit", ""]
            lines += _md_table(("quantity", "certified", "empirical", "ratio", "violated"),
                               rows, {1, 2, 3})
    forms = _formulas(doc)
    if forms:
        lines += ["", "<details><summary>Symbolic formulas</summary>", "", "```"]
        lines += [f"{k} = {v}" for k, v in forms] + ["```", "", "</details>"]
    return "\n".join(lines) + "\n"


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
    cls = ["n"] if numeric else []
    if value and text == "inf":
        cls.append("inf")
    elif value and text == "0":
        cls.append("zero")
    title = ""
    if raw is not None and not isinstance(raw, str) and _num(raw) is not None:
        title = f' title="{html.escape(repr(_num(raw)))}"'
    cl = f' class="{" ".join(cls)}"' if cls else ""
    return f"<td{cl}{title}>{html.escape(text, quote=False)}</td>"


def _html_table(head, rows, right: set[int] | None = None, raws=None,
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


def _render_html(doc, check, audit, max_outputs, png, plot_note) -> str:
    model = str((doc.get("model") or {}).get("path", "?"))
    def e(text: str) -> str:  # text content: quotes need no escaping there
        return html.escape(text, quote=False)

    parts = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<title>boundprop report: {e(os.path.basename(model))}</title>",
             f"<style>{HTML_CSS}</style></head><body>",
             f"<h1>boundprop certificate report: <code>{e(model)}</code></h1>",
             "<table class=\"kv\">"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in _globals(doc)]
    parts.append("</table>")
    verdicts = _verdict_lines(check, audit)
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
    out_rows, n_out = _output_rows(doc, max_outputs)
    if n_out:
        parts.append("<h2>Output bounds</h2>")
        parts.append(f"<p>{n_out} outputs" + (f", first {len(out_rows)} shown" if n_out >
                                               len(out_rows) else "") + ".</p>")
        parts.append(_html_table(("#", "lower", "upper", "width"), out_rows, {0, 1, 2, 3}))
    parts.append("<h2>Per layer</h2>")
    parts.append(f"<p>ℓφ, Lφ: the op's own constants; ℓ, L, B: of the node's output as a "
                 f"function of {e(_wrt_text(doc))}; width: largest interval width of the "
                 "node's output.</p>")
    raws = [{4 + i: lc.get(key) for i, key in enumerate(LAYER_KEYS)} for lc in _layers(doc)]
    parts.append(_html_table(LAYER_HEAD, _layer_rows(doc), {0, 4, 5, 6, 7, 8, 9}, raws,
                              {4, 5, 6, 7, 8, 9}))
    if audit is not None:
        rows, _ = _audit_rows(audit)
        if rows:
            parts.append("<h2>Audit</h2>")
            parts.append(_html_table(("quantity", "certified", "empirical", "ratio",
                                      "violated"), rows, {1, 2, 3}))
    forms = _formulas(doc)
    if forms:
        parts.append("<details><summary>Symbolic formulas</summary><pre>"
                     + e("\n\n".join(f"{k} = {v}" for k, v in forms)) + "</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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
        raise _error(f"unknown report format '{fmt}'; use text, html, md or json")
    doc = load_certificate(cert)
    if isinstance(audit, (str, os.PathLike)):
        audit = _load_audit(os.fspath(audit))
    if check is None and model is not None:
        check = run_checker(cert, model)
    if fmt == "json":
        return json.dumps(report_summary(doc, check, audit), indent=1) + "\n"
    if fmt == "text":
        return _render_text(doc, check, audit, max_outputs)
    png, note = None, PLOT_NOTE
    if fmt == "html" or plot_path:
        try:
            png = layer_plot_png(doc)
        except PlotUnavailable:
            png = None
    if fmt == "html":
        return _render_html(doc, check, audit, max_outputs, png, note)
    link = None
    if png is not None and plot_path:
        _write_atomic(plot_path, png)
        link = plot_link or os.path.basename(plot_path)
    elif png is None and plot_path is None:
        note = "plot not written (no plot_path given)"
    return _render_md(doc, check, audit, max_outputs, link, note)


# ----------------------------------------------------------------------------- compare


def _norm_text(norm: str) -> str:
    return {"inf": "ℓ∞", "1": "ℓ1", "2": "ℓ2"}.get(str(norm), str(norm))


def compare_models(paths: list[str], norm: str = "2", global_: bool = False,
                   wrt: str = "input", radius: float = 0.0, method: str = "linear",
                   progress=None) -> list[dict]:
    """Certify each model with the same options; one dict per model with its global constants
    (floats, ±inf), parameter and node counts, the set used and the seconds taken."""
    import boundprop as bp
    from boundprop.sets import default_input_set

    if norm not in ("2", "inf", "1"):
        raise _error(f"unknown norm '{norm}'; use 2, inf or 1")
    if wrt not in ("input", "params"):
        raise _error(f"unknown wrt '{wrt}'; use input or params")
    if wrt == "params" and global_:
        raise _error("--wrt params needs the data (the models' declared input sets): drop "
                     "--global")
    if not (radius >= 0 and math.isfinite(radius)):
        raise _error(f"--radius {radius} must be a finite number >= 0")
    if not paths:
        raise _error("compare needs at least one model")
    for p in paths:
        if not os.path.isfile(p):
            raise _error(f"model '{p}' not found; give paths to ONNX files")
    # Every model is loaded before any is certified: a bad one is one error line, no wasted work.
    loaded = []
    for p in paths:
        t0 = time.perf_counter()
        loaded.append((p, bp.load(p), time.perf_counter() - t0))
    rows = []
    for p, net, load_s in loaded:
        t1 = time.perf_counter()
        t0 = t1 - load_s
        s = None if global_ else default_input_set(net)
        c = bp.certify(net, s, norm=norm, wrt=wrt, method=method, param_radius=radius)
        t2 = time.perf_counter()
        d = c.to_json()
        set_text, _ = _describe_input_set(d)
        row = {
            "model": os.path.splitext(os.path.basename(p))[0], "path": p,
            "parameters": int(net.num_parameters()), "nodes": len(net.nodes) - 1,
            "lipschitz": float(c.lipschitz),
            "lipschitz_product": _num(d.get("lipschitz_product")),
            "lipschitz_enclosure": _num(d.get("lipschitz_enclosure")),
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


COMPARE_HEAD = ("model", "parameters", "nodes", "ℓ", "ℓ product", "ℓ enclosure", "L", "B",
                "seconds")


def _compare_cells(r: dict) -> tuple[str, ...]:
    L = _fmt(r.get("smoothness"))
    if L == "inf" and r.get("smoothness_reason"):
        L += f" ({_short_reason(r['smoothness_reason'])})"
    return (str(r.get("model")), f"{r.get('parameters', 0):,}", str(r.get("nodes")),
            _fmt(r.get("lipschitz")), _fmt(r.get("lipschitz_product")),
            _fmt(r.get("lipschitz_enclosure")) if r.get("lipschitz_enclosure") is not None
            else "n/a", L, _fmt(r.get("bound")),
            f"{r.get('seconds', 0):.2f}")


def _compare_title(rows: list[dict]) -> str:
    r = rows[0] if rows else {}
    return f"{r.get('norm_text', '')}, {r.get('scope', '')}"


def _json_row(r: dict) -> dict:
    return {k: (_json_num(v) if isinstance(v, float) else v) for k, v in r.items()
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
        return (f"{title}\n" + "\n".join(_text_table(COMPARE_HEAD, cells, right)) + "\n"
                + "".join(f"  ({n})\n" for n in notes))
    if fmt == "md":
        return (f"Constants of each model: {title}.\n\n"
                + "\n".join(_md_table(COMPARE_HEAD, cells, right)) + "\n"
                + "".join(f"\n- {_md_cell(n)}" for n in notes) + ("\n" if notes else ""))
    if fmt == "html":
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>boundprop compare</title><style>{HTML_CSS}</style></head><body>\n"
                f"<h1>boundprop compare</h1><p>{html.escape(title, quote=False)}</p>\n"
                + _html_table(COMPARE_HEAD, cells, right, values={3, 4, 5, 6, 7})
                + "\n</body></html>\n")
    if fmt == "csv":
        import csv
        import io

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
    raise _error(f"unknown comparison format '{fmt}'; use text, md, html, csv or json")


# ----------------------------------------------------------------------------- CLI


def _format_of(path: str, table: dict[str, str], what: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in table:
        raise _error(f"cannot tell the {what} format of '{path}' from its extension; use "
                     + ", ".join(sorted(set(table))))
    return table[ext]


def cmd_report(args: argparse.Namespace) -> int:
    out = args.output
    fmt = "json" if args.json else (_format_of(out, REPORT_FORMATS, "report") if out
                                    else "text")
    inputs = tuple(p for p in (args.cert, args.model, args.audit) if p)
    if out is not None:  # checked before any work; never onto one of the inputs
        resolve_output_path(out, "-o", inputs)
    doc = load_certificate(args.cert)
    audit = _load_audit(args.audit) if args.audit else None
    if args.model and not os.path.isfile(args.model):
        raise _error(f"model '{args.model}' not found (--model runs the checker on it)")
    if args.max_outputs < 0:
        raise _error("--max-outputs must be >= 0")
    check = run_checker(args.cert, args.model) if args.model else None
    plot_path = None
    if fmt == "md" and out:
        plot_path = os.path.join(os.path.dirname(out), os.path.splitext(os.path.basename(out))[0]
                                 + ".png")
        resolve_output_path(plot_path, "plot", inputs)
    text = render_report(doc, fmt, audit=audit, check=check, plot_path=plot_path,
                         max_outputs=args.max_outputs)
    if out:
        _write_atomic(out, text, inputs)
        print(f"report written to {out}"
              + (f" (plot: {plot_path})" if plot_path and os.path.exists(plot_path)
                 and f"]({os.path.basename(plot_path)})" in text else ""))
        if fmt in ("html", "md") and PLOT_NOTE in text:
            print(PLOT_NOTE, file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if _negative(check, audit) else 0


def cmd_compare(args: argparse.Namespace) -> int:
    fmt = _format_of(args.output, COMPARE_FORMATS, "table") if args.output else None
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise _error(f"--plot '{args.plot}' must be a .png file")
        _mpl()  # fail now, not after certifying every model
    if args.radius and args.wrt != "params":
        raise _error("--radius applies with --wrt params")

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
        _write_atomic(args.output, render_comparison(rows, fmt), tuple(args.models))
        if not quiet:
            print(f"table written to {args.output}")
    if args.plot:
        _write_atomic(args.plot, comparison_plot_png(rows), tuple(args.models))
        if not quiet:
            print(f"plot written to {args.plot}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    try:
        return cmd_compare(args)
    except PlotUnavailable as e:
        raise _error(str(e)) from None


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
    p.add_argument("--method", choices=["interval", "linear"], default="linear",
                   help="interval bounds used for local constants (default linear)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing (still writes -o/--plot)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="also write the table: .md, .html, .csv, .txt or .json")
    p.add_argument("--plot", metavar="FILE.png",
                   help="grouped bar chart of ℓ, L, B per model (log scale; needs "
                   "boundprop[plot])")
    p.set_defaults(func=_cmd_compare)
