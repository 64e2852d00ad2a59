"""Smooth activations: sigmoid, tanh, softplus, softsign, the ELU family (ELU, SELU, CELU),
GELU (exact and tanh-approximated) and erf — σ' is continuous and monotone between the points
of ``pieces()``, and σ'' is known in closed form (see
:class:`~boundprop.ops.activation.Activation`); the tanh-GELU's curvature carries a certificate
(``_gelu_tanh_curvature_brackets``). The monotone ones whose onnxruntime kernel has a measured
error model (``ORT_KERNEL_ERROR``: all but SELU and the non-monotone GELU) also have an
onnxruntime interval rule.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import special

from boundprop.domains.float32_values import FastIntervalUnavailable
from boundprop.ops.activation import Activation
from boundprop.ops.base import ConversionContext, Shape, Value, as_str, attr, onnx_converter
from boundprop.ops.tangent import elu_family_inflections
from boundprop.rounding import (
    ELEMENTARY_RELATIVE_ERROR,
    TINY,
)


def _newton_root(f, df, x: float, steps: int = 60) -> float:
    for _ in range(steps):
        x -= f(x) / df(x)
    return x


_SQRT2PI = np.sqrt(2 * np.pi)
_LN_2_SQRT3 = float(np.log(2 + np.sqrt(3.0)))  # arccosh 2: sigmoid's (and 2×tanh's) σ''' zero
# argmin of x·Φ(x): root of Φ(x) + x φ(x), by Newton on its derivative φ(x)(2 − x²).
_GELU_ARGMIN = _newton_root(
    lambda x: 0.5 * (1 + special.erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / _SQRT2PI,
    lambda x: np.exp(-x * x / 2) / _SQRT2PI * (2 - x * x), -0.75)


_GT_K = np.sqrt(2 / np.pi)  # tanh-GELU: σ(x) = x·S(z(x)), S = expit, z = 2k(x + c x³)
_GT_C = 0.044715
# Beyond this |x| every σ', σ'', σ''' of GELU (both forms) and Erf differs from its limit by
# less than TINY (e.g. the tanh-GELU's S'(z) < e^(−1e9)); inputs are clipped to it so that
# ±inf and overflowing powers give those limits instead of inf·0 = nan.
_FAR = 1e3

# onnxruntime's float32 kernels of the smooth monotone activations, assumed to satisfy
# |σ̂(x) − σ(x)| ≤ rel·|σ(x)| + absolute at every float32 x (σ's limits at ±∞): the package's
# float32 margin for elementary functions, rel = 64 ulp (2⁻¹⁸), and an absolute term. Measured
# on onnxruntime 1.32 (MLAS, x86-64 FMA) over every 16th float32 bit pattern (2.7e8 inputs),
# against float64 references, and on 2²⁴ points of [−20, 0]: Sigmoid's error is absolute, up
# to 1.8e-7 (0.5 + p/q loses σ's relative accuracy for x < 0: it returns 0 at x = −15.79, where
# σ = 1.4e-7, and 3.0e-7 at −15.93, where σ = 1.2e-7), hence 2⁻²⁰ ≈ 9.5e-7; Tanh, Softplus
# and Erf stay within 6 ulp of σ relative, with subnormal absolute errors (≤ 1.5e-43), hence
# 2⁻¹²⁰; Softsign within 4 ulp, but its kernel gives NaN at ±∞ (the rule clips its input to
# the finite range first). Elu and Celu: α(eˣ − 1) has an absolute error ∝ |α| near x = 0,
# measured 5.9e-8·|α| (Elu, α = 1 and 0.3; Celu, α = 0.7): the absolute term is per unit |α|
# (plus 2⁻¹²⁰). Each kernel but Softsign's maps ±∞ to σ's limits. tests/test_fast_interval.py
# re-checks these bounds on the installed onnxruntime.
ORT_KERNEL_ERROR: dict[str, tuple[float, float]] = {
    "Sigmoid": (2.0**-18, 2.0**-20),
    "Tanh": (2.0**-18, 2.0**-120),
    "Softplus": (2.0**-18, 2.0**-120),
    "Erf": (2.0**-18, 2.0**-120),
    "Softsign": (2.0**-18, 2.0**-120),
    "Elu": (2.0**-18, 2.0**-20),  # absolute: per unit |α|
    "Celu": (2.0**-18, 2.0**-20),  # absolute: per unit |α|
}


def _emit_alpha_kernel(b, x, op_type: str, alpha: float):
    """Elu/Celu through onnxruntime: increasing for α ≥ 0 (Celu: α > 0), with the kernel's
    absolute error scaled by α; α must be a float32 (the ONNX attribute's type)."""
    if alpha < 0 or (op_type == "Celu" and alpha == 0) or float(np.float32(alpha)) != alpha:
        raise FastIntervalUnavailable(f"{op_type} with a negative, zero or non-float32 alpha")
    rel, per_alpha = ORT_KERNEL_ERROR[op_type]
    return b.increasing_kernel(x, op_type, rel, per_alpha * alpha + 2.0**-120, nonneg=False,
                               alpha=alpha)


def _gelu_tanh_derivative(x: float) -> float:
    x = np.clip(x, -_FAR, _FAR)
    k = _GT_K
    z = 2 * k * (x + _GT_C * x**3)
    p = special.expit(z)  # 0.5(1 + tanh), without cancellation
    return p + x * 2 * p * special.expit(-z) * k * (1 + 3 * _GT_C * x * x)


def _gelu_tanh_factors(ax):
    """For ax = |x| ≥ 0: z, z' = 2k(1 + 3c x²), z'' = 12kc·ax, T = tanh(z/2), 1 − T² (as
    4S(z)S(−z), without cancellation) and S'(z) = S(z)S(−z). All are nondecreasing in ax
    except 1 − T² and S'(z), which are nonincreasing."""
    k, c = _GT_K, _GT_C
    z = 2 * k * (ax + c * ax**3)
    zp = 2 * k * (1 + 3 * c * ax * ax)
    zpp = 12 * k * c * ax
    sp = special.expit(z) * special.expit(-z)
    return z, zp, zpp, np.tanh(z / 2), 4 * sp, sp


def _gelu_tanh_second_parts(x):
    """σ'' of the tanh-GELU and the magnitude of the terms it sums (its rounding scale).

    σ = x/2 + (x/2)·tanh(z/2) with z odd, so σ'' is even; with S' = S(1 − S) and
    S'' = −S'·T: σ'' = 2S'z' + x(S''z'² + S'z'') = S'(z)·B, B = 2z' + x·z'' − x·T·z'²
    (everything at |x|)."""
    ax = np.minimum(np.abs(x), _FAR)
    _, zp, zpp, t, _, sp = _gelu_tanh_factors(ax)
    pos, neg = 2 * zp + ax * zpp, ax * t * zp * zp
    return sp * (pos - neg), sp * (pos + neg)


def _gelu_tanh_second(x):
    return _gelu_tanh_second_parts(x)[0]


def _gelu_tanh_q_terms(ax):
    """σ''' = sign(x)·S'(z)·Q(|x|), from differentiating S'(z)·B with dT/dx = (1 − T²)z'/2:
    Q = B' − T z' B = [4z'' + x T² z'³] − [3T z'² + 3x T z' z'' + (x/2)(1 − T²) z'³].
    Returns the two brackets (each a sum of products of monotone factors ≥ 0 on x ≥ 0)."""
    _, zp, zpp, t, sech2, _ = _gelu_tanh_factors(ax)
    pos = 4 * zpp + ax * t * t * zp**3
    neg = 3 * t * zp * zp + 3 * ax * t * zp * zpp + 0.5 * ax * sech2 * zp**3
    return pos, neg


def _gelu_tanh_third(x):
    ax = np.minimum(np.abs(x), _FAR)
    pos, neg = _gelu_tanh_q_terms(ax)
    return np.sign(x) * _gelu_tanh_factors(ax)[5] * (pos - neg)


# Inflection points of the tanh-approximated GELU (roots of its σ''), near ±√2.
_GELU_TANH_INFL = tuple(float(_newton_root(_gelu_tanh_second, _gelu_tanh_third, x0, 30))
                        for x0 in (-1.4, 1.4))

_GELU_TANH_ARGMIN = _newton_root(_gelu_tanh_derivative, _gelu_tanh_second, -0.75, 40)


def _gelu_tanh_q_enclosure(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                  np.ndarray]:
    """[qlo, qhi] ⊇ Q([a, b]) for 0 ≤ a ≤ b, and a rounding margin for it.

    Natural interval extension: every factor of every term of Q is monotone and ≥ 0 on x ≥ 0,
    so each term lies between its values with all factors at their lower and at their upper
    ends. Each term is a few correctly rounded products of library tanh/expit values (relative
    error ≤ 1e-13 each), so |computed − exact| ≤ 1e-11·(the terms' total magnitude)."""
    _, zpa, zppa, ta, secha, _ = _gelu_tanh_factors(a)
    _, zpb, zppb, tb, sechb, _ = _gelu_tanh_factors(b)
    p_lo = 4 * zppa + a * ta * ta * zpa**3
    p_hi = 4 * zppb + b * tb * tb * zpb**3
    n_lo = 3 * ta * zpa * zpa + 3 * a * ta * zpa * zppa + 0.5 * a * sechb * zpa**3
    n_hi = 3 * tb * zpb * zpb + 3 * b * tb * zpb * zppb + 0.5 * b * secha * zpb**3
    return p_lo - n_hi, p_hi - n_lo, 1e-11 * (p_hi + n_hi) + TINY


_GELU_TANH_TAIL = 4.0


@functools.cache
def _gelu_tanh_curvature_brackets() -> tuple[tuple[float, float, float], ...]:
    """Certified brackets (a, b, U) that contain every zero of the tanh-GELU's σ''' (so every
    point where σ'' can have an interior extremum), with U ≥ sup_{[a, b]} |σ''|.

    Proof, for x ≥ 0 (σ''' is odd: the negative brackets are the mirror images):

    * x ≥ 4: with 4z'' ≥ 0 and T ≤ 1, Q ≥ x T² z'³ − 3z'² − 3x z' z'' − (x/2)(1 − T²) z'³,
      so Q/(x z'³) ≥ (3T² − 1)/2 − 3/(x z') − 3z''/z'². The first term increases with x, the
      second decreases, and z''/z'² ∝ x/(1 + 3cx²)² decreases for x² > 1/(9c) (x > 1.58):
      the bound's value at x = 4 (≈ 0.65 > 0) holds on [4, ∞), so Q > 0 there (no zero).
    * [0, 4]: a cell on which the interval enclosure of Q excludes 0 (beyond its rounding
      margin) holds no zero; the other cells are bisected down to width 2⁻⁴⁰ and kept. Two
      groups remain: [0, ~1e-12] at the zero x = 0, and a ~1e-12 bracket of x ≈ 2.0135.
    * U: for x in a bracket [a, b] with midpoint m, |σ''(x)| ≤ |σ''(m)| + (b − a)/2 ·
      S'(z(a))·sup|Q| (S'∘z decreases on x ≥ 0) — an O(width²) excess over |σ''(m)|, as
      sup|Q| is O(width) on a bracket around a zero — plus σ''(m)'s own rounding margin.
    """
    x = np.float64(_GELU_TANH_TAIL)
    _, zp, zpp, t, _, _ = _gelu_tanh_factors(x)
    tail = (3 * t * t - 1) / 2 - 3 / (x * zp) - 3 * zpp / (zp * zp)
    if not tail > 1e-3:
        raise RuntimeError("tanh-GELU curvature certificate: the tail bound failed")
    edges = np.linspace(0.0, float(x), 257)
    a, b = edges[:-1], edges[1:]
    kept: list[tuple[float, float]] = []
    while a.size:
        qlo, qhi, margin = _gelu_tanh_q_enclosure(a, b)
        undecided = (qlo <= margin) & (qhi >= -margin)
        a, b = a[undecided], b[undecided]
        small = (b - a) <= 2.0**-40
        kept += list(zip(a[small].tolist(), b[small].tolist()))
        a, b = a[~small], b[~small]
        if a.size > 10000:
            raise RuntimeError("tanh-GELU curvature certificate: the bisection diverged")
        mid = 0.5 * (a + b)
        a, b = np.concatenate([a, mid]), np.concatenate([mid, b])
    groups: list[list[float]] = []
    for lo, hi in sorted(kept):
        if groups and lo <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], hi)
        else:
            groups.append([lo, hi])
    out = []
    for lo, hi in groups:
        qlo, qhi, margin = _gelu_tanh_q_enclosure(np.float64(lo), np.float64(hi))
        slope = _gelu_tanh_factors(np.float64(lo))[5] * (max(abs(qlo), abs(qhi)) + margin)
        m = 0.5 * (lo + hi)
        g, scale = _gelu_tanh_second_parts(np.float64(m))
        u = (abs(g) + 10 * ELEMENTARY_RELATIVE_ERROR * scale + TINY
             + (hi - lo) / 2 * slope * (1 + 1e-12))
        u = float(np.nextafter(u, np.inf))
        # [0, w] holds the zero at 0 and mirrors onto [−w, 0]: one bracket [−w, w]
        out.append((-hi if lo == 0.0 else lo, hi, u))
        if lo != 0.0:
            out.append((-hi, -lo, u))
    return tuple(sorted(out))


