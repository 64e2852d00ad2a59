"""Independent checker: ``bp.check(cert, model)`` / ``boundprop check CERT MODEL``.

It re-verifies a certificate without trusting the numbers in it, item by item, and stops at the
first item that fails. Each item says *how* it was checked:

- ``independent``: by an argument different from the prover's. Operator norms: a claimed ℓ2
  bound u of an affine map A is accepted iff u²I − AᵀA is positive definite, shown by a float
  Cholesky factorisation of a shifted matrix whose shift covers the rounding of AᵀA and of the
  factorisation (Demmel's bound; :func:`spectral_bound_holds`); ℓ∞/ℓ1 norms are max row /
  column sums recomputed here from the weights. The input radius R and the enclosure norms
  B̄ are recomputed from the sets with this module's own rounding.
- ``exact``: compositions. Every per-layer formula (and the global ones) is parsed back from the
  certificate and evaluated in exact rational interval arithmetic (:mod:`boundprop.exact`) at
  the *claimed* values of its inputs; the claimed value must be ≥ the exact upper end. The
  formulas are monotone (increasing in every constant except the batch-norm ε and variance
  lower bound, which must not be claimed larger than the model's), so claimed constants that
  are upper bounds give claimed results that are upper bounds.
- ``recomputed``: the enclosures (intervals) are re-propagated with boundprop's bound
  propagation from the certificate's input set and must lie inside the claimed ones; activation,
  pooling and normalisation constants are re-derived by each op's rule on those enclosures;
  the Jacobian enclosure (when the claimed ℓ relies on it) and convolution ℓ2 norms too large to
  materialise are recomputed by the prover's code. These items trust boundprop's interval
  arithmetic (which its own test suite tries to break), not the certificate.

Anything claimed that no item covers (an unknown constant) makes the certificate invalid.
Every field is verified except those in :data:`UNVERIFIED_FIELDS` (cosmetic: the tool, the
timing, notes, the meaning of names, the model's path) and keys the schema does not define;
``CheckResult.unverified`` lists those present, and ``boundprop check``/``report`` show them
as not verified. In particular: ``local`` must be what the set implies (a global claim is
checked only without a set, over all inputs); a ``float32`` execution claim is re-propagated
with float32 rounding and its samples are run through onnxruntime in float32 with no
tolerance; ``lipschitz_product`` must be ≥ the exact layer product; ``lipschitz_enclosure``
and ``Jenc`` (upper bounds of ℓ) ≥ the verified product or the re-derived Jacobian enclosure;
every layer's ``op_lipschitz``/``op_smoothness`` ≥ its op rule's value; the input layer's
constants ≥ those of the identity (1 or 0, 0, R).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from boundprop.safe_io import check_input_file

# Constants a formula decreases in: claimed values must not exceed the model's (re-derived) ones.
LOWER_BOUND_STEMS = ("eps_bn", "vlo")


class CertificateInvalid(Exception):  # noqa: N818 - "invalid" is the verdict's name
    """The certificate does not hold for the model; ``result`` has every checked item."""

    def __init__(self, result: CheckResult) -> None:
        super().__init__(result.reason)
        self.result = result


@dataclass
class CheckItem:
    name: str
    ok: bool
    how: str
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"item": self.name, "ok": self.ok, "how": self.how, "detail": self.detail}


@dataclass
class CheckResult:
    """Outcome of a check: truthy iff valid. ``reason`` names the first failing item."""

    certificate: str
    model: str
    items: list[CheckItem] = field(default_factory=list)
    elapsed_s: float = 0.0
    prover_elapsed_s: float | None = None
    unverified: list[str] = field(default_factory=list)  # fields no item checks

    @property
    def valid(self) -> bool:
        return all(i.ok for i in self.items)

    @property
    def reason(self) -> str | None:
        bad = next((i for i in self.items if not i.ok), None)
        return None if bad is None else f"{bad.name}: {bad.detail}"

    def __bool__(self) -> bool:
        return self.valid

    def to_json(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for i in self.items:
            counts[i.how] = counts.get(i.how, 0) + 1
        return {"valid": self.valid, "reason": self.reason, "certificate": self.certificate,
                "model": self.model, "checked": counts, "elapsed_s": self.elapsed_s,
                "prover_elapsed_s": self.prover_elapsed_s, "unverified": self.unverified,
                "items": [i.to_json() for i in self.items]}


class _Failed(Exception):
    pass


class _Checker:
    def __init__(self, result: CheckResult) -> None:
        self.result = result

    def item(self, name: str, ok: bool, how: str, detail: str = "") -> None:
        self.result.items.append(CheckItem(name, bool(ok), how, detail))
        if not ok:
            raise _Failed


# ---------------------------------------------------------------------------------------------
# Independent numerical arguments


def _gamma(n: int) -> Fraction:
    """γ_n = n u / (1 − n u), u = 2⁻⁵³, exactly."""
    nu = Fraction(n, 2**53)
    return nu / (1 - nu)


def _sum_upper(values, n: int) -> Fraction:
    """Upper bound of the exact sum of n nonnegative floats from their float sum."""
    import numpy as np

    s = float(np.sum(values))
    return Fraction(s) * (1 + _gamma(n + 1)) if math.isfinite(s) else math.inf


def spectral_bound_holds(a, u: float, entry_rel_error: float = 0.0) -> bool:
    """True only if ‖A‖₂ ≤ u for the real matrix A within relative entry error
    ``entry_rel_error`` of the float matrix ``a`` (|A − a| ≤ e|a|).

    Shows u²I − AᵀA ≻ 0 (on the smaller Gram side G = aaᵀ or aᵀa, n × n, inner size m):
    with G̃ the float Gram matrix, H = s I − G̃ (diagonal rounded) for s ≈ u² − c, a successful
    float Cholesky of H gives R̃ᵀR̃ = H + ΔH with |ΔH| ≤ γ|R̃ᵀ||R̃| (Demmel), and
    ‖R̃‖_F² ≤ tr H/(1 − γ), so H ⪰ −d I with d = γ tr H/(1 − γ) (γ = γ_{2n+2}, generous). Then
    u²I − AᵀA = H + D + (G̃ − G) + (G − AᵀA) with D = diag(u² − G̃_jj − H_jj) (exact), ‖G̃ −
    G‖₂ ≤ γ_m ‖a‖_F² and ‖G − AᵀA‖₂ ≤ (2e + e²)‖a‖_F²; positive definite if
    min_j D_jj > d + those two."""
    import numpy as np
    import scipy.linalg

    a = np.asarray(a, dtype=np.float64)
    if not (u >= 0 and math.isfinite(u)):
        return u == math.inf
    if a.size == 0 or not np.any(a):
        return True
    if a.shape[0] > a.shape[1]:
        a = a.T
    n, m = a.shape
    fro2 = _sum_upper(a * a, a.size) * (1 + Fraction(1, 2**51))  # squares' rounding
    e = Fraction(entry_rel_error)
    g = a @ a.T
    gm = _gamma(m) * fro2 + (2 * e + e * e) * fro2
    u2 = Fraction(u) ** 2
    gh = _gamma(2 * n + 2)
    # Shift: what the rounding can cost, doubled; fails (rightly) when u is too tight.
    if fro2 * (1 + e) ** 2 <= u2:
        return True  # ‖A‖₂ ≤ ‖A‖_F ≤ (1 + e)‖a‖_F: no factorisation needed (huge claims too)
    shift = 2 * (gm + gh / (1 - gh) * n * u2) + u2 * Fraction(1, 2**40)
    try:
        s = float(u2 - shift)
    except OverflowError:  # u² beyond float range while ‖a‖_F is too: not shown here
        return False
    h = -g
    h[np.diag_indices(n)] = s - np.diag(g)
    try:
        scipy.linalg.cholesky(h, lower=False, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        return False
    diag_h = np.diag(h)
    trace_h = sum((Fraction(float(x)) for x in diag_h), Fraction(0))
    if trace_h <= 0:
        return False
    d = gh * trace_h / (1 - gh)
    diag_g = np.diag(g)
    d_min = min(u2 - Fraction(float(gj)) - Fraction(float(hj)) for gj, hj in zip(diag_g, diag_h))
    tiny = Fraction(n, 2**1000)  # underflow in the factorisation
    return d_min > d + gm + tiny


def _row_sum_norm(a, norm: str) -> Fraction | float:
    """‖a‖_∞ (max row sum of |a|) or ‖a‖_1 (max column sum), rounded up."""
    import numpy as np

    mag = np.abs(np.asarray(a, dtype=np.float64))
    sums = mag.sum(axis=1 if norm == "inf" else 0)
    n = mag.shape[1 if norm == "inf" else 0]
    top = float(np.max(sums)) if sums.size else 0.0
    return Fraction(top) * (1 + _gamma(n + 1)) if math.isfinite(top) else math.inf


def _vector_norm_upper(v, norm: str) -> Fraction | float:
    import numpy as np

    mag = np.abs(np.asarray(v, dtype=np.float64)).reshape(-1)
    if mag.size == 0:
        return Fraction(0)
    if not np.all(np.isfinite(mag)):
        return math.inf
    if norm == "inf":
        return Fraction(float(mag.max()))
    if norm == "1":
        return _sum_upper(mag, mag.size)
    with np.errstate(over="ignore"):  # squares beyond float range: the norm is unbounded here
        sq = _sum_upper(mag * mag, mag.size)
    if sq == math.inf:
        return math.inf
    from boundprop.exact import _isqrt_bounds

    return _isqrt_bounds(sq * (1 + Fraction(1, 2**51)))[1]


def _operator_matrix(op, norm: str):
    """(matrix, relative entry error, description) of an affine op's linear part, or None.
    Materialising a convolution costs about one forward pass per input entry: done for the
    ℓ2 norm only (the ℓ∞/ℓ1 sums are cheap to recompute)."""
    from boundprop.ops.affine import Dense

    if isinstance(op, Dense) and not getattr(op, "_grows", False):
        # y = W x along one axis, copies of the same W: every induced p-norm is ‖W‖_p.
        return op.matrix, 0.0, "the weight matrix"
    if hasattr(op, "materialize") and norm == "2":
        m = op.materialize()
        if m is not None:
            # One rounding per entry at most (see AffinePrimitive.materialize).
            return m, 2.0**-52, "the materialised matrix"
    return None


# ---------------------------------------------------------------------------------------------


def schema() -> dict:
    """The certificate's JSON Schema (shipped with the package)."""
    return json.loads((Path(__file__).parent / "schemas" / "certificate-1.schema.json")
                      .read_text())


