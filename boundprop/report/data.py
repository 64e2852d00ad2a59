"""The report's content as data, shared by every format: certificate numbers as shown,
the certificate and audit files read, the global facts, the output-bound, per-layer and audit
rows, and :func:`report_summary` (the JSON report)."""

from __future__ import annotations

import math
import os
from typing import Any

from boundprop.certificate import read_certificate_json
from boundprop.errors import BoundpropError
from boundprop.safe_io import read_input_text, write_atomic
from boundprop.strict_json import loads_strict


def cert_number(x: Any) -> float | None:
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


def fmt_number(x: Any, digits: int = 6) -> str:
    """How every number is shown: 6 significant digits, "inf", "-" when absent."""
    v = cert_number(x)
    if v is None:
        return "-" if x is None or not isinstance(x, str) else x
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def json_number(x: Any) -> Any:
    """A number for JSON output: finite floats as they are, ±inf as strings, else None."""
    v = cert_number(x)
    if v is None or math.isnan(v):
        return None
    return v if math.isfinite(v) else ("inf" if v > 0 else "-inf")


def short_reason(reason: Any, limit: int = 48) -> str:
    """The first clause of ``reason`` on one line, at most ``limit`` characters."""
    if not reason:
        return ""
    text = " ".join(str(reason).split()).split(";")[0]
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_output(path: str, data: str | bytes, protect: tuple[str | None, ...] = ()) -> None:
    """Never half a file, never onto a device, FIFO or folder, nor onto one of ``protect``
    (the command's inputs): see :func:`boundprop.safe_io.write_atomic`."""
    write_atomic(path, data, "-o", [p for p in protect if p])


def _read_json_file(path: str, what: str, hint: str) -> Any:
    """JSON of a regular file (a FIFO or device is refused before it is opened: reading one
    would hang), read strictly (duplicate keys, NaN tokens and absurd nesting refused)."""
    return loads_strict(read_input_text(path, what, hint=hint), f"{what} '{path}'", hint)


def load_certificate(cert: str | os.PathLike | dict) -> dict:
    """The certificate document (a dict), from a path or as given; checks its shape only."""
    doc = read_certificate_json(cert)
    where = "certificate" if isinstance(cert, dict) else f"certificate '{os.fspath(cert)}'"
    hint = "create one with `boundprop certify MODEL -o CERT.json`"
    layers = doc.get("layers")
    if layers is not None and (not isinstance(layers, list)
                               or not all(isinstance(lc, dict) for lc in layers)):
        raise BoundpropError(f"{where} is garbled: 'layers' must be a list of objects; {hint}")
    for key in ("model", "output_bounds", "objective", "tool", "symbolic"):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise BoundpropError(f"{where} is garbled: '{key}' must be an object; {hint}")
    return doc


def load_audit(path: str) -> dict:
    """An audit result (``boundprop audit --json``; a bare list of rows is accepted)."""
    doc = _read_json_file(path, "audit file", "write one with `boundprop audit CERT MODEL "
                          "--json > AUDIT.json`")
    if isinstance(doc, list):
        doc = {"rows": doc}
    if not isinstance(doc, dict):
        raise BoundpropError(f"audit file '{path}' is JSON but not an audit result (a "
                             f"{type(doc).__name__}); write one with `boundprop audit --json`")
    rows = doc.get("rows")
    if rows is not None and not isinstance(rows, list):
        raise BoundpropError(f"audit file '{path}' is garbled: 'rows' must be a list")
    return doc


def layer_entries(doc: dict) -> list[dict]:
    """The certificate's per-node entries (objects only)."""
    return [lc for lc in (doc.get("layers") or []) if isinstance(lc, dict)]


def shape_text(shape: Any) -> str:
    """A shape as 1x8."""
    if isinstance(shape, (list, tuple)) and shape:
        return "x".join(str(d) for d in shape)
    return "?" if shape is None else str(shape)


def describe_input_set(doc: dict) -> tuple[str, dict]:
    """One line describing the certificate's input set, and its facts as a dict."""
    s = doc.get("input_set")
    if not s:
        return "all inputs (global constants)", {"kind": "global"}
    if not isinstance(s, dict):
        return str(s), {"kind": "?"}
    text, facts = _describe_set_kind(doc, s)
    if isinstance(facts.get("shape"), list):
        text += f" (shape {shape_text(facts['shape'])})"
    return text, facts