class Sigmoid(Activation):
    kind = onnx_op = "Sigmoid"
    rules = Activation.rules | {"ort_interval"}

    def fn(self, x):
        return special.expit(x)

    def emit_interval_onnx(self, b, x):
        """Increasing, in (0, 1): onnxruntime's Sigmoid on the outer float32 bounds, the
        kernel's error (``ORT_KERNEL_ERROR``) as the pending widening, lower end ≥ 0."""
        return b.increasing_kernel(x, "Sigmoid", *ORT_KERNEL_ERROR["Sigmoid"], nonneg=True)

    def derivative(self, x):
        # σ(x)σ(−x), not s(1 − s): the latter cancels to 0 in the tails.
        return special.expit(x) * special.expit(-x)

    def inflections(self):
        return (0.0,), 1  # convex on x ≤ 0, concave on x ≥ 0

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = σ'(1 − 2σ) = −σ(x)σ(−x)·tanh(x/2) (1 − 2σ(x) = −tanh(x/2), without the
        cancellation of 1 − 2σ near 0)."""
        return -special.expit(x) * special.expit(-x) * np.tanh(x / 2)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = σ'(1 − 6σ + 6σ²) vanishes iff σ = (3 ± √3)/6, i.e. eˣ = σ/(1 − σ) = 2 ± √3:
        x = ±ln(2 + √3) ≈ ±1.3170, where |σ''| = (1/6)(1/√3) = 1/(6√3), the global sup."""
        return (-_LN_2_SQRT3, _LN_2_SQRT3)

    def value_bound(self) -> float:
        return 1.0