# Fields of a certificate the checker does not verify (cosmetic or informational). Paths:
# keys joined by ".", "[]" for the items of a list, "*" for any key of a map. ``check`` lists
# those present (and any key the schema does not define) in ``CheckResult.unverified``;
# ``boundprop report`` shows them as "not verified", never under the checker's verdict.
UNVERIFIED_FIELDS = frozenset({
    "model.path", "tool", "tool.name", "tool.version", "elapsed_s", "enclosure_note",
    "smoothness_reason", "layers[].smoothness_reason", "symbolic.meaning",
    "symbolic.meaning.*",
})


def _alternatives(sch: dict, root: dict) -> list[dict]:
    """``sch`` with its ``$ref`` resolved, and its ``oneOf``/``anyOf`` alternatives."""
    def resolve(x: dict) -> dict:
        while "$ref" in x:
            x = root["$defs"][x["$ref"].rsplit("/", 1)[-1]]
        return x
    sch = resolve(sch)
    return [sch] + [resolve(a) for key in ("oneOf", "anyOf") for a in sch.get(key, [])]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def schema_fields() -> set[str]:
    """Every field path the certificate schema defines (see ``UNVERIFIED_FIELDS``)."""
    root, out = schema(), set()

    def walk(sch: dict, path: str) -> None:
        for a in _alternatives(sch, root):
            for key, sub in a.get("properties", {}).items():
                out.add(_join(path, key))
                walk(sub, _join(path, key))
            if isinstance(a.get("additionalProperties"), dict):
                out.add(_join(path, "*"))
                walk(a["additionalProperties"], _join(path, "*"))
            if isinstance(a.get("items"), dict):
                walk(a["items"], f"{path}[]")
    walk(root, "")
    return out


