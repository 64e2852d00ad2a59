"""``bp.check``: the order of the items, the certificate's kind, the model, the enclosures.

The model file's digest, the schema and the certificate's kind are checked by the kernel
(``independent``); the model is then imported, and the set re-propagated, by the prover's
code (``recomputed``, see :mod:`boundprop.checker.recomputed`); the output samples are run
through onnxruntime on the ONNX file for a float32 execution claim (``independent`` of the
IR), and through the IR's float64 evaluation otherwise (``recomputed``)."""

from __future__ import annotations

import math
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from boundprop.certificate import read_certificate_json, schema
from boundprop.checker.compositions import check_compositions, check_globals, check_objective
from boundprop.checker.fields import unverified_fields
from boundprop.checker.kernel import model_digest, schema_errors
from boundprop.checker.named import check_named_constants
from boundprop.checker.recomputed import Prover
from boundprop.checker.result import CertificateInvalid, CheckResult, Failed, Recorder, State
from boundprop.exact import as_number
from boundprop.safe_io import check_input_file


def check(cert: str | os.PathLike | dict, model: str | os.PathLike, *,
          raise_on_invalid: bool = True, samples: int = 64) -> CheckResult:
    """Re-verify the certificate ``cert`` (path or parsed JSON) against ``model`` (path).

    Returns a truthy :class:`CheckResult` when every item holds. When one fails, raises
    :class:`CertificateInvalid` (whose ``result`` names it), or returns the falsy result with
    ``raise_on_invalid=False``. Unreadable files raise :class:`boundprop.BoundpropError`."""
    t0 = time.perf_counter()
    doc = read_certificate_json(cert)
    result = CheckResult(str(cert) if not isinstance(cert, dict) else "(certificate)",
                         str(model))
    result.unverified = unverified_fields(doc)
    st = State(doc, Prover())
    try:
        _run(Recorder(result), st, Path(model), samples)
    except Failed:
        pass
    result.trusted = list(st.prover.used)
    result.elapsed_s = time.perf_counter() - t0
    if isinstance(doc.get("elapsed_s"), (int, float)):
        result.prover_elapsed_s = float(doc["elapsed_s"])
    if not result.valid and raise_on_invalid:
        raise CertificateInvalid(result)
    return result


def _run(ck: Recorder, st: State, model: Path, samples: int) -> None:
    """The items in order; the first that fails stops the check."""
    doc = st.doc
    errs = schema_errors(doc, schema())
    ck.item("schema", not errs, "independent",
            "follows boundprop.certificate/1" if not errs else
            f"{len(errs)} schema error(s), first: {errs[0]}")
    _check_header(ck, doc)
    _check_model(ck, st, model)
    _check_enclosures(ck, st, model, samples)
    st.claimed = {k: as_number(v) for k, v in
                  ((doc.get("symbolic") or {}).get("values") or {}).items()}
    check_named_constants(ck, st)
    check_compositions(ck, st)
    check_globals(ck, st)
    unknown = sorted(set(st.claimed) - st.covered)
    ck.item("constants covered", not unknown, "independent",
            f"all {len(st.claimed)} named constants checked" if not unknown else
            f"constant {unknown[0]} is claimed but no node of the model defines it")
    if doc.get("objective") is not None:
        check_objective(ck, doc)