def _describe_set_kind(doc: dict, s: dict) -> tuple[str, dict]:
    """The description and facts of a box, ℓ∞ ball or ℓ2 ball set."""
    kind = str(s.get("kind", "?"))
    facts: dict[str, Any] = {"kind": kind}
    shape = s.get("shape")
    if isinstance(shape, list) and shape:
        facts["shape"] = shape
    if kind == "box":
        lo = [cert_number(v) for v in (s.get("lower") or [])]
        hi = [cert_number(v) for v in (s.get("upper") or [])]
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
                return f"box [{fmt_number(lo[0])}, {fmt_number(hi[0])}]^{n}", facts
            return (f"box of {n} intervals, widths {fmt_number(min(widths))}.."
                    f"{fmt_number(max(widths))}, within [{fmt_number(min(lo))}, "
                    f"{fmt_number(max(hi))}]"), facts
        return f"box of {n} intervals", facts
    center = s.get("center") or []
    facts["dimension"] = len(center) if isinstance(center, list) else None
    if kind == "linf":
        facts["radius"] = cert_number(s.get("eps"))
        clip = s.get("clip")
        text = (f"ℓ∞ ball of radius {fmt_number(s.get('eps'))} around a point of "
                f"{len(center)} values")
        if clip:
            facts["clip"] = clip
            text += f", clipped to [{fmt_number(clip[0])}, {fmt_number(clip[1])}]"
        return text, facts
    if kind == "l2":
        facts["radius"] = cert_number(s.get("radius"))
        return (f"ℓ2 ball of radius {fmt_number(s.get('radius'))} around a point of "
                f"{len(center)} values"), facts
    return f"{kind} set", facts


def wrt_text(doc: dict) -> str:
    """What the constants are taken with respect to, in words."""
    if doc.get("wrt") == "params":
        return (f"the parameters (ball of radius {fmt_number(doc.get('param_radius'))} around "
                "the current weights)")
    return "the input"


def _lipschitz_detail(doc: dict) -> str:
    """How ℓ compares with the layer product and the Jacobian enclosure."""
    parts = [f"layer product {fmt_number(doc.get('lipschitz_product'))}"]
    if doc.get("lipschitz_enclosure") is not None:
        parts.append(f"Jacobian enclosure {fmt_number(doc.get('lipschitz_enclosure'))}")
    elif doc.get("enclosure_note"):
        parts.append(f"enclosure: {doc['enclosure_note']}")
    if doc.get("lipschitz_lmi") is not None:
        parts.append(f"LipSDP-Neuron {fmt_number(doc.get('lipschitz_lmi'))}")
    return "; ".join(parts)


def global_facts(doc: dict) -> list[tuple[str, str]]:
    """(label, value) lines of the global facts, in the order shown."""
    model = doc.get("model") or {}
    tool = doc.get("tool") or {}
    set_text, _ = describe_input_set(doc)
    sha = str(model.get("sha256") or "")
    rows = [
        ("model", f"{model.get('path', '?')} (sha256 {sha[:16] or '?'}…)"),
        ("input → output", f"'{model.get('input', '?')}' {shape_text(model.get('input_shape'))}"
                           f" → '{model.get('output', '?')}' "
                           f"{shape_text(model.get('output_shape'))}"),
        ("input set", set_text),
        ("norm", f"ℓ{doc.get('norm', '?')}" if doc.get("norm") in ("1", "2")
         else ("ℓ∞" if doc.get("norm") == "inf" else str(doc.get("norm", "?")))),
        ("w.r.t.", wrt_text(doc)),
        ("method", f"{doc.get('method', '?')} bounds, "
                   f"{'local (on the set)' if doc.get('local') else 'global'} constants"),
        ("tool", f"{tool.get('name', 'boundprop')} {tool.get('version', '?')}, "
                 f"{fmt_number(doc.get('elapsed_s'), 3)} s"),
        ("Lipschitz ℓ", f"{fmt_number(doc.get('lipschitz'))}   ({_lipschitz_detail(doc)})"),
        ("smoothness L", fmt_number(doc.get("smoothness"))
         + (f"   ({doc['smoothness_reason']})" if doc.get("smoothness_reason") else
            f"   (curvature method {fmt_number(doc['smoothness_curvature'])})"
            if doc.get("smoothness_curvature") is not None else "")),
        ("bound B", fmt_number(doc.get("bound"))),
    ]
    if doc.get("free"):
        rows.append(("kept symbolic", ", ".join(map(str, doc["free"]))))
    obj = doc.get("objective")
    if isinstance(obj, dict):
        rows.append(("objective", f"{obj.get('loss', '?')} loss ({obj.get('reduction', '?')}): "
                                  f"ℓ_F = {fmt_number(obj.get('lipschitz'))}, "
                                  f"L_F = {fmt_number(obj.get('smoothness'))}"))
        rows.append(("certified step 1/L_F", fmt_number(obj.get("step_size"))))
    return rows