class Tanh(Activation):
    kind = onnx_op = "Tanh"
    rules = Activation.rules | {"ort_interval"}

    def fn(self, x):
        return np.tanh(x)

    def emit_interval_onnx(self, b, x):
        """Increasing: onnxruntime's Tanh on the outer float32 bounds, the kernel's error
        (``ORT_KERNEL_ERROR``) as the pending widening."""
        return b.increasing_kernel(x, "Tanh", *ORT_KERNEL_ERROR["Tanh"], nonneg=False)

    def derivative(self, x):
        # sech²x = 4σ(2x)σ(−2x), not 1 − tanh²x (which cancels to 0 for |x| > 19).
        return 4 * special.expit(2 * x) * special.expit(-2 * x)

    def inflections(self):
        return (0.0,), 1  # convex on x ≤ 0, concave on x ≥ 0

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −2 tanh(x)·sech²(x)."""
        return -2 * np.tanh(x) * self.derivative(x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = 2sech²x·(3tanh²x − 1) vanishes iff tanh x = ±1/√3, x = ±ln(2 + √3)/2 ≈
        ±0.6585, where |σ''| = 2·(1/√3)·(2/3) = 4/(3√3), the global sup."""
        return (-_LN_2_SQRT3 / 2, _LN_2_SQRT3 / 2)

    def value_bound(self) -> float:
        return 1.0