def document_fields(doc: dict) -> set[str]:
    """Every field path present in the certificate ``doc``, named as in
    :func:`schema_fields` (a key the schema does not define keeps its own name)."""
    root, out = schema(), set()

    def walk(x: Any, sch: dict | None, path: str) -> None:
        alts = [] if sch is None else _alternatives(sch, root)
        if isinstance(x, dict):
            props = {k: v for a in alts for k, v in a.get("properties", {}).items()}
            extra = next((a["additionalProperties"] for a in alts
                          if isinstance(a.get("additionalProperties"), dict)), None)
            for key, value in x.items():
                sub = props.get(key, extra)
                p = _join(path, key if key in props or extra is None else "*")
                out.add(p)
                walk(value, sub, p)
        elif isinstance(x, list):
            items = next((a["items"] for a in alts if isinstance(a.get("items"), dict)), None)
            for e in x:
                if isinstance(e, (dict, list)):
                    walk(e, items, f"{path}[]")
    walk(doc, root, "")
    return out


def unverified_fields(doc: dict) -> list[str]:
    """The fields of ``doc`` no check item verifies: those of ``UNVERIFIED_FIELDS`` present
    and any the schema does not define (outermost only: ``tool``, not also ``tool.name``)."""
    known = schema_fields()
    found = {p for p in document_fields(doc) if p in UNVERIFIED_FIELDS or p not in known}
    return sorted(p for p in found
                  if not any(p.startswith(q + ".") or p.startswith(q + "[]") for q in found))


def _shrink_number_arrays(x):
    """A copy of ``x`` whose long lists of numbers are cut to one element, after checking
    here that every element is a number (what the schema's ``numbers`` asks): jsonschema
    would otherwise walk every input-set and output-bound entry one by one."""
    if isinstance(x, dict):
        return {k: _shrink_number_arrays(v) for k, v in x.items()}
    if isinstance(x, list):
        if len(x) > 16 and all(type(e) in (int, float) or e in ("inf", "-inf") for e in x):
            return x[:1]
        return [_shrink_number_arrays(e) for e in x]
    return x


def schema_errors(doc: dict) -> list[str]:
    import jsonschema

    v = jsonschema.Draft202012Validator(schema())
    doc = _shrink_number_arrays(doc)
    out = []
    for err in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message[:160]}")
    return out


def check(cert: str | os.PathLike | dict, model: str | os.PathLike, *,
          raise_on_invalid: bool = True, samples: int = 64) -> CheckResult:
    """Re-verify the certificate ``cert`` (path or parsed JSON) against ``model`` (path).

    Returns a truthy :class:`CheckResult` when every item holds. When one fails, raises
    :class:`CertificateInvalid` (whose ``result`` names it), or returns the falsy result with
    ``raise_on_invalid=False``. Unreadable files raise :class:`boundprop.BoundpropError`."""
    t0 = time.perf_counter()
    from boundprop.certify import read_certificate_json

    doc = read_certificate_json(cert)
    result = CheckResult(str(cert) if not isinstance(cert, dict) else "(certificate)",
                         str(model))
    result.unverified = unverified_fields(doc)
    try:
        _run(_Checker(result), doc, Path(model), samples)
    except _Failed:
        pass
    result.elapsed_s = time.perf_counter() - t0
    if isinstance(doc.get("elapsed_s"), (int, float)):
        result.prover_elapsed_s = float(doc["elapsed_s"])
    if not result.valid and raise_on_invalid:
        raise CertificateInvalid(result)
    return result


@dataclass
class _State:
    """What the items of one check share: the model, the set, the re-derived enclosures and
    the claimed named constants (name → exact value) with the names already verified."""

    doc: dict
    net: Any
    s: Any
    boxes: list | None
    claimed: dict[str, Any]
    covered: set[str] = field(default_factory=set)
    syms: list = field(default_factory=list)
    rules_local: list = field(default_factory=list)
    rules_op: list = field(default_factory=list)
    layer_hi: list = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)
    _enclosure: tuple | None = None

    def enclosure(self) -> tuple[float | None, str | None]:
        """The Jacobian enclosure's norm re-derived by the prover's code (computed once)."""
        if self._enclosure is None:
            from boundprop.constants import jacobian_enclosure_norm

            self._enclosure = jacobian_enclosure_norm(self.net, self.boxes, self.doc["norm"])
        return self._enclosure


