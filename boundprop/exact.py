"""Exact rational interval evaluation of the constants' formulas, for the checker.

A formula is a sympy expression (as the certificate writes it: ``str(expr)``) built from
+, ×, rational powers with denominator 1 or 2 (square roots), ``Min``, ``Max``, ``log`` of
positive integers, ∞ and named nonnegative constants. :func:`enclose` returns an interval
``[lo, hi]`` of Python ``Fraction``s (or ±``math.inf``) that contains the exact real value of
the formula at the given (float) values of its symbols:

- +, −, × and division are exact in rationals;
- a square root is rounded outward at ``SQRT_BITS`` bits with integer square roots;
- ``log(n)`` comes from the float ``math.log`` widened by 4 ulps each way (a correctly
  rounded log is off by ≤ ½ ulp; every libm we know is within 1 ulp);
- 0·∞ counts as ∞ (a formula the prover could not evaluate makes no finite claim).

Nothing here is shared with the prover's own evaluation (``constants.upper_value``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

import sympy as sp

Number = Fraction | float  # a float here is only ever ±inf
Interval = tuple[Number, Number]
SQRT_BITS = 256
_FUNCTIONS = {"Min", "Max", "sqrt", "log", "oo", "Rational", "Integer", "Float", "zoo", "nan",
              "pi", "E"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class FormulaError(ValueError):
    """A formula the checker cannot read or evaluate."""


def parse(text: str) -> sp.Expr:
    """Parse a formula written by ``str(expr)``; every name other than the few functions is a
    nonnegative symbol (so names such as ``gamma_x`` or ``E`` never become sympy objects)."""
    names = {n for n in _NAME.findall(text) if n not in _FUNCTIONS or n == "E"}
    local: dict = {n: sp.Symbol(n, nonnegative=True) for n in names}
    # Unevaluated: sympy's Min/Max simplification is slow and not needed to evaluate.
    local["Min"] = lambda *a: sp.Min(*a, evaluate=False)
    local["Max"] = lambda *a: sp.Max(*a, evaluate=False)
    try:
        return sp.parse_expr(text, local_dict=local, evaluate=False)
    except Exception as e:  # sympy raises many kinds on garbage
        raise FormulaError(f"unreadable formula '{text[:80]}' ({type(e).__name__})") from None


def _isqrt_bounds(q: Fraction) -> Interval:
    if q < 0:
        raise FormulaError("square root of a negative number")
    if q == 0:
        return Fraction(0), Fraction(0)
    a, b = q.numerator, q.denominator
    n = a * b  # sqrt(a/b) = sqrt(a·b)/b
    shift = max(0, SQRT_BITS - n.bit_length() // 2)
    n <<= 2 * shift
    r = math.isqrt(n)
    den = b << shift
    lo = Fraction(r, den)
    hi = lo if r * r == n else Fraction(r + 1, den)
    return lo, hi


def _sqrt(x: Interval) -> Interval:
    lo, hi = x
    if hi < 0:
        raise FormulaError("square root of a negative number")
    lo = max(lo, Fraction(0))
    if lo == math.inf:
        return math.inf, math.inf
    s_lo = _isqrt_bounds(lo)[0]
    s_hi = math.inf if hi == math.inf else _isqrt_bounds(Fraction(hi))[1]
    return s_lo, s_hi


def _mul1(a: Number, b: Number) -> Number:
    if a == 0 or b == 0:
        return Fraction(0)
    return a * b


def _mul(x: Interval, y: Interval) -> Interval:
    if (x[1] == math.inf or y[1] == math.inf) and (x == (0, 0) or y == (0, 0)):
        return Fraction(0), math.inf  # 0·∞: no finite claim
    prods = [_mul1(a, b) for a in x for b in y]
    return min(prods), max(prods)


def _recip(x: Interval) -> Interval:
    lo, hi = x
    if lo <= 0 <= hi:
        return -math.inf if lo < 0 else Fraction(0), math.inf  # 1/[0, h] ⊂ [1/h, ∞]
    a = Fraction(0) if hi == math.inf else 1 / Fraction(hi)
    b = Fraction(0) if lo == -math.inf else 1 / Fraction(lo)
    return min(a, b), max(a, b)


def _pow(x: Interval, e: sp.Rational) -> Interval:
    p, q = int(e.p), int(e.q)
    if q not in (1, 2):
        raise FormulaError(f"power {e} is not supported")
    base = _sqrt(x) if q == 2 else x
    if p < 0:
        base, p = _recip(base), -p
    out: Interval = (Fraction(1), Fraction(1))
    for _ in range(p):
        out = _mul(out, base)
    return out


def _log(x: Interval) -> Interval:
    lo, hi = x
    if lo <= 0:
        raise FormulaError("log of a nonpositive number")
    def f(v, d):
        if v == math.inf:
            return math.inf
        r = math.log(Fraction(v)) if isinstance(v, Fraction) else math.log(v)
        for _ in range(4):
            r = math.nextafter(r, d)
        return Fraction(r)
    return f(lo, -math.inf), f(hi, math.inf)


def enclose(expr: sp.Expr, values: dict[str, Number]) -> Interval:
    """Interval of rationals containing ``expr`` at ``values`` (symbol name → value ≥ 0)."""
    if expr is sp.oo:
        return math.inf, math.inf
    if isinstance(expr, sp.Symbol):
        try:
            v = values[expr.name]
        except KeyError:
            raise FormulaError(f"the formula uses '{expr.name}', which has no value") from None
        v = as_number(v) if not isinstance(v, Fraction) else v
        return v, v
    if expr.is_Integer or expr.is_Rational:
        q = Fraction(int(expr.p), int(expr.q))
        return q, q
    if expr.is_Float:
        q = Fraction(str(expr))  # decimal text: widen by a relative 1e-15
        d = abs(q) / 10**15
        return q - d, q + d
    args = [enclose(a, values) for a in expr.args] if not expr.is_Pow else None
    if expr.is_Add:
        lo = sum((a[0] for a in args), Fraction(0))
        hi = sum((a[1] for a in args), Fraction(0))
        return lo, hi
    if expr.is_Mul:
        out: Interval = (Fraction(1), Fraction(1))
        for a in args:
            out = _mul(out, a)
        return out
    if expr.is_Pow:
        base, e = expr.args
        if not e.is_Rational:  # unevaluated, e.g. 3*2**(-1): must be an exact constant
            lo, hi = enclose(e, {})
            if lo != hi or not isinstance(lo, Fraction):
                raise FormulaError(f"power with exponent {e} is not supported")
            e = sp.Rational(lo.numerator, lo.denominator)
        return _pow(enclose(base, values), e)
    if isinstance(expr, sp.Min):
        return min(a[0] for a in args), min(a[1] for a in args)
    if isinstance(expr, sp.Max):
        return max(a[0] for a in args), max(a[1] for a in args)
    if isinstance(expr, sp.log):
        return _log(args[0])
    raise FormulaError(f"'{type(expr).__name__}' is not an operation the checker evaluates")


def as_number(x) -> Number:
    """A certificate number (float, int or "inf") as an exact Fraction or inf."""
    if x == "inf" or x == float("inf"):
        return math.inf
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise FormulaError(f"'{x}' is not a number")
    if math.isnan(x):
        raise FormulaError("NaN in the certificate")
    return Fraction(x)
