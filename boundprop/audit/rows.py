"""The rows of an audit: each certified quantity against the best empirical lower bound the
searches found, with its verdict; and the onnxruntime cross-check of the IR.

Verdicts. An output bound is violated when the observed value passes it by more than
``EVAL_ERR`` × (M + |bound|), M the largest node magnitude seen; a constant when its
(noise-reduced) empirical value exceeds the certified one by a relative ``CONST_RTOL`` (the
rounding of the norms and denominators). The onnxruntime row compares the real model, run in
float32 on up to 256 sampled points and every output witness (inputs rounded to float32, the IR
evaluated at the same rounded points), against the tolerance ``ORT_RTOL`` × (max|output| +
0.01·M): beyond it the IR would not be the model.
"""

from __future__ import annotations

import math

import numpy as np

from boundprop.audit.result import AuditRow
from boundprop.audit.searches import Auditor
from boundprop.audit.stats import EVAL_ERR
from boundprop.runtime import OrtModel

CONST_RTOL = 1e-9  # relative slack on constants (rounding of norms and denominators)
ORT_RTOL = 1e-3  # onnxruntime (float32) vs IR (float64) agreement


def crosscheck(auditor: Auditor):
    """(the ``onnxruntime`` row, onnxruntime's outputs at the upper and lower witnesses of
    every output entry or None)."""
    st, net = auditor.stats, auditor.net
    try:
        ort = OrtModel(auditor.model_path, net.input_name, net.output_name,
                       tuple(net.input_shape), threads=1)
    except Exception as e:
        msg = " ".join(str(e).split())[:160]
        return AuditRow("onnxruntime", None, None, f"not audited: onnxruntime could not "
                        f"run the model ({msg})", kind="crosscheck"), None
    X = _crosscheck_points(auditor)
    X32 = X.astype(np.float32).astype(np.float64)
    y_ort = ort(X32).reshape(len(X), -1)
    y_ir = net(X32).reshape(len(X), -1)
    # Outputs beyond float32's range are inf/NaN in onnxruntime by design (overflow), not
    # a disagreement: they are left out of the comparison and counted.
    overflow = ~np.isfinite(y_ort) & ~(np.abs(y_ir) <= np.finfo(np.float32).max)
    same = np.where(overflow, 0.0, np.abs(y_ort - y_ir))
    dev = float(np.nan_to_num(same, nan=np.inf).max(initial=0.0))
    fits = np.where(overflow, 0.0, np.abs(y_ir))
    tol = ORT_RTOL * (float(fits.max(initial=0.0)) + 0.01 * st.mag)
    note = (f"; {int(overflow.sum())} outputs beyond float32 range (onnxruntime inf/NaN "
            "by overflow) left out" if overflow.any() else "")
    row = AuditRow("onnxruntime", tol, dev, f"max |onnxruntime − IR| on {len(X)} points "
                   f"(float32 inputs){note}", kind="crosscheck", violated=dev > tol)
    witness = None
    if auditor.wrt == "input" and st.keep:
        k = st.w_hi.shape[0]
        n0 = len(auditor.ort_points)
        wy = y_ort[n0:]
        witness = (wy[np.arange(k), np.arange(k)], wy[k + np.arange(k), np.arange(k)])
    return row, witness


def _crosscheck_points(auditor: Auditor):
    """Inputs: the sampled points then every output witness (upper, then lower); for
    ``wrt="params"`` the context inputs and 32 more points of the input set."""
    st, shape = auditor.stats, auditor.net.input_shape
    if auditor.wrt == "input":
        pts = list(auditor.ort_points)
        if st.keep:
            pts += list(st.w_hi) + list(st.w_lo)
        return np.array(pts).reshape(-1, *shape)
    if auditor.xregion.scale > 0:
        return np.concatenate([auditor.fn.ctx, auditor.xregion.sample(32, auditor.rng).reshape(
            -1, *shape)])
    return auditor.fn.ctx