def _run(ck: _Checker, doc: dict, model: Path, samples: int) -> None:
    from boundprop.exact import as_number

    errs = schema_errors(doc)
    ck.item("schema", not errs, "independent",
            "follows boundprop.certificate/1" if not errs else
            f"{len(errs)} schema error(s), first: {errs[0]}")
    _check_header(ck, doc)
    net = _load_model(ck, doc, model)
    st = _check_enclosures(ck, doc, net, model, samples)
    st.claimed = {k: as_number(v) for k, v in
                  ((doc.get("symbolic") or {}).get("values") or {}).items()}
    _check_named_constants(ck, st)
    _check_compositions(ck, st)
    _check_globals(ck, st)
    unknown = sorted(set(st.claimed) - st.covered)
    ck.item("constants covered", not unknown, "independent",
            f"all {len(st.claimed)} named constants checked" if not unknown else
            f"constant {unknown[0]} is claimed but no node of the model defines it")
    if doc.get("objective") is not None:
        _check_objective(ck, doc, net)


def _check_header(ck: _Checker, doc: dict) -> None:
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


def _load_model(ck: _Checker, doc: dict, model: Path):
    """The model, after its hash, shapes and node list (names, ops) match the certificate."""
    import boundprop as bp
    from boundprop.importer import model_digest

    # Size is the importer's memory guard's business; here: a regular file (a FIFO hangs).
    check_input_file(model, "model file", 2**62, "give the .onnx file the certificate is about")
    digest = model_digest(model)  # covers external data files too
    ck.item("model sha256", digest == doc["model"]["sha256"], "independent",
            f"{digest[:16]}… matches" if digest == doc["model"]["sha256"] else
            f"the model's sha256 is {digest[:16]}…, the certificate's "
            f"{doc['model']['sha256'][:16]}…: a different model")
    m = doc["model"]
    net = bp.load(model, input_shape=tuple(m["input_shape"]) or None, input_name=m["input"],
                  output_name=m["output"])
    ck.item("model shapes", list(net.input_shape) == m["input_shape"]
            and list(net.output_shape) == m["output_shape"], "independent",
            f"input {m['input_shape']}, output {m['output_shape']}")
    layers = doc["layers"]
    want = [(n.name, "input", "input") if i == 0 else (n.name, n.op.kind, n.op.family)
            for i, n in enumerate(net.nodes)]
    got = [(lc["node"], lc["op"], lc.get("family", w[2])) for lc, w in zip(layers, want)]
    bad = next((k for k, (g, w) in enumerate(zip(got, want)) if g != w), None)
    ck.item("layers", len(layers) == len(want) and bad is None, "independent",
            f"{len(want)} nodes (names, ops, families)" if bad is None and
            len(layers) == len(want) else
            f"the certificate lists {len(layers)} layers, the model has {len(want)} nodes"
            if bad is None else
            f"layer {bad} is claimed as {got[bad]} but the model's node is {want[bad]}")
    shape = (doc["input_set"] or {}).get("shape")
    if shape is not None:
        ck.item("input set shape", shape == list(net.input_shape), "independent",
                f"the set's shape {shape}, the model's input {list(net.input_shape)}")
    return net


def _check_enclosures(ck: _Checker, doc: dict, net, model: Path, samples: int) -> _State:
    """Re-propagate the set: output bounds (float32 execution: with float32 rounding, and
    samples through onnxruntime in float32 with no tolerance), layer interval widths."""
    import numpy as np

    import boundprop as bp
    from boundprop.sets import input_set_from_json

    wrt, method, rho = doc["wrt"], doc["method"], doc.get("param_radius")
    s = None
    if doc["input_set"] is not None:
        s = input_set_from_json(doc["input_set"], net.input_shape)
    if wrt == "params" and s is None:
        ck.item("input set", False, "independent", "constants w.r.t. the parameters need data")
    if wrt == "params":
        ck.item("parameter radius", isinstance(rho, (int, float)) and rho >= 0, "independent",
                f"ρ = {rho}")
    st = _State(doc, net, s, None, {})
    if s is None:
        _check_global_widths(ck, doc)
        return st
    if wrt == "params":
        from boundprop.constants import param_ball_intervals

        st.boxes = param_ball_intervals(net, s, float(rho))
    else:
        st.boxes = bp.output_bounds(net, s, method=method).layers
    float32 = doc.get("execution", "real") == "float32"
    out_box = st.boxes[net.output] if not float32 else \
        bp.output_bounds(net, s, method, "float32").layers[net.output]
    lo_c, hi_c = _check_output_bounds(ck, doc, out_box, method, float32)
    if samples and wrt == "input":
        xs = np.concatenate([0.5 * (s.lower + s.upper)[None],
                             s.sample(samples, np.random.default_rng(0))])
        if float32:
            ys, tol, what = _run_onnxruntime(doc, model, net, xs), 0.0, "onnxruntime float32"
        else:
            ys = net(xs).reshape(len(xs), -1)
            tol, what = 1e-9 * (1.0 + np.abs(ys)), "evaluated"
        out = np.flatnonzero(np.any((ys < lo_c - tol) | (ys > hi_c + tol), axis=1))
        ck.item("output samples", out.size == 0, "independent",
                f"{len(xs)} points of the set ({what}) inside the bounds" if out.size == 0
                else f"sample {out[0]} of the set has an output ({what}) outside the claimed "
                "bounds")
    _check_widths(ck, doc, st.boxes)
    return st