def _check_header(ck: Recorder, doc: dict) -> None:
    """Claims about the kind of certificate: ``local`` is what the set implies (constants on
    a set are local; a global claim must come without a set, where everything is re-derived
    over all inputs); float32 execution, parameter radius, objective and output bounds only
    where the certificate's kind gives them a meaning the checker verifies."""
    has_set, wrt = doc["input_set"] is not None, doc["wrt"]
    if "local" in doc:
        ck.item("local", doc["local"] == has_set, "independent",
                f"local = {doc['local']} {'matches' if doc['local'] == has_set else 'but'} "
                f"the certificate {'has' if has_set else 'has no'} input set"
                + ("" if doc["local"] == has_set else
                   " (a global claim is only checked without a set: certify with --global)"))
    execution = doc.get("execution", "real")
    ck.item("execution", execution == "real" or (has_set and wrt == "input"), "independent",
            f"{execution} execution" + ("" if execution == "real" or (has_set and wrt == "input")
                                        else ": float32 applies to output bounds on a set "
                                        "w.r.t. the input"))
    if wrt == "params" and doc["norm"] != "2":
        ck.item("norm", False, "independent",
                "constants w.r.t. the parameters are in the ℓ2 (Frobenius) norm only")
    if wrt == "input" and doc.get("param_radius") is not None:
        ck.item("parameter radius", False, "independent",
                "a parameter radius in a certificate w.r.t. the input")
    if wrt == "input" and doc.get("objective") is not None:
        ck.item("objective", False, "independent",
                "an objective (loss) in a certificate w.r.t. the input is not checked")
    if not has_set and doc.get("output_bounds") is not None:
        ck.item("output bounds", False, "recomputed",
                "output bounds without an input set are not checked")


def _check_model(ck: Recorder, st: State, model: Path) -> None:
    """The model file's digest (kernel), then the model imported by the prover's importer,
    whose shapes and node list (names, ops) must be the certificate's."""
    doc = st.doc
    # Size is the importer's memory guard's business; here: a regular file (a FIFO hangs).
    check_input_file(model, "model file", 2**62, "give the .onnx file the certificate is about")
    digest = model_digest(model)  # covers external data files too
    ck.item("model sha256", digest == doc["model"]["sha256"], "independent",
            f"{digest[:16]}… matches" if digest == doc["model"]["sha256"] else
            f"the model's sha256 is {digest[:16]}…, the certificate's "
            f"{doc['model']['sha256'][:16]}…: a different model")
    m = doc["model"]
    st.net = net = st.prover.load_model(model, m)
    ck.item("model shapes", list(net.input_shape) == m["input_shape"]
            and list(net.output_shape) == m["output_shape"], "recomputed",
            f"input {m['input_shape']}, output {m['output_shape']}")
    layers, want = doc["layers"], st.prover.node_list(net)
    got = [(lc["node"], lc["op"], lc.get("family", w[2])) for lc, w in zip(layers, want)]
    bad = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), None)
    ck.item("layers", len(layers) == len(want) and bad is None, "recomputed",
            f"{len(want)} nodes (names, ops, families)" if bad is None and
            len(layers) == len(want) else
            f"the certificate lists {len(layers)} layers, the model has {len(want)} nodes"
            if bad is None else
            f"layer {bad} is claimed as {got[bad]} but the model's node is {want[bad]}")
    shape = (doc["input_set"] or {}).get("shape")
    if shape is not None:
        ck.item("input set shape", shape == list(net.input_shape), "recomputed",
                f"the set's shape {shape}, the model's input {list(net.input_shape)}")


def _check_enclosures(ck: Recorder, st: State, model: Path, samples: int) -> None:
    """Re-propagate the set: output bounds (float32 execution: with float32 rounding, and
    samples through onnxruntime in float32 with no tolerance), layer interval widths."""
    doc, net, prover = st.doc, st.net, st.prover
    wrt, method, rho = doc["wrt"], doc["method"], doc.get("param_radius")
    if doc["input_set"] is not None:
        st.s = prover.input_set(doc["input_set"], net.input_shape)
    if wrt == "params" and st.s is None:
        ck.item("input set", False, "independent", "constants w.r.t. the parameters need data")
    if wrt == "params":
        ck.item("parameter radius", isinstance(rho, (int, float)) and rho >= 0, "independent",
                f"ρ = {rho}")
    if st.s is None:
        _check_global_widths(ck, doc)
        return
    if wrt == "params":
        st.boxes = prover.param_ball_enclosures(net, st.s, float(rho))
    else:
        st.boxes = prover.enclosures(net, st.s, method)
    float32 = doc.get("execution", "real") == "float32"
    out_box = st.boxes[net.output] if not float32 else \
        prover.enclosures(net, st.s, method, "float32")[net.output]
    lo_c, hi_c = _check_output_bounds(ck, doc, out_box, method, float32)
    if samples and wrt == "input":
        _check_samples(ck, st, model, samples, (lo_c, hi_c), float32)
    _check_widths(ck, doc, st.boxes)


