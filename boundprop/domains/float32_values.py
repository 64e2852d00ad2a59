"""The float32 side of the onnxruntime interval engine (:mod:`boundprop.domains.interval_ort`):
the float32 model's constants, build-time constants rounded to float32 in a known direction
(``up32``/``down32``, weight matrices with their relative rounding error), the form of a node's
value (:class:`IValue`: two float32 tensors and a pending widening; its meaning is stated in
interval_ort's docstring) and its outward conversion to float64 bounds on the host.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from boundprop.rounding import FLOAT32_UNIT_ROUNDOFF

U = FLOAT32_UNIT_ROUNDOFF
U1 = U / (1.0 - U)
ETA = 2.0**-126
# Relative slack for float64 arithmetic on the build-time constants (a few roundings of 2⁻⁵³).
SLACK64 = 1.0 + 2.0**-40


class FastIntervalUnavailable(NotImplementedError):
    """The onnxruntime interval engine cannot handle this network or box (unsupported
    primitive, non-finite box, float32 overflow): use the numpy engine."""


# --------------------------------------------------------------------------------------------
# float32 rounding of build-time constants


def near32(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64).astype(np.float32)


def up32(x) -> np.ndarray:
    """The least float32 ≥ x (elementwise)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    return np.where(y.astype(np.float64) < x, np.nextafter(y, np.float32(np.inf)), y)


def down32(x) -> np.ndarray:
    """The greatest float32 ≤ x (elementwise)."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    return np.where(y.astype(np.float64) > x, np.nextafter(y, np.float32(-np.inf)), y)


_CHUNK = 1 << 20


def _chunks(w: np.ndarray):
    """Row blocks of ``w`` (as a 2-D view) of about a million entries: keeps the float64
    temporaries of the constant computations small."""
    flat = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(-1, 1)
    step = max(1, _CHUNK // max(1, flat.shape[1]))
    for i in range(0, flat.shape[0], step):
        yield i, flat[i:i + step]


def round_weights(w: np.ndarray, sigma: float) -> tuple[np.ndarray, float]:
    """(fl32(σW), u_w) with |fl32(σW) − σW| ≤ u_w·|σW|: u_w = 0 when every entry is exact,
    u (round to nearest) when the inexact ones are in float32's normal range."""
    out = np.empty(w.shape, np.float32)
    flat_out = out.reshape(w.shape[0], -1) if w.ndim > 1 else out.reshape(-1, 1)
    u_w = 0.0
    top = float(np.finfo(np.float32).max) / 2
    for i, blk in _chunks(w):
        sw = sigma * blk  # exact: σ is a power of 2 (bar float64 underflow, checked below)
        if not np.all(np.isfinite(sw)):
            raise FastIntervalUnavailable("non-finite weights")
        r = sw.astype(np.float32)
        bad = r.astype(np.float64) != sw
        if np.any(bad):
            mag = np.abs(sw[bad])
            if np.any(mag < 2.0**-126) or np.any(mag > top):
                raise FastIntervalUnavailable("weights outside float32's normal range")
            u_w = U
        if sigma != 1.0 and np.any((blk != 0) & (np.abs(blk) < 2.0**-1020)):
            raise FastIntervalUnavailable("subnormal float64 weights")
        flat_out[i:i + len(blk)] = r
    return out, u_w


def abs_scaled_up(w: np.ndarray, scale: float) -> np.ndarray:
    """↑fl32(|W|·scale) entrywise (the float64 product is within SLACK64 of exact; the caller
    folds that slack into ``scale``)."""
    out = np.empty(w.shape, np.float32)
    flat_out = out.reshape(w.shape[0], -1) if w.ndim > 1 else out.reshape(-1, 1)
    for i, blk in _chunks(w):
        flat_out[i:i + len(blk)] = up32(np.abs(blk) * scale)
    return out


# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IValue:
    """A node's box as two float32 graph tensors (see the module docstring for the meaning)."""

    kind: str  # "lh" or "cr"
    a: str
    b: str
    shape: tuple[int, ...]
    eps: float = 0.0
    tau: float = 0.0
    rho: float = 1.0  # cr only
    nonneg: bool = False  # lh only: the float32 lower tensor is >= 0
    guarded: bool = True  # cr only: a non-finite centre entry would be caught by a guard


def to_float64_bounds(v: IValue, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Host conversion of a value (float32 tensors ``a``, ``b``) to float64 bounds.

    ``lh``: [a − m_a, b + m_b] with m_x = fl(fl(|x|·e₂) + t₂); ``cr``: c ∓ fl(fl(r·ρ₂) +
    fl(|c|·e₂) + t₂), where e₂ = eps + 2⁻⁴⁷, t₂ = tau(1 + 2⁻⁴⁷), ρ₂ = rho(1 + 2⁻⁴⁷). The extra
    2⁻⁴⁷ covers every float64 rounding of these few operations (each ≤ 2⁻⁵³ of its result; no
    float64 underflow: float32 magnitudes are ≥ 2⁻¹⁴⁹ or 0), so each float64 result is an
    outward bound of the exact expression of the invariant. Non-finite entries: a −∞ lower or
    +∞ upper (or radius) is a valid bound; anything else means float32 overflow."""
    k = 2.0**-47
    e2, t2 = v.eps + k, v.tau * (1 + k)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = bool(np.isfinite(a64).all() and np.isfinite(b64).all())
    with np.errstate(invalid="ignore", over="ignore"):
        if v.kind == "lh":
            if not finite and (np.isnan(a64).any() or np.isnan(b64).any()
                               or (a64 == np.inf).any() or (b64 == -np.inf).any()):
                raise FastIntervalUnavailable("float32 overflow in the interval pass")
            m = np.abs(a64)
            m *= e2
            m += t2
            lo = np.subtract(a64, m, out=m)
            m = np.abs(b64)
            m *= e2
            m += t2
            hi = np.add(b64, m, out=m)
        else:
            if not finite and (not np.isfinite(a64).all() or np.isnan(b64).any()
                               or (b64 == -np.inf).any()):
                raise FastIntervalUnavailable("float32 overflow in the interval pass")
            rad = b64 * (v.rho * (1 + k))
            m = np.abs(a64)
            m *= e2
            rad += m
            rad += t2
            lo = np.subtract(a64, rad, out=m)
            hi = np.add(a64, rad, out=rad)
    if not finite:  # ∞ − ∞ cannot occur above; keep the invariant lo ≤ hi explicit anyway
        lo, hi = np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)
    return lo, hi