def _run_onnxruntime(doc: dict, model: Path, net, xs):
    """The model's outputs at the points ``xs`` as onnxruntime computes them (float32 inputs),
    flattened per point; a one-line error if onnxruntime cannot run it."""
    from boundprop.errors import BoundpropError
    from boundprop.runtime import OrtModel

    m = doc["model"]
    try:
        ort = OrtModel(model, m["input"], m["output"], tuple(net.input_shape), threads=1)
        return ort(xs).reshape(len(xs), -1)
    except Exception as e:  # onnxruntime raises its own kinds
        raise BoundpropError(f"onnxruntime cannot run {model} to check the float32 execution "
                             f"claim ({type(e).__name__}: {str(e)[:120]})") from None


def _check_output_bounds(ck: _Checker, doc: dict, box, method: str, float32: bool):
    import numpy as np

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


def _check_widths(ck: _Checker, doc: dict, boxes) -> None:
    import numpy as np

    from boundprop.exact import as_number

    for k, (lc, (lo, hi)) in enumerate(zip(doc["layers"], boxes)):
        w = lc.get("interval_width")
        if w is None:
            continue
        width = float(np.max(hi - lo, initial=0.0))
        if not as_number(w) >= (Fraction(width) if math.isfinite(width) else math.inf):
            ck.item(f"layer {k} ({lc['node']}) interval width", False, "recomputed",
                    f"claimed {w}, re-propagated {width:.17g}")


def _check_global_widths(ck: _Checker, doc: dict) -> None:
    """Without a set there are no enclosures: a finite interval width is an unchecked claim."""
    from boundprop.exact import as_number

    for k, lc in enumerate(doc["layers"]):
        w = lc.get("interval_width")
        if w is not None and as_number(w) != math.inf:
            ck.item(f"layer {k} ({lc['node']}) interval width", False, "recomputed",
                    f"claimed {w} without an input set (over all inputs it is unbounded)")


def _claim_at_least(ck: _Checker, st: _State, name: str, true_upper, how: str,
                    what: str) -> None:
    c = st.claimed.get(name, Fraction(0))
    ok = c >= true_upper
    st.covered.add(name)
    ck.item(f"constant {name}", ok, how,
            f"{what}: claimed {_show(c)} ≥ {_show(true_upper)}" if ok else
            f"{what}: claimed {_show(c)} is below {_show(true_upper)}")


def _check_input_constants(ck: _Checker, st: _State) -> None:
    """R, and the input node's own ℓ (1, or 0 w.r.t. the parameters), L = 0, B ≥ R, in
    ``symbolic.values`` and in ``layers[0]`` (op constants: the identity's 1 and 0)."""
    from boundprop.constants import node_symbols
    from boundprop.exact import as_number

    doc, s, claimed = st.doc, st.s, st.claimed
    norm = doc["norm"]
    r_true = math.inf if s is None else _input_radius_upper(s, norm)
    if "R" in claimed or s is not None:
        _claim_at_least(ck, st, "R", r_true, "independent",
                        "input radius (global: unbounded)" if s is None else
                        f"sup ‖x‖_{norm} over the set")
    st.syms = node_symbols(st.net)
    l0, L0, B0 = (str(x) for x in st.syms[0])
    l_in = 0 if doc["wrt"] == "params" else 1
    for name, v in {l0: l_in, L0: 0}.items():
        st.covered.add(name)
        ck.item(f"constant {name}", claimed.get(name, Fraction(0)) == v, "exact",
                f"the input's own constant is {v}")
    st.covered.add(B0)
    ck.item(f"constant {B0}", claimed.get(B0, Fraction(0)) >= claimed.get("R", math.inf),
            "exact", "B of the input is R")
    lc = doc["layers"][0]
    need = {"lipschitz": l_in, "smoothness": 0, "bound": r_true, "op_lipschitz": 1,
            "op_smoothness": 0}
    for which, v in need.items():
        c = lc.get(which)
        if c is not None or which in ("lipschitz", "smoothness", "bound"):
            ok = c is not None and as_number(c) >= v
            ck.item(f"layer 0 ({lc['node']}) {which}", ok, "independent",
                    f"claimed {c} ≥ {_show(v)}" if ok else f"claimed {c} is below {_show(v)}")