class Softplus(Activation):
    """σ(x) = log(1 + eˣ)."""

    kind = onnx_op = "Softplus"
    rules = Activation.rules | {"ort_interval"}

    def fn(self, x):
        return np.logaddexp(0.0, x)

    def emit_interval_onnx(self, b, x):
        """Increasing, positive: onnxruntime's Softplus on the outer float32 bounds, the
        kernel's error (``ORT_KERNEL_ERROR``) as the pending widening, lower end ≥ 0."""
        return b.increasing_kernel(x, "Softplus", *ORT_KERNEL_ERROR["Softplus"], nonneg=True)

    def derivative(self, x):
        return special.expit(x)

    def inflections(self):
        return (), 1  # convex

    def pieces(self):
        return ()

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = sigmoid'(x) = s(x)s(−x) > 0."""
        return special.expit(x) * special.expit(-x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = s'(1 − 2s) vanishes at 0 only, where σ'' = 1/4, the global sup."""
        return (0.0,)


class Softsign(Activation):
    kind = onnx_op = "Softsign"
    rules = Activation.rules | {"ort_interval"}

    def fn(self, x):
        return x / (1.0 + np.abs(x))

    def emit_interval_onnx(self, b, x):
        """Increasing: onnxruntime's Softsign on the outer float32 bounds clipped to the finite
        range (its kernel gives NaN at ±∞; beyond ±M, M the largest float32, σ is within 3e-39
        of σ(±M), far inside the rel margin), the kernel's error as the pending widening."""
        return b.increasing_kernel(x, "Softsign", *ORT_KERNEL_ERROR["Softsign"], nonneg=False,
                                   finite_input=True)

    def derivative(self, x):
        with np.errstate(over="ignore"):  # huge |x|: (1 + |x|)² = inf, σ' = 0
            return 1 / (1 + np.abs(x)) ** 2

    def inflections(self):
        return (0.0,), 1  # convex on x ≤ 0, concave on x ≥ 0

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −2·sign(x)/(1 + |x|)³: σ' is continuous at 0 but σ'' jumps from 2 to −2
        (the right-hand value −2 at 0); |σ''| decreases in |x|: the global sup is 2."""
        return np.where(x >= 0, -2.0, 2.0) * (1 / (1 + np.abs(x))) ** 3

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)

    def value_bound(self) -> float:
        return 1.0


class Elu(Activation):
    """σ(x) = x for x ≥ 0, α(eˣ − 1) otherwise."""

    kind = onnx_op = "Elu"
    rules = Activation.rules | {"ort_interval"}
    onnx_defaults = {"alpha": 1.0}

    def fn(self, x):
        return np.where(x >= 0, x, self.params["alpha"] * np.expm1(np.minimum(x, 0.0)))

    def emit_interval_onnx(self, b, x):
        """Increasing for α ≥ 0: see ``_emit_alpha_kernel``."""
        return _emit_alpha_kernel(b, x, "Elu", self.params["alpha"])

    def critical_points(self):
        return (0.0,) if self.params["alpha"] < 0 else ()

    def derivative(self, x):
        return np.where(x >= 0, 1.0, self.params["alpha"] * np.exp(np.minimum(x, 0.0)))

    def inflections(self):
        a = self.params["alpha"]
        return elu_family_inflections(a, a, 1.0)  # σ'' = α eˣ (x < 0), σ'(0±) = α, 1

    def pieces(self):
        return (0.0,)

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = α, σ'(0+) = 1
        return () if self.params["alpha"] == 1 else (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = α eˣ for x < 0, 0 for x ≥ 0 (the right-hand value at 0, as
        :meth:`derivative`); |σ''| increases towards 0⁻: for α = 1 the global sup is 1, and
        σ'' jumps from 1 to 0 there while σ' is continuous."""
        return np.where(x >= 0, 0.0, self.params["alpha"] * np.exp(np.minimum(x, 0.0)))

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)