def audit_rows(auditor: Auditor) -> list[AuditRow]:
    """Every row, in order: output bounds, ℓ, L, B, the objective's, each IR node's, and the
    onnxruntime cross-check."""
    if auditor.fn.use_fd:
        auditor.notes.append(f"no reverse rule for op {auditor.fn.fd_reason}: search directions "
                             "from finite-difference Jacobians")
    doc, st = auditor.doc, auditor.stats
    xrow, witness = crosscheck(auditor)
    rows = _output_rows(doc, st, witness)
    out = st.out
    rows.append(constant_row(st, "lipschitz", doc.get("lipschitz"), st.lip[out],
                             st.lip_how[out]))
    rows.append(constant_row(st, "smoothness", doc.get("smoothness"), st.smooth[out],
                             st.smooth_how[out]))
    rows.append(constant_row(st, "bound", doc.get("bound"), st.bound[out], st.bound_how[out]))
    obj = doc.get("objective")
    if obj:
        have = st.objective is not None
        rows.append(constant_row(st, "objective.lipschitz", obj.get("lipschitz"),
                                 st.obj_lip if have else None, st.obj_lip_how))
        rows.append(constant_row(st, "objective.smoothness", obj.get("smoothness"),
                                 st.obj_smooth if have else None, st.obj_smooth_how))
    rows += _layer_rows(doc, st)
    rows.append(xrow)
    return rows


def _output_rows(doc, st, witness) -> list[AuditRow]:
    """output[i].upper / .lower: the observed max / min against the certified bounds."""
    ob = doc.get("output_bounds")
    if not ob:
        return []
    rows = []
    tol = EVAL_ERR * st.mag
    up, lw = np.asarray(ob["upper"], float), np.asarray(ob["lower"], float)
    hi, lo = st.hi[st.out].reshape(-1), st.lo[st.out].reshape(-1)
    for i in range(len(up)):
        mid = 0.5 * (hi[i] + lo[i])
        rows.append(AuditRow(
            f"output[{i}].upper", float(up[i]), float(hi[i]), st.how_hi[i], "upper",
            bool(hi[i] > up[i] + tol + EVAL_ERR * abs(up[i])), None,
            None if witness is None else float(witness[0][i]), float(mid)))
        rows.append(AuditRow(
            f"output[{i}].lower", float(lw[i]), float(lo[i]), st.how_lo[i], "lower",
            bool(lo[i] < lw[i] - tol - EVAL_ERR * abs(lw[i])), None,
            None if witness is None else float(witness[1][i]), float(mid)))
    return rows


def _layer_rows(doc, st) -> list[AuditRow]:
    """layer[k].bound / .lipschitz / .smoothness / .width of every IR node k."""
    rows = []
    for k, lc in enumerate(doc.get("layers") or []):
        name = str(lc.get("node", k))
        for q in ("bound", "lipschitz", "smoothness"):
            emp = {"bound": st.bound, "lipschitz": st.lip, "smoothness": st.smooth}[q][k]
            how = {"bound": st.bound_how, "lipschitz": st.lip_how,
                   "smoothness": st.smooth_how}[q][k]
            r = constant_row(st, f"layer[{k}].{q}", lc.get(q), emp, how)
            r.node = name
            rows.append(r)
        w = lc.get("interval_width")
        if w is not None:
            rng = st.hi[k] - st.lo[k]
            emp = float(rng.max(initial=0.0)) if np.all(np.isfinite(rng)) else None
            r = constant_row(st, f"layer[{k}].width", w, emp, "range of one entry",
                             kind="width")
            r.node = name
            rows.append(r)
    return rows


def constant_row(st, name, certified, emp, how, kind="constant") -> AuditRow:
    """The row of a constant (or width): violated when emp > certified·(1 + CONST_RTOL)
    (+ the evaluation noise for widths); not audited when emp is None."""
    cert = _as_float(certified)
    if cert is not None and math.isinf(cert):
        return AuditRow(name, cert, None if emp is None else float(emp),
                        how or "-", kind)
    if emp is None:
        return AuditRow(name, cert, None, "not audited", kind)
    violated = cert is not None and emp > cert * (1 + CONST_RTOL) + (
        EVAL_ERR * st.mag if kind == "width" else 0.0)
    return AuditRow(name, cert, float(emp), how or "-", kind, bool(violated))


def _as_float(x) -> float | None:
    """A certificate number: a float, "inf"-like strings as inf, other strings None."""
    if x is None:
        return None
    if isinstance(x, str):
        if x.strip().lower() in ("inf", "+inf", "infinity"):
            return math.inf
        try:
            return float(x)
        except ValueError:
            return None
    return float(x)