def _check_named_constants(ck: _Checker, st: _State) -> None:
    """Every node's named constants re-derived by its op's rule on the re-propagated
    enclosures (operator norms independently); the node's formulas are the rule's."""
    import sympy as sp

    from boundprop.ops.rules import RuleContext, node_tags, parametrized_affine_rule

    _check_input_constants(ck, st)
    net, doc, claimed, syms, boxes = st.net, st.doc, st.claimed, st.syms, st.boxes
    norm, wrt, rho = doc["norm"], doc["wrt"], doc.get("param_radius")
    tags = node_tags([n.name for n in net.nodes])
    radius = sp.Symbol("R", nonnegative=True)
    st.rules_local = [(sp.Integer(0 if wrt == "params" else 1), sp.Integer(0), radius)]
    st.rules_op = [(sp.Integer(1), sp.Integer(0))]
    for i, node in enumerate(net.nodes[1:], start=1):
        t, op = tags[i], node.op
        a_name = f"A_{t}"
        if a_name in claimed and hasattr(op, "operator_norm_upper"):
            p = "2" if wrt == "params" else norm
            how, what = _check_operator_norm(op, p, claimed[a_name])
            if how == "independent":
                st.covered.add(a_name)
                ck.item(f"constant {a_name}", True, how, what)
                # Verified: let the op's rule below use the claim instead of recomputing it.
                op.__dict__.setdefault("_norm_cache", {})[p] = float(claimed[a_name])
        bbox = f"Bbox_{t}"
        if boxes is not None and bbox in claimed:
            _claim_at_least(ck, st, bbox, _box_norm_upper(boxes[i], norm), "independent",
                            f"sup ‖·‖_{norm} of node {node.name}'s enclosure")
        ctx = RuleContext(norm, t, None if boxes is None else
                          [(boxes[j][0][None], boxes[j][1][None]) for j in node.inputs],
                          [syms[j][0] for j in node.inputs], [syms[j][1] for j in node.inputs],
                          [syms[j][2] for j in node.inputs])
        if wrt == "params" and hasattr(op, "param_structure"):
            c_bil, copies = op.param_structure()
            rule = parametrized_affine_rule(ctx, op.operator_norm_upper("2"), c_bil, copies,
                                            float(rho), op.offset_norm_upper("2"))
        else:
            rule = op.constants_rule(ctx)
        renames = _check_rule_constants(ck, st, ctx, t, a_name, node.name)
        lip_e, smooth_e, bound_e, oplip_e, opsmooth_e = (
            e.xreplace(renames) for e in (rule.lipschitz, rule.smoothness, rule.bound,
                                          rule.op_lipschitz, rule.op_smoothness))
        if bbox in claimed and claimed[bbox] != math.inf:
            bound_e = sp.Min(bound_e, sp.Symbol(bbox, nonnegative=True))
        triple = (lip_e, smooth_e, bound_e)
        st.rules_local.append(triple)
        st.rules_op.append((oplip_e, opsmooth_e))
        stored = doc["layers"][i].get("symbolic") or {}
        for which, e in zip(("lipschitz", "smoothness", "bound"), triple):
            if stored.get(which) != str(e):
                ck.item(f"layer {i} ({node.name}) {which} formula", False, "recomputed",
                        f"the certificate's formula {str(stored.get(which))[:60]} is not the "
                        f"op's rule {str(e)[:60]}")


def _check_rule_constants(ck: _Checker, st: _State, ctx, t: str, a_name: str,
                          node_name: str) -> dict:
    """The rule's named constants against the claimed ones; the renames of shared names the
    prover made per node."""
    import sympy as sp

    from boundprop.exact import as_number

    renames = {}
    for s_, v in ctx.values.items():
        name = str(s_)
        if not name.endswith(f"_{t}") and f"{name}_{t}" in st.claimed:
            name = f"{name}_{t}"  # a shared name the prover made per-node
            renames[s_] = sp.Symbol(name, nonnegative=True)
        if name in st.covered and name == a_name:
            continue
        stem = name[: -len(t) - 1] if name.endswith(f"_{t}") else name
        if stem in LOWER_BOUND_STEMS or name in LOWER_BOUND_STEMS:
            c = st.claimed.get(name, Fraction(0))
            st.covered.add(name)
            ck.item(f"constant {name}", c <= Fraction(v), "recomputed",
                    f"{ctx.meaning[s_]} of node {node_name}: claimed {_show(c)}"
                    f" {'≤' if c <= Fraction(v) else 'exceeds'} {v!r}")
        else:
            _claim_at_least(ck, st, name, as_number(v), "recomputed",
                            f"{ctx.meaning[s_]} of node {node_name}")
    return renames


def _check_compositions(ck: _Checker, st: _State) -> None:
    """Every layer's ℓ, L, B (and op constants) ≥ its formula evaluated exactly at the claimed,
    already verified values of its inputs; node symbols in ``symbolic.values`` too."""
    from boundprop.exact import FormulaError, as_number, enclose

    layers = st.doc["layers"]
    st.values = dict(st.claimed)
    for k, lc in enumerate(layers):
        for which, sy in zip(("lipschitz", "smoothness", "bound"), st.syms[k]):
            st.values[str(sy)] = as_number(lc[which])
    st.layer_hi = [{}]
    for k in range(1, len(layers)):
        lc, his = layers[k], {}
        checks = list(zip(("lipschitz", "smoothness", "bound"), st.rules_local[k], st.syms[k]))
        checks += [(w, e, None) for w, e in zip(("op_lipschitz", "op_smoothness"),
                                                 st.rules_op[k])]
        for which, expr, sy in checks:
            try:
                hi = enclose(expr, st.values)[1]
            except FormulaError as e:
                ck.item(f"layer {k} ({lc['node']}) {which}", False, "exact", str(e))
            his[which] = hi
            claims = [("", lc.get(which))] + ([] if sy is None or str(sy) not in st.claimed
                                               else [(f" (symbolic.values.{sy})",
                                                      st.claimed[str(sy)])])
            for where, c in claims:
                if c is None and sy is None:
                    continue  # no op constant claimed
                c = as_number(c) if not isinstance(c, Fraction) and c != math.inf else c
                if not c >= hi:
                    ck.item(f"layer {k} ({lc['node']}) {which}{where}", False, "exact",
                            f"claimed {_show(c)} but its formula {str(expr)[:60]} gives up "
                            f"to {_show(hi)}")
        st.layer_hi.append(his)
        st.covered.update(str(x) for x in st.syms[k])
    ck.item("layer compositions", True, "exact",
            f"{5 * (len(layers) - 1)} formulas re-evaluated in rational arithmetic")