class Selu(Activation):
    kind = onnx_op = "Selu"
    onnx_defaults = {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875}

    def fn(self, x):
        a, g = self.params["alpha"], self.params["gamma"]
        return g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))

    def critical_points(self):
        return (0.0,) if self.params["alpha"] * self.params["gamma"] < 0 else ()

    def derivative(self, x):
        a, g = self.params["alpha"], self.params["gamma"]
        return g * np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0.0)))

    def inflections(self):
        a, g = self.params["alpha"], self.params["gamma"]
        return elu_family_inflections(g * a, g * a, g)  # σ'' = γα eˣ, σ'(0±) = γα, γ

    def pieces(self):
        return (0.0,)

    def derivative_jumps(self) -> tuple[float, ...]:
        # σ'(0−) = γα, σ'(0+) = γ
        a, g = self.params["alpha"], self.params["gamma"]
        return () if a == 1 or g == 0 else (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = γα eˣ for x ≤ 0 (the left-hand value at 0, as :meth:`derivative`), 0 for
        x > 0; for α = 1 the global sup is |γ| (at 0⁻)."""
        a, g = self.params["alpha"], self.params["gamma"]
        return np.where(x > 0, 0.0, g * a * np.exp(np.minimum(x, 0.0)))

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)

    def value_bound(self) -> float:
        return 0.0 if self.params["gamma"] == 0 else float("inf")


class Celu(Activation):
    kind = onnx_op = "Celu"
    rules = Activation.rules | {"ort_interval"}
    onnx_defaults = {"alpha": 1.0}

    def fn(self, x):
        a = self.params["alpha"]
        return np.maximum(x, 0.0) + np.minimum(0.0, a * np.expm1(np.minimum(x, 0.0) / a))

    def emit_interval_onnx(self, b, x):
        """Increasing for α > 0: see ``_emit_alpha_kernel``."""
        return _emit_alpha_kernel(b, x, "Celu", self.params["alpha"])

    def derivative(self, x):
        a = self.params["alpha"]
        return np.where(x >= 0, 1.0, np.exp(np.minimum(x, 0.0) / a))

    def inflections(self):
        a = self.params["alpha"]
        return elu_family_inflections(a, 1.0, 1.0)  # σ'' = e^(x/α)/α (x < 0), σ'(0±) = 1

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = e^(x/α)/α for x < 0, 0 for x ≥ 0 (the right-hand value at 0). σ'(0⁻) = e⁰ = 1
        = σ'(0⁺): no jump of σ' for any α. For α > 0 the global sup is 1/α (at 0⁻); for α < 0
        |σ''| grows without bound as x → −∞."""
        a = self.params["alpha"]
        with np.errstate(over="ignore"):
            return np.where(x >= 0, 0.0, np.exp(np.minimum(x, 0.0) / a) / a)

    def curvature_points(self) -> tuple[float, ...]:
        return (0.0,)


class Gelu(Activation):
    """Exact GELU x Φ(x) (approximate="none") or its tanh approximation."""

    kind = onnx_op = "Gelu"
    plain_converter = False  # a string attribute: ``convert_gelu``

    def __init__(self, in_shape: Shape, approximate: str = "none") -> None:
        super().__init__(in_shape)
        self.approximate = approximate

    def fn(self, x):
        # x·Φ(x) with Φ = ndtr, and 0.5(1 + tanh z) = expit(2z): the textbook forms
        # 0.5x(1 + erf(x/√2)) and 0.5x(1 + tanh z) cancel catastrophically for x ≪ 0
        # (relative error ~1e-3 at x = −7.5), beyond any elementary-function margin.
        if self.approximate == "tanh":
            return x * special.expit(2 * np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3))
        return x * special.ndtr(x)

    def describe(self) -> str:
        return "" if self.approximate == "none" else "tanh approximation"

    def critical_points(self):
        return (_GELU_TANH_ARGMIN if self.approximate == "tanh" else _GELU_ARGMIN,)

    def derivative(self, x):
        if self.approximate == "tanh":
            return _gelu_tanh_derivative(x)
        x = np.clip(x, -_FAR, _FAR)  # the limits 0 and 1 at ∓inf, not inf·0
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / _SQRT2PI

    def pieces(self):
        # σ'' = φ(x)(2 − x²) for the exact form: σ' is monotone between ±√2 (the tanh form's
        # inflections are within 0.01 of these; the bisection only needs monotone pieces,
        # so the tanh form uses its own computed points).
        return (-np.sqrt(2.0), np.sqrt(2.0)) if self.approximate == "none" else _GELU_TANH_INFL

    def inflections(self):
        """Concave, convex between the two inflections (±√2; the tanh form's computed ones),
        concave: an interval spanning both keeps the chord."""
        return tuple(float(p) for p in self.pieces()), -1

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """Exact form: σ'' = φ(x)(2 − x²). Tanh form: σ'' = S'(z)·(2z' + x z'' − x T z'²) at
        |x| (it is even), see ``_gelu_tanh_second_parts``."""
        if self.approximate == "tanh":
            return _gelu_tanh_second(x)
        x = np.clip(x, -_FAR, _FAR)
        return np.exp(-0.5 * x * x) / _SQRT2PI * (2 - x * x)

    def _second_derivative_scale(self, x: np.ndarray) -> np.ndarray:
        # 2 − x² and the tanh form's bracket cancel near their roots (±√2, ±1.4185): the
        # rounding is relative to the terms' magnitudes, not to |σ''|.
        if self.approximate == "tanh":
            return _gelu_tanh_second_parts(x)[1]
        x = np.clip(x, -_FAR, _FAR)
        return np.exp(-0.5 * x * x) / _SQRT2PI * (2 + x * x)

    def curvature_points(self) -> tuple[float, ...]:
        """Exact form: σ''' = xφ(x)(x² − 4) vanishes at 0, ±2, where |σ''| = 2φ(0) = √(2/π)
        (the global sup) and 2φ(2). Tanh form: the midpoints of the certified brackets of the
        zeros of its σ''' (0 and ±2.0135; see ``_gelu_tanh_curvature_brackets``)."""
        if self.approximate == "tanh":
            return tuple(0.5 * (a + b) for a, b, _ in _gelu_tanh_curvature_brackets())
        return (-2.0, 0.0, 2.0)

    def _curvature_candidates(self, lo, hi):
        """Tanh form: besides the ends, each certified bracket of a zero of σ''' that meets
        [lo, hi] contributes its bound U ≥ sup |σ''| over the bracket. An interior extremum
        of σ'' on [lo, hi] is a zero of σ''', hence in such a bracket: the sup over [lo, hi]
        is at most max(|σ''(lo)|, |σ''(hi)|, those U)."""
        cands = super()._curvature_candidates(lo, hi)
        if self.approximate == "tanh":
            for a, b, u in _gelu_tanh_curvature_brackets():
                hit = np.where((lo <= b) & (a <= hi), u, 0.0)
                cands.append((hit, hit))
        return cands