def _check_samples(ck: Recorder, st: State, model: Path, samples: int, claimed,
                   float32: bool) -> None:
    """The set's centre and ``samples`` random points have outputs inside the claimed bounds:
    float32 execution through onnxruntime with no tolerance (``independent``: the ONNX file,
    not the IR), real execution by the IR in float64 within 1e-9 (1 + |y|) (``recomputed``)."""
    s, lo_c, hi_c = st.s, *claimed
    xs = np.concatenate([0.5 * (s.lower + s.upper)[None],
                         s.sample(samples, np.random.default_rng(0))])
    if float32:
        ys = st.prover.onnxruntime_outputs(model, st.doc["model"], st.net.input_shape, xs)
        tol, what, how = 0.0, "onnxruntime float32", "independent"
    else:
        ys = st.prover.evaluate(st.net, xs)
        tol, what, how = 1e-9 * (1.0 + np.abs(ys)), "evaluated", "recomputed"
    out = np.flatnonzero(np.any((ys < lo_c - tol) | (ys > hi_c + tol), axis=1))
    ck.item("output samples", out.size == 0, how,
            f"{len(xs)} points of the set ({what}) inside the bounds" if out.size == 0
            else f"sample {out[0]} of the set has an output ({what}) outside the claimed "
            "bounds")


def _check_output_bounds(ck: Recorder, doc: dict, box, method: str, float32: bool):
    """The re-propagated output enclosure lies inside the claimed output bounds."""
    ob = doc["output_bounds"]
    if ob is None:
        ck.item("output bounds", False, "recomputed", "missing for a certificate on a set")
    lo_c = np.asarray(ob["lower"], dtype=np.float64)
    hi_c = np.asarray(ob["upper"], dtype=np.float64)
    lo_r, hi_r = (b.reshape(-1) for b in box)
    if lo_c.shape != lo_r.shape or hi_c.shape != hi_r.shape:
        ck.item("output bounds", False, "recomputed",
                f"{lo_c.size} bounds claimed for {lo_r.size} outputs")
    bad = np.flatnonzero((lo_c > lo_r) | (hi_c < hi_r) | np.isnan(lo_c) | np.isnan(hi_c))
    how = f"{method}, float32 execution" if float32 else method
    ck.item("output bounds", bad.size == 0, "recomputed",
            f"{lo_r.size} outputs re-propagated ({how}) inside the claimed bounds"
            if bad.size == 0 else
            f"output {bad[0]}: claimed [{lo_c[bad[0]]:.17g}, {hi_c[bad[0]]:.17g}] but the "
            f"re-propagated ({how}) enclosure is [{lo_r[bad[0]]:.17g}, {hi_r[bad[0]]:.17g}]")
    return lo_c, hi_c


def _check_widths(ck: Recorder, doc: dict, boxes) -> None:
    """Each claimed layer interval width ≥ the re-propagated enclosure's largest width."""
    for k, (lc, (lo, hi)) in enumerate(zip(doc["layers"], boxes)):
        w = lc.get("interval_width")
        if w is None:
            continue
        width = float(np.max(hi - lo, initial=0.0))
        if not as_number(w) >= (Fraction(width) if math.isfinite(width) else math.inf):
            ck.item(f"layer {k} ({lc['node']}) interval width", False, "recomputed",
                    f"claimed {w}, re-propagated {width:.17g}")


def _check_global_widths(ck: Recorder, doc: dict) -> None:
    """Without a set there are no enclosures: a finite interval width is an unchecked claim."""
    for k, lc in enumerate(doc["layers"]):
        w = lc.get("interval_width")
        if w is not None and as_number(w) != math.inf:
            ck.item(f"layer {k} ({lc['node']}) interval width", False, "recomputed",
                    f"claimed {w} without an input set (over all inputs it is unbounded)")