def _check_upper_of_lipschitz(ck: _Checker, st: _State, name: str, claim, product) -> None:
    """A claimed bound on ℓ (the global ℓ, the enclosure method's, ``Jenc``): ≥ the verified
    layer product, or else ≥ the Jacobian enclosure re-derived here."""
    if claim >= product:
        ck.item(name, True, "exact", f"claimed {_show(claim)} ≥ the layer product "
                f"{_show(product)}")
        return
    if st.doc["wrt"] == "params":  # the Jacobian enclosure is w.r.t. the input
        ck.item(name, False, "exact", f"claimed {_show(claim)} is below the layer product "
                f"{_show(product)} (w.r.t. the parameters there is no enclosure method)")
    enc, note = st.enclosure()
    ok = enc is not None and claim >= Fraction(enc)
    ck.item(name, ok, "recomputed",
            f"claimed {_show(claim)} ≥ re-derived Jacobian enclosure {enc!r}" if ok else
            f"claimed {_show(claim)} is below the layer product {_show(product)} and the "
            f"re-derived Jacobian enclosure {enc if enc is not None else note}")


def _check_globals(ck: _Checker, st: _State) -> None:
    """Global ℓ, L, B against the output node's; ``lipschitz_product`` against the exact
    layer product; ``lipschitz_enclosure`` and ``Jenc`` against the product or the re-derived
    enclosure; the global formulas (and their ``*_free`` forms) against the composed rules."""
    from boundprop.exact import as_number

    doc, net = st.doc, st.net
    out = doc["layers"][net.output]
    for which in ("smoothness", "bound"):
        c = as_number(doc[which])
        ck.item(f"global {which}", c >= as_number(out[which]), "exact",
                f"claimed {_show(c)}, output node's {_show(as_number(out[which]))}")
    product = as_number(out["lipschitz"])
    exact_product = st.layer_hi[net.output].get("lipschitz", product) if net.output else product
    _check_upper_of_lipschitz(ck, st, "global lipschitz", as_number(doc["lipschitz"]), product)
    if doc.get("lipschitz_product") is not None:
        c = as_number(doc["lipschitz_product"])
        ck.item("lipschitz_product", c >= exact_product, "exact",
                f"claimed {_show(c)} {'≥' if c >= exact_product else 'is below'} the layer "
                f"product {_show(exact_product)} (exact)")
    if doc.get("lipschitz_enclosure") is not None:
        _check_upper_of_lipschitz(ck, st, "lipschitz_enclosure",
                                  as_number(doc["lipschitz_enclosure"]), product)
    if "Jenc" in st.claimed:
        st.covered.add("Jenc")
        _check_upper_of_lipschitz(ck, st, "constant Jenc", st.claimed["Jenc"], product)
    _check_global_formulas(ck, st)


def _check_global_formulas(ck: _Checker, st: _State) -> None:
    import sympy as sp

    from boundprop.constants import _global_formulas
    from boundprop.exact import FormulaError, as_number, enclose

    doc, net = st.doc, st.net
    sym = doc.get("symbolic") or {}
    full = _global_formulas(net, st.syms, st.rules_local)[net.output]
    if "Jenc" in st.claimed:
        full = (sp.Min(full[0], sp.Symbol("Jenc", nonnegative=True)), *full[1:])
    free = doc.get("free") or []
    names = {str(x) for e in full for x in e.free_symbols}
    missing = [f for f in free if f not in names]
    ck.item("free constants", not missing, "exact",
            f"{len(free)} free constant(s) of the formulas" if not missing else
            f"'{missing[0]}' is listed as free but no global formula uses it")
    for which, expr in zip(("lipschitz", "smoothness", "bound"), full):
        text = sym.get(which)
        if text is None:
            if sym.get(f"{which}_free") is not None:
                ck.item(f"global {which} formula", False, "exact",
                        f"{which}_free without the {which} formula")
            continue
        if text != str(expr):
            ck.item(f"global {which} formula", False, "recomputed",
                    f"the certificate's formula {text[:60]} is not the composition of the "
                    f"ops' rules {str(expr)[:60]}")
        try:
            hi = enclose(expr, st.values)[1]
        except FormulaError as e:
            ck.item(f"global {which} formula", False, "exact", str(e))
        c = as_number(doc[which])
        ck.item(f"global {which} formula", c >= hi, "exact",
                f"the formula gives ≤ {_show(hi)}" if c >= hi else
                f"claimed {_show(c)} but the formula gives up to {_show(hi)}")
        if f"{which}_free" in sym:
            _check_free_formula(ck, st, which, expr, free)


def _check_free_formula(ck: _Checker, st: _State, which: str, expr, free) -> None:
    """``symbolic.<which>_free``: the verified formula with every named constant except the
    free ones replaced by its claimed (verified) value, as the prover prints it."""
    import sympy as sp

    subs = {sp.Symbol(k, nonnegative=True): sp.oo if v == math.inf else sp.Float(float(v), 17)
            for k, v in st.claimed.items() if k not in free}
    want = str(expr.xreplace(subs))
    text = st.doc["symbolic"][f"{which}_free"]
    ck.item(f"global {which}_free formula", text == want, "exact",
            f"the verified formula at the verified values, {len(free)} constant(s) free"
            if text == want else
            f"the certificate's {text[:60]} is not the verified formula at the claimed values "
            f"{want[:60]}")