class Erf(Activation):
    kind = onnx_op = "Erf"
    rules = Activation.rules | {"ort_interval"}

    def fn(self, x):
        return special.erf(x)

    def emit_interval_onnx(self, b, x):
        """Increasing: onnxruntime's Erf on the outer float32 bounds, the kernel's error
        (``ORT_KERNEL_ERROR``) as the pending widening."""
        return b.increasing_kernel(x, "Erf", *ORT_KERNEL_ERROR["Erf"], nonneg=False)

    def derivative(self, x):
        with np.errstate(over="ignore"):  # huge |x|: x² = inf, σ' = 0
            return 2 / np.sqrt(np.pi) * np.exp(-x * x)

    def inflections(self):
        return (0.0,), 1  # convex on x ≤ 0, concave on x ≥ 0

    def pieces(self):
        return (0.0,)

    def second_derivative(self, x: np.ndarray) -> np.ndarray:
        """σ'' = −(4/√π)·x·e^(−x²)."""
        x = np.clip(x, -_FAR, _FAR)
        return -4 / np.sqrt(np.pi) * x * np.exp(-x * x)

    def curvature_points(self) -> tuple[float, ...]:
        """σ''' = −(4/√π)e^(−x²)(1 − 2x²) vanishes at ±1/√2, where |σ''| = √(8/π)·e^(−1/2)
        ≈ 0.96788, the global sup."""
        return (-np.sqrt(0.5), np.sqrt(0.5))

    def value_bound(self) -> float:
        return 1.0


@onnx_converter("Gelu")
def convert_gelu(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    approximate = as_str(attr(node, "approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"Gelu approximate='{approximate}' is not supported")
    return [ctx.emit(Gelu(x.shape, approximate), [x])]