def output_bound_rows(doc: dict, limit: int) -> tuple[list[tuple[str, str, str, str]], int]:
    """(#, lower, upper, width) of the first ``limit`` outputs, and the number of outputs."""
    ob = doc.get("output_bounds") or {}
    lo, hi = ob.get("lower") or [], ob.get("upper") or []
    n = min(len(lo), len(hi))
    rows = []
    for i in range(min(n, limit)):
        a, b = cert_number(lo[i]), cert_number(hi[i])
        width = b - a if a is not None and b is not None else None
        rows.append((str(i), fmt_number(a), fmt_number(b), fmt_number(width, 4)))
    return rows, n


LAYER_HEAD = ("#", "node", "op", "family", "ℓφ", "Lφ", "ℓ", "L", "B", "width", "smoothness reason")
LAYER_KEYS = ("op_lipschitz", "op_smoothness", "lipschitz", "smoothness", "bound",
              "interval_width")


def layer_rows(doc: dict) -> list[tuple[str, ...]]:
    """One row of LAYER_HEAD per IR node."""
    rows = []
    for k, lc in enumerate(layer_entries(doc)):
        rows.append((str(k), str(lc.get("node", "?")), str(lc.get("op", "?")),
                     str(lc.get("family", "?")))
                    + tuple(fmt_number(lc.get(key)) if key != "interval_width"
                            else fmt_number(lc.get(key), 4) for key in LAYER_KEYS)
                    + (" ".join(str(lc.get("smoothness_reason") or "").split()),))
    return rows


def audit_rows(audit: dict) -> tuple[list[tuple[str, ...]], int]:
    """(quantity, certified, empirical, ratio, violated) of every audit row, and the number
    of violations."""
    rows, violated = [], 0
    for r in audit.get("rows") or []:
        if not isinstance(r, dict):
            continue
        v = r.get("violated")
        bad = bool(v) and v not in ("false", "False", "0", "no")
        violated += bad
        rows.append((str(r.get("quantity", "?")), fmt_number(r.get("certified")),
                     fmt_number(r.get("empirical")), fmt_number(r.get("ratio"), 4),
                     "VIOLATED" if bad else ("no" if v is not None else "-")))
    if not rows and cert_number(audit.get("violations")):
        violated = int(cert_number(audit["violations"]) or 0)
    elif cert_number(audit.get("violations")) is not None:
        violated = max(violated, int(cert_number(audit["violations"]) or 0))
    return rows, violated


def report_summary(cert: str | os.PathLike | dict, check: dict | None = None,
                   audit: dict | None = None) -> dict:
    """The report as data: globals and the per-layer series (±inf as "inf" strings)."""
    doc = load_certificate(cert)
    layers = layer_entries(doc)
    set_text, set_facts = describe_input_set(doc)
    model = doc.get("model") or {}
    ob = doc.get("output_bounds") or {}
    out = {
        "model": {k: model.get(k) for k in ("path", "sha256", "input", "output", "input_shape",
                                            "output_shape")},
        "input_set": dict(set_facts, description=set_text),
        "norm": doc.get("norm"), "wrt": doc.get("wrt"), "local": doc.get("local"),
        "param_radius": json_number(doc.get("param_radius")),
        "method": doc.get("method"), "tool": doc.get("tool"),
        "elapsed_s": json_number(doc.get("elapsed_s")),
        "lipschitz": json_number(doc.get("lipschitz")),
        "lipschitz_product": json_number(doc.get("lipschitz_product")),
        "lipschitz_enclosure": json_number(doc.get("lipschitz_enclosure")),
        "enclosure_note": doc.get("enclosure_note"),
        "lipschitz_lmi": json_number(doc.get("lipschitz_lmi")),
        "smoothness": json_number(doc.get("smoothness")),
        "smoothness_reason": doc.get("smoothness_reason"),
        "bound": json_number(doc.get("bound")),
        "outputs": len(ob.get("lower") or []),
        "objective": None if not isinstance(doc.get("objective"), dict) else {
            k: (json_number(v) if not isinstance(v, str) else v)
            for k, v in doc["objective"].items()},
        "series": {
            "index": list(range(len(layers))),
            "node": [lc.get("node") for lc in layers],
            "op": [lc.get("op") for lc in layers],
            "family": [lc.get("family") for lc in layers],
            **{key: [json_number(lc.get(key)) for lc in layers] for key in LAYER_KEYS},
            "smoothness_reason": [lc.get("smoothness_reason") for lc in layers],
        },
    }
    if check is not None:
        out["check"] = check
    if audit is not None:
        rows, violated = audit_rows(audit)
        out["audit"] = {"violations": violated, "rows": audit.get("rows") or []}
    return out


def formulas(doc: dict) -> list[tuple[str, str]]:
    """(constant, symbolic formula) of the constants the certificate gives formulas for."""
    sym = doc.get("symbolic") or {}
    return [(k, str(sym[k])) for k in ("lipschitz", "smoothness", "bound") if sym.get(k)]
