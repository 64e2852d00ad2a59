"""The checker's trusted kernel: the arithmetic and file checks that do not use prover code.

Everything an ``independent`` item of :func:`boundprop.checker.check` concludes rests on this
module, on the standard library, numpy, scipy (a Cholesky factorisation), jsonschema (the
schema validator; a third-party library, not boundprop code) and :mod:`boundprop.exact`
(exact rational interval evaluation of formulas). Nothing else: ``tests/test_checker_kernel.py``
parses this file's imports and fails on any other. The schema itself (its location, loading)
is passed in by the caller from :mod:`boundprop.certificate`.

Contents:

- rounding-error bounds: γ_n = n u/(1 − n u) with u = 2⁻⁵³, exactly as a Fraction;
- ‖A‖₂ ≤ u by a Cholesky certificate of u²I − AᵀA (:func:`spectral_bound_holds`);
- M ≻ 0 for every M near a float matrix (:func:`psd_holds`), and the LipSDP-Neuron
  certificate of a global ℓ2 Lipschitz bound of an MLP chain (:func:`neuron_lmi_holds`);
- ‖A‖_∞ / ‖A‖_1 as max row / column sums of |A|, rounded up;
- ‖v‖_p of a vector rounded up (input radius R, enclosure norms B̄ = sup ‖x‖_p over a box);
- JSON Schema validation of a certificate document;
- the model file's sha256, external data included, with this module's own protobuf reader.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from boundprop.exact import _isqrt_bounds

UNIT_ROUNDOFF = Fraction(1, 2**53)
UNIT = 2.0**-53


def gamma(n: int) -> Fraction:
    """γ_n = n u / (1 − n u), u = 2⁻⁵³, exactly (Higham's bound on n roundings)."""
    nu = n * UNIT_ROUNDOFF
    return nu / (1 - nu)


def sum_upper(values, n: int) -> Fraction | float:
    """Upper bound of the exact sum of n nonnegative floats from their float sum:
    fl(Σ) (1 + γ_{n+1}); ∞ when the float sum overflows."""
    s = float(np.sum(values))
    return Fraction(s) * (1 + gamma(n + 1)) if math.isfinite(s) else math.inf


def show(x) -> str:
    """A number for a check item's detail: 17 significant digits, or ``inf``."""
    return "inf" if x == math.inf else f"{float(x):.17g}"


# ---------------------------------------------------------------------------------------------
# Operator norms


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
    import scipy.linalg  # lazy: scipy is heavy and only operator-norm items need it

    a = np.asarray(a, dtype=np.float64)
    if not (u >= 0 and math.isfinite(u)):
        return u == math.inf
    if a.size == 0 or not np.any(a):
        return True
    if a.shape[0] > a.shape[1]:
        a = a.T
    n, m = a.shape
    fro2 = sum_upper(a * a, a.size) * (1 + Fraction(1, 2**51))  # squares' rounding
    e = Fraction(entry_rel_error)
    g = a @ a.T
    gm = gamma(m) * fro2 + (2 * e + e * e) * fro2
    u2 = Fraction(u) ** 2
    gh = gamma(2 * n + 2)
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


def _float_below(x: Fraction) -> float:
    """The largest float ≤ x (x ≥ 0, within float range)."""
    f = float(x)
    return float(np.nextafter(f, -np.inf)) if Fraction(f) > x else f


def psd_holds(m: np.ndarray, f: np.ndarray) -> tuple[bool, str]:
    """True only if every symmetric real M with |M − m| ≤ f entrywise is positive definite,
    for the symmetric float matrix ``m`` and the nonnegative float matrix ``f``.

    Scaled by S = diag(2^k) (exact) to a diagonal near 1: M ≻ 0 iff SMS ≻ 0, and
    ‖S(M − m)S‖₂ ≤ ε = ‖SfS‖_F (rounded up). H = SmS − sI (diagonal rounded; s covers ε and
    the factorisation's rounding, doubled): a successful float Cholesky R̃ᵀR̃ = H + ΔH with
    |ΔH| ≤ γ_{n+1}|R̃ᵀ||R̃| (Demmel) and ‖R̃‖_F² ≤ tr H/(1 − γ) gives H ⪰ −d I with
    d = γ tr H/(1 − γ) (γ = γ_{2n+2}, generous). Then SMS = H + D + S(M − m)S with
    D = diag(SmS − H) evaluated exactly, so SMS ≻ 0 when min D > d + ε. Returns (holds, how
    or why not)."""
    import scipy.linalg  # lazy: scipy is heavy and only matrix items need it

    m, f = np.asarray(m, dtype=np.float64), np.asarray(f, dtype=np.float64)
    n = m.shape[0] if m.ndim == 2 else -1
    if m.shape != (n, n) or f.shape != m.shape or not np.all(np.isfinite(m)) \
            or not np.all(np.isfinite(f) & (f >= 0)):
        return False, "not a finite square matrix with an error bound"
    if not np.array_equal(m, m.T):
        return False, "not symmetric"
    if n == 0:
        return True, "empty"
    diag = np.diag(m)
    if not np.all(diag > 0):
        return False, "a diagonal entry is not positive"
    k = np.round(-0.5 * np.log2(diag))
    if np.any(np.abs(k) > 400):
        return False, "diagonal out of the scalable range"
    s = np.ldexp(1.0, k.astype(int))
    ms = m * s[:, None] * s[None, :]  # powers of two: exact
    if np.any((ms != 0) & (np.abs(ms) < 2.0**-900)):
        return False, "entries too small after scaling (underflow)"
    fs = f * s[:, None] * s[None, :] * (1 + 2.0**-50) + 2.0**-1000  # exact but for underflow
    with np.errstate(over="ignore"):
        eps2 = sum_upper(fs * fs, fs.size)
    if eps2 == math.inf:
        return False, "the error bound overflows"
    eps = _isqrt_bounds(eps2 * (1 + Fraction(1, 2**51)))[1]
    gh = gamma(2 * n + 2)
    diag_s = np.diag(ms)
    trace_est = Fraction(float(np.sum(diag_s))) * (1 + gamma(n + 1))
    shift = float(2 * (eps + gh * trace_est / (1 - gh)) + Fraction(1, 2**60))
    h = ms.copy()
    h[np.diag_indices(n)] = diag_s - shift
    try:
        scipy.linalg.cholesky(h, lower=False, check_finite=True)
    except (np.linalg.LinAlgError, ValueError):
        return False, "the shifted Cholesky factorisation failed (not shown positive definite)"
    diag_h = np.diag(h)
    trace_h = sum((Fraction(float(x)) for x in diag_h), Fraction(0))
    if trace_h <= 0:
        return False, "non-positive trace"
    d = gh * trace_h / (1 - gh)
    d_min = min(Fraction(float(a)) - Fraction(float(b)) for a, b in zip(diag_s, diag_h))
    tiny = Fraction(n, 2**1000)  # underflow in the factorisation
    if d_min > d + eps + tiny:
        return True, f"{n}×{n} matrix positive definite by a shifted Cholesky certificate"
    return False, "the rounding margin exceeds the shift"


def _abs_gram(w: np.ndarray, e: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(fl(Wᵀ diag(g) W), an entrywise bound on its distance to the exact Wᵀ diag(g) W for
    every W with |W − w| ≤ e): γ_{n+4}|w|ᵀ|g||w| + (2|w| + e)ᵀ|g| e (g exact floats, n the
    inner size), enlarged by 2⁻⁴⁰ for the rounding of the bound itself."""
    n = w.shape[0]
    gram = w.T @ (g[:, None] * w)
    gram = np.triu(gram) + np.triu(gram, 1).T  # each entry once: exactly symmetric
    aw, ag = np.abs(w), np.abs(g)[:, None]
    bound = float(gamma(n + 4)) * (aw.T @ (ag * aw))
    if np.any(e):
        bound = bound + (2 * aw + e).T @ (ag * e)
    return gram, bound * (1 + 2.0**-40)


def neuron_lmi_holds(weights: Sequence[tuple[np.ndarray, np.ndarray]],
                     slopes: Sequence[tuple[np.ndarray, np.ndarray]],
                     multipliers: Sequence[Any], u: float) -> tuple[bool, str]:
    """Whether the LipSDP-Neuron certificate shows ‖f(x) − f(x')‖₂ ≤ u‖x − x'‖₂ for the chain
    f = W_L σ_{L−1}(⋯ σ_1(W_1 x + b_1) ⋯) + b_L, where neuron i of layer l is slope-restricted
    in [α_li, β_li] (``slopes[l−1] = (α_l, β_l)``) and |W_l − w_l| ≤ e_l entrywise
    (``weights[l−1] = (w_l, e_l)``); ``multipliers[l−1] = t_l ≥ 0`` (l = 1 … L−1).

    Each neuron gives (Δz − αΔv)(βΔv − Δz) ≥ 0 (Δv = W_l Δz_{l−1}), so if the quadratic form
    ρ‖Δz_0‖² − ‖W_L Δz_{L−1}‖² − 2 Σ_l Σ_i t_li (Δz_li − α_iΔv_li)(β_iΔv_li − Δz_li) is
    positive semidefinite in (Δz_0, …, Δz_{L−1}), then ‖Δy‖² ≤ ρ‖Δx‖². Its matrix M: block
    (0,0) ρI with ρ a float ≤ u²; block (l,l) += 2 diag(t_l); block (l,l−1) = −diag((α+β)t_l)W_l;
    block (l−1,l−1) += 2 W_lᵀ diag(αβ t_l) W_l; block (L−1,L−1) −= W_LᵀW_L. Assembled in float
    with an entrywise bound F on the assembly error (the products, the weights' e_l, the sums);
    M ≻ 0 for every matrix within F by :func:`psd_holds`."""
    L = len(weights)
    if L < 2 or len(slopes) != L - 1 or len(multipliers) != L - 1:
        return False, "the multipliers do not match the chain"
    sizes = [weights[0][0].shape[1]] + [w.shape[0] for w, _ in weights[:-1]]
    for (w, _), n_in in zip(weights, sizes):
        if w.shape[1] != n_in:
            return False, "the weights do not chain"
    ts = [np.asarray(t, dtype=np.float64).reshape(-1) for t in multipliers]
    if any(t.shape != (n,) for t, n in zip(ts, sizes[1:])):
        return False, "a multiplier vector has the wrong length"
    if any(not np.all(np.isfinite(t) & (t >= 0)) for t in ts):
        return False, "a multiplier is negative or not finite"
    if not (math.isfinite(u) and u > 0) or Fraction(u) ** 2 > Fraction(2.0**1000):
        return False, "u is not a positive finite number"
    off = np.concatenate([[0], np.cumsum(sizes)])
    big = np.zeros((off[-1], off[-1]))
    fb, mag = np.zeros_like(big), np.zeros_like(big)
    blk = [slice(off[i], off[i + 1]) for i in range(L)]
    big[blk[0], blk[0]] = np.eye(sizes[0]) * _float_below(Fraction(u) ** 2)
    mag[blk[0], blk[0]] = big[blk[0], blk[0]]
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(1, L):
            w, e = weights[i - 1]
            a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in slopes[i - 1])
            t = ts[i - 1]
            big[blk[i], blk[i]] += np.diag(2 * t)
            mag[blk[i], blk[i]] += np.diag(2 * t)
            c = (a + b) * t
            big[blk[i], blk[i - 1]] = -c[:, None] * w
            big[blk[i - 1], blk[i]] = big[blk[i], blk[i - 1]].T
            fb[blk[i], blk[i - 1]] = np.abs(c)[:, None] * (4 * UNIT * np.abs(w) + 2 * e)
            fb[blk[i - 1], blk[i]] = fb[blk[i], blk[i - 1]].T
            g = 2 * a * b * t
            if np.any(g):
                gram, bound = _abs_gram(w, e, g)
                big[blk[i - 1], blk[i - 1]] += gram
                mag[blk[i - 1], blk[i - 1]] += np.abs(gram)
                fb[blk[i - 1], blk[i - 1]] += bound
        gram, bound = _abs_gram(*weights[-1], np.ones(weights[-1][0].shape[0]))
        big[blk[-1], blk[-1]] -= gram
        mag[blk[-1], blk[-1]] += np.abs(gram)
        fb[blk[-1], blk[-1]] += bound
        fb += 4 * UNIT * mag  # the sums of blocks on the diagonal
    if not (np.all(np.isfinite(big)) and np.all(np.isfinite(fb))):
        return False, "overflow in the assembly"
    ok, how = psd_holds(big, fb)
    return ok, f"LipSDP-Neuron matrix: {how}"


def row_sum_norm(a, norm: str) -> Fraction | float:
    """‖a‖_∞ (max row sum of |a|) or ‖a‖_1 (max column sum), rounded up by γ_{n+1}."""
    mag = np.abs(np.asarray(a, dtype=np.float64))
    sums = mag.sum(axis=1 if norm == "inf" else 0)
    n = mag.shape[1 if norm == "inf" else 0]
    top = float(np.max(sums)) if sums.size else 0.0
    return Fraction(top) * (1 + gamma(n + 1)) if math.isfinite(top) else math.inf


def operator_norm_holds(a, entry_rel_error: float, norm: str, claim) -> tuple[bool, str]:
    """Whether the claimed ‖A‖_p ≤ ``claim`` is shown for the matrix ``a`` (entries within
    relative error ``entry_rel_error`` of A): by a Cholesky certificate for p = 2, by the
    rounded-up max row/column sum of |a| (1 + e) for p = ∞/1. Returns (shown, how/why not)."""
    if norm == "2":
        if spectral_bound_holds(a, float(claim), entry_rel_error):
            return True, f"‖A‖₂ ≤ {float(claim):.17g}: u²I − AᵀA ≻ 0 by a Cholesky certificate"
        return False, "Cholesky certificate failed (claim too tight or too low)"
    top = row_sum_norm(a, norm) * (1 + Fraction(entry_rel_error))
    if claim >= top:
        return True, f"max {'row' if norm == 'inf' else 'column'} sum of |A|"
    return False, "row/column sum exceeds the claim"


# ---------------------------------------------------------------------------------------------
# Vector norms: input radius, enclosure norms


def vector_norm_upper(v, norm: str) -> Fraction | float:
    """‖v‖_p (p = 2, inf, 1) rounded up: the float sum of |v_i| or v_i² enlarged by γ_{n+1}
    (squares by a further 2⁻⁵¹), the square root by exact integer bounds; ∞ if not finite."""
    mag = np.abs(np.asarray(v, dtype=np.float64)).reshape(-1)
    if mag.size == 0:
        return Fraction(0)
    if not np.all(np.isfinite(mag)):
        return math.inf
    if norm == "inf":
        return Fraction(float(mag.max()))
    if norm == "1":
        return sum_upper(mag, mag.size)
    with np.errstate(over="ignore"):  # squares beyond float range: the norm is unbounded here
        sq = sum_upper(mag * mag, mag.size)
    if sq == math.inf:
        return math.inf
    return _isqrt_bounds(sq * (1 + Fraction(1, 2**51)))[1]


def box_norm_upper(lower, upper, norm: str) -> Fraction | float:
    """sup ‖x‖_p over the box [lower, upper] = ‖max(|lower|, |upper|)‖_p, rounded up."""
    return vector_norm_upper(np.maximum(np.abs(lower), np.abs(upper)), norm)


def input_radius_upper(lower, upper, norm: str, l2_ball=None) -> Fraction | float:
    """R = sup ‖x‖_p over an input set with bounding box [lower, upper], rounded up; for an
    ℓ2 ball ``l2_ball = (center, radius)`` in the ℓ2 norm, ‖center‖₂ + radius."""
    if l2_ball is not None and norm == "2":
        center, radius = l2_ball
        return vector_norm_upper(center, "2") + Fraction(radius)
    return box_norm_upper(lower, upper, norm)


# ---------------------------------------------------------------------------------------------
# Schema


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


def schema_errors(doc: dict, schema: dict) -> list[str]:
    """Every violation of the JSON Schema ``schema`` (draft 2020-12) by ``doc``, one line
    each (``where: message``), in document order."""
    import jsonschema  # lazy: only certificate reading and checking validate

    v = jsonschema.Draft202012Validator(schema)
    doc = _shrink_number_arrays(doc)
    out = []
    for err in sorted(v.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        out.append(f"{where}: {err.message[:160]}")
    return out


# ---------------------------------------------------------------------------------------------
# Model digest (the same value as boundprop.importer.model_digest, computed without onnx)

# Field numbers of onnx.proto (ModelProto.graph, GraphProto.node/initializer, ...).
_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER = 1, 5
_NODE_ATTRIBUTE = 5
_ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, _ATTR_TYPE = 5, 6, 10, 11, 20
_ATTR_TENSOR, _ATTR_GRAPH, _ATTR_TENSORS_TYPE, _ATTR_GRAPHS_TYPE = 4, 5, 9, 10
_TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION, _EXTERNAL = 13, 14, 1
_ENTRY_KEY, _ENTRY_VALUE = 1, 2


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    """The base-128 varint at ``buf[i:]`` and the index after it."""
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        b = buf[i]
        value |= (b & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if b < 0x80:
            return value, i


def _fields(buf: memoryview) -> Iterator[tuple[int, Any]]:
    """(field number, value) of each field of a serialised protobuf message, in order:
    an int for varints, the bytes (a view) for length-delimited fields, None otherwise."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        value: Any = None
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            size, i = _varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError(f"wire type {wire}")
        if i > n:
            raise ValueError("truncated field")
        yield number, value


def _message(buf: memoryview) -> dict[int, list]:
    """Field number → its values in order. A singular message field given several times is
    the merge of its parts, which for protobuf is the message of their concatenation."""
    out: dict[int, list] = {}
    for number, value in _fields(buf):
        out.setdefault(number, []).append(value)
    return out


def _merged(parts: list) -> memoryview:
    return memoryview(b"".join(bytes(p) for p in parts))


def _external_locations(graph: memoryview) -> Iterator[str]:
    """The ``location`` of every tensor with external data in a GraphProto: initializers,
    Constant-style tensor attributes and subgraphs (what the importer's _all_tensors walks)."""
    g = _message(graph)
    tensors = list(g.get(_GRAPH_INITIALIZER, []))
    subgraphs = []
    for node in g.get(_GRAPH_NODE, []):
        for attr in _message(node).get(_NODE_ATTRIBUTE, []):
            a = _message(attr)
            kind = a.get(_ATTR_TYPE, [0])[-1]
            if kind == _ATTR_TENSOR and _ATTR_T in a:
                tensors.append(_merged(a[_ATTR_T]))
            elif kind == _ATTR_TENSORS_TYPE:
                tensors += a.get(_ATTR_TENSORS, [])
            elif kind == _ATTR_GRAPH and _ATTR_G in a:
                subgraphs.append(_merged(a[_ATTR_G]))
            elif kind == _ATTR_GRAPHS_TYPE:
                subgraphs += a.get(_ATTR_GRAPHS, [])
    for t in tensors:
        f = _message(t)
        if f.get(_TENSOR_DATA_LOCATION, [0])[-1] != _EXTERNAL:
            continue
        for entry in f.get(_TENSOR_EXTERNAL_DATA, []):
            e = _message(entry)
            key = bytes(e.get(_ENTRY_KEY, [b""])[-1]).decode("utf-8", "replace")
            if key == "location":
                yield bytes(e.get(_ENTRY_VALUE, [b""])[-1]).decode("utf-8", "replace")
    for sub in subgraphs:
        yield from _external_locations(sub)


def model_digest(path: str | Path) -> str:
    """The model's sha256 as the prover records it (``boundprop.importer.model_digest``):
    of the .onnx file's bytes, or — when tensors keep their data in external files — of
    ``"boundprop-model/1"``, the .onnx file's sha256 and, for each external file in name
    order, its name and sha256. The external files are found by reading the protobuf here; a
    file that does not parse as one is digested as plain bytes (it then matches no model)."""
    path = Path(path)
    data = path.read_bytes()
    locations: list[str] = []
    if b"location" in data:
        try:
            model = _message(memoryview(data))
            graph = _merged(model.get(_MODEL_GRAPH, []))
            locations = sorted(set(_external_locations(graph)))
        except ValueError:
            locations = []
    if not locations:
        return hashlib.sha256(data).hexdigest()
    h = hashlib.sha256(b"boundprop-model/1\0" + hashlib.sha256(data).digest())
    for loc in locations:
        h.update(loc.encode() + b"\0")
        h.update(hashlib.sha256((path.parent / loc).read_bytes()).digest())
    return h.hexdigest()