def _check_objective(ck: _Checker, doc: dict, net) -> None:
    import numpy as np

    from boundprop.exact import as_number

    o = doc["objective"]
    n_lip, n_smooth = as_number(doc["lipschitz"]), as_number(doc["smoothness"])
    lf, Lf = as_number(o["loss_lipschitz"]), as_number(o["loss_smoothness"])
    lo = np.asarray(doc["output_bounds"]["lower"])
    hi = np.asarray(doc["output_bounds"]["upper"])
    shape = tuple(doc["model"]["output_shape"])
    n = shape[0] if len(shape) > 1 else 1
    div = Fraction(n) if o["reduction"] == "mean" else Fraction(1)
    if o["loss"] == "squared":
        t = o.get("targets")
        if t is None or len(t) != lo.size:
            ck.item("objective loss constants", False, "independent",
                    "squared loss without targets of the output's size")
        t = np.asarray(t, dtype=np.float64)
        dev = np.maximum(np.abs(hi - t), np.abs(lo - t))
        need_l = _vector_norm_upper(dev * (1 + 2.0**-52), "2") / div
        need_L = Fraction(1) / div
    else:
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        from boundprop.exact import _isqrt_bounds

        need_l = _isqrt_bounds(Fraction(2 * rows))[1] / div
        need_L = Fraction(1, 2) / div
    ck.item("objective loss constants", lf >= need_l and Lf >= need_L, "independent",
            f"ℓ_f {_show(lf)} ≥ {_show(need_l)}, L_f {_show(Lf)} ≥ {_show(need_L)}")
    lip_f, smooth_f = as_number(o["lipschitz"]), as_number(o["smoothness"])
    need_smooth = n_smooth * lf + n_lip * n_lip * Lf if n_smooth != math.inf else math.inf
    ck.item("objective constants", lip_f >= lf * n_lip and smooth_f >= need_smooth, "exact",
            "ℓ_F ≥ ℓ_f ℓ and L_F ≥ L ℓ_f + ℓ² L_f")
    step = as_number(o["step_size"])
    ok = (step == 0) or (smooth_f == 0) or (smooth_f != math.inf and step != math.inf
                                            and step * smooth_f <= 1)
    ck.item("objective step size", ok, "exact", f"step {_show(step)} ≤ 1/L_F = 1/{_show(smooth_f)}")


def _check_operator_norm(op, norm: str, claim) -> tuple[str, str]:
    """('independent', detail) if the claim is shown ≥ ‖A‖_p here, else ('', why not)."""
    if claim == math.inf:
        return "independent", "no finite claim"
    got = _operator_matrix(op, norm)
    if got is None:
        return "", "too large to materialise"
    a, rel, what = got
    if norm == "2":
        if spectral_bound_holds(a, float(claim), rel):
            return "independent", (f"‖A‖₂ ≤ {float(claim):.17g}: u²I − AᵀA ≻ 0 by a Cholesky "
                                   f"certificate on {what}")
        return "", "Cholesky certificate failed (claim too tight or too low)"
    top = _row_sum_norm(a, norm) * (1 + Fraction(rel))
    if claim >= top:
        return "independent", f"max {'row' if norm == 'inf' else 'column'} sum of |A| of {what}"
    return "", "row/column sum exceeds the claim"


def _input_radius_upper(s, norm: str):
    """sup ‖x‖_p over the set, rounded up here (not with the prover's helper)."""
    import numpy as np

    from boundprop.sets import L2Ball

    if isinstance(s, L2Ball) and norm == "2":
        return _vector_norm_upper(s.center, "2") + Fraction(s.radius)
    mag = np.maximum(np.abs(s.lower), np.abs(s.upper))
    return _vector_norm_upper(mag, norm)


def _box_norm_upper(box, norm: str):
    import numpy as np

    lo, hi = box
    return _vector_norm_upper(np.maximum(np.abs(lo), np.abs(hi)), norm)


def _show(x) -> str:
    return "inf" if x == math.inf else f"{float(x):.17g}"


# ---------------------------------------------------------------------------------------------
# CLI


def register(sub) -> None:
    p = sub.add_parser(
        "check", help="re-verify a certificate against a model (exit 0 valid, 1 invalid)",
        description="Independent re-verification of a certificate: model hash, schema, "
        "re-propagated enclosures, every named constant re-derived (operator norms by a "
        "Cholesky certificate), every composition in exact rational arithmetic. Exit 0: "
        "valid; 1: invalid (the first failing item is printed); 2: unreadable input.",
        epilog="examples:\n  boundprop certify models/mlp_tanh.onnx -o cert.json\n"
        "  boundprop check cert.json models/mlp_tanh.onnx\n"
        "  boundprop check cert.json models/mlp_tanh.onnx --json --verbose",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("certificate", help="certificate JSON written by boundprop certify -o")
    p.add_argument("model", help="the ONNX model it is about")
    p.add_argument("--verbose", "-v", action="store_true", help="print every checked item")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    result = check(args.certificate, args.model, raise_on_invalid=False)
    if args.json:
        print(json.dumps(result.to_json()))
    elif not args.quiet:
        if args.verbose:
            for it in result.items:
                print(f"  {'ok ' if it.ok else 'BAD'} [{it.how:<11}] {it.name}: {it.detail}")
        counts = result.to_json()["checked"]
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        ratio = "" if not result.prover_elapsed_s else \
            f"; {result.elapsed_s / result.prover_elapsed_s:.2f}× the prover's time"
        if result.valid:
            print(f"{args.certificate}: valid for {args.model} ({len(result.items)} items: "
                  f"{summary}; {result.elapsed_s:.2f} s{ratio})")
            if result.unverified:
                print(f"  not verified (informational): {', '.join(result.unverified)}")
        else:
            print(f"{args.certificate}: INVALID for {args.model}: {result.reason}")
    return 0 if result.valid else 1
