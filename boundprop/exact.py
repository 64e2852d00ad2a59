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

from boundprop.errors import BoundpropError

Number = Fraction | float  # a float here is only ever ±inf
Interval = tuple[Number, Number]
SQRT_BITS = 256
MAX_FORMULA_CHARS = 1_000_000  # the longest formula a shipped model writes has ~2,000
MAX_FORMULA_DEPTH = 100  # nested parentheses, calls and powers (real formulas: < 15)
MAX_NUMBER_DIGITS = 400  # digits of one number (a double needs 17)
MAX_EXPONENT = 1000  # |e| of a decimal exponent (doubles lie within 1e±324)
MAX_POWER = 64  # |p| of an integer power x**p the checker evaluates
_FUNCTIONS = {"Min": 0, "Max": 0, "sqrt": 1, "log": 1}  # name -> number of arguments (0: ≥ 1)
_CONSTANTS = {"oo": sp.oo}
_REFUSED = {"nan", "zoo"}  # sympy's NaN / complex infinity: no claim to check
_TOKEN = re.compile(r"\s*(?:(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<op>\*\*|[-+*/(),]))",
                    re.ASCII)  # \d: ASCII digits only (sympy cannot read '0.5١')
_EXPONENT = re.compile(r"[eE]([-+]?\d+)\Z", re.ASCII)


class FormulaError(BoundpropError):
    """A formula the checker cannot read or evaluate (one line)."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """``(kind, text, offset)`` for each token; kind is "num", "name" or "op"."""
    out, pos, n = [], 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise FormulaError(f"formula '{_cut(text)}': unexpected character "
                               f"{text[pos]!r} at offset {pos}")
        kind = m.lastgroup
        if kind is None:  # trailing white space
            break
        out.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    return out


def _cut(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."


def _number(tok: str) -> sp.Expr:
    """An Integer, or a Float from its decimal text (as sympy's parser makes them)."""
    digits = sum(ch.isdigit() for ch in tok)
    e = _EXPONENT.search(tok)
    if digits > MAX_NUMBER_DIGITS or (e and abs(int(e.group(1))) > MAX_EXPONENT):
        raise FormulaError(f"number '{_cut(tok)}' is too large (over {MAX_NUMBER_DIGITS} digits "
                           f"or exponent over {MAX_EXPONENT})")
    if tok.isdigit():
        return sp.Integer(int(tok))
    return sp.Float(tok)


class _FormulaParser:
    """Recursive descent over the tokens, Python's precedence: ``+ -`` < ``* /`` < unary
    ``+ -`` < ``**`` (right-associative, its exponent may carry a sign). Builds sympy
    expressions unevaluated (as ``parse_expr(..., evaluate=False)`` does): ``a - b`` is
    ``Add(a, Mul(-1, b))``, ``a/b`` is ``Mul(a, Pow(b, -1))``, chains of + and of * are flat."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.symbols: dict[str, sp.Symbol] = {}
        self.negations: set[int] = set()  # ids of the Mul(-1, e) of unary minus: kept whole

    def error(self, msg: str) -> FormulaError:
        at = self.toks[self.i][2] if self.i < len(self.toks) else len(self.text)
        return FormulaError(f"formula '{_cut(self.text)}': {msg} at offset {at}")

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def expect(self, op: str) -> None:
        if self.peek() != op or self.toks[self.i][0] != "op":
            raise self.error(f"expected '{op}'")
        self.i += 1

    def parse(self) -> sp.Expr:
        if not self.toks:
            raise FormulaError("empty formula")
        e = self.sum(0)
        if self.i != len(self.toks):
            raise self.error(f"unexpected '{_cut(self.toks[self.i][1])}'")
        return e

    def sum(self, depth: int) -> sp.Expr:
        terms = [self.product(depth)]
        while self.peek() in ("+", "-"):
            sign = self.toks[self.i][1]
            self.i += 1
            t = self.product(depth)
            terms.append(t if sign == "+" else sp.Mul(sp.S.NegativeOne, t, evaluate=False))
        if len(terms) == 1:
            return terms[0]
        flat = [a for t in terms for a in (t.args if t.is_Add else (t,))]
        return sp.Add(*flat, evaluate=False)

    def product(self, depth: int) -> sp.Expr:
        factors = [self.unary(depth)]
        while self.peek() in ("*", "/"):
            op = self.toks[self.i][1]
            self.i += 1
            f = self.unary(depth)
            factors.append(f if op == "*" else sp.Pow(f, sp.S.NegativeOne, evaluate=False))
        if len(factors) == 1:
            return factors[0]
        flat = [a for f in factors
                for a in (f.args if f.is_Mul and id(f) not in self.negations else (f,))]
        return sp.Mul(*flat, evaluate=False)

    def unary(self, depth: int) -> sp.Expr:
        negative = False
        while self.peek() in ("+", "-"):
            negative ^= self.toks[self.i][1] == "-"
            self.i += 1
        e = self.power(depth)
        if not negative:
            return e
        if e.is_Number:  # exact: -2, -1.5, -oo
            return -e
        neg = sp.Mul(sp.S.NegativeOne, e, evaluate=False)
        self.negations.add(id(neg))
        return neg

    def power(self, depth: int) -> sp.Expr:
        base = self.atom(depth)
        if self.peek() != "**":
            return base
        self.i += 1
        if depth + 1 > MAX_FORMULA_DEPTH:
            raise self.error(f"powers nested deeper than {MAX_FORMULA_DEPTH}")
        return sp.Pow(base, self.unary(depth + 1), evaluate=False)

    def atom(self, depth: int) -> sp.Expr:
        if self.i >= len(self.toks):
            raise self.error("the formula ends early")
        kind, tok, _ = self.toks[self.i]
        if kind == "num":
            self.i += 1
            return _number(tok)
        if kind == "name":
            self.i += 1
            if self.peek() == "(":
                return self.call(tok, depth)
            return self.name(tok)
        if tok != "(":
            raise self.error(f"unexpected '{tok}'")
        if depth + 1 > MAX_FORMULA_DEPTH:
            raise self.error(f"parentheses nested deeper than {MAX_FORMULA_DEPTH}")
        self.i += 1
        e = self.sum(depth + 1)
        self.expect(")")
        return e

    def name(self, tok: str) -> sp.Expr:
        if tok in _CONSTANTS:
            return _CONSTANTS[tok]
        if tok in _REFUSED or tok in _FUNCTIONS:
            raise self.error(f"'{tok}' is not a value the checker evaluates")
        if tok not in self.symbols:
            self.symbols[tok] = sp.Symbol(tok, nonnegative=True)
        return self.symbols[tok]

    def call(self, fname: str, depth: int) -> sp.Expr:
        arity = _FUNCTIONS.get(fname)
        if arity is None:
            raise self.error(f"unknown function '{_cut(fname)}' (Min, Max, sqrt, log are "
                             "supported)")
        if depth + 1 > MAX_FORMULA_DEPTH:
            raise self.error(f"calls nested deeper than {MAX_FORMULA_DEPTH}")
        self.expect("(")
        args = [self.sum(depth + 1)]
        while self.peek() == ",":
            self.i += 1
            args.append(self.sum(depth + 1))
        self.expect(")")
        if arity and len(args) != arity:
            raise self.error(f"{fname} takes {arity} argument, got {len(args)}")
        if fname in ("Min", "Max"):
            # Unevaluated: sympy's Min/Max simplification is slow and not needed to evaluate.
            return (sp.Min if fname == "Min" else sp.Max)(*args, evaluate=False)
        if fname == "sqrt":
            return sp.Pow(args[0], sp.S.Half, evaluate=False)
        return sp.log(args[0], evaluate=False)


def parse(text: str) -> sp.Expr:
    """Parse a formula as ``str(expr)`` writes it, by a whitelist grammar (nothing is ever
    evaluated as code): + − × / ** and parentheses over integers, decimal floats, ``oo``,
    ``Min(…)``, ``Max(…)``, ``sqrt(…)``, ``log(…)`` and names. Every name is a nonnegative
    symbol (so ``gamma_x``, ``E``, ``I`` or ``pi`` never become sympy objects). Anything else,
    nesting deeper than ``MAX_FORMULA_DEPTH``, text over ``MAX_FORMULA_CHARS`` or a number over
    ``MAX_NUMBER_DIGITS`` digits is a one-line :class:`FormulaError`."""
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be text, not {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise FormulaError(f"formula of {len(text):,} characters, over the "
                           f"{MAX_FORMULA_CHARS:,} limit")
    return _FormulaParser(text).parse()


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
    a = Fraction(0) if abs(hi) == math.inf else 1 / Fraction(hi)
    b = Fraction(0) if abs(lo) == math.inf else 1 / Fraction(lo)
    return min(a, b), max(a, b)


def _add_ends(ends: list[Number], direction: int) -> Number:
    """Sum of interval ends, rounded the safe way: a lower end (``direction`` −1) with a −∞
    term is −∞ even if another term is +∞ (∞ − ∞ is unbounded, never NaN); likewise up."""
    if direction * math.inf in ends:
        return direction * math.inf
    if -direction * math.inf in ends:
        return -direction * math.inf
    return sum(ends, Fraction(0))


def _pow(x: Interval, e: sp.Rational) -> Interval:
    p, q = int(e.p), int(e.q)
    if q not in (1, 2):
        raise FormulaError(f"power {e} is not supported")
    if abs(p) > MAX_POWER:
        raise FormulaError(f"power {e} is over the {MAX_POWER} the checker evaluates")
    base = _sqrt(x) if q == 2 else x
    if p < 0:
        base, p = _recip(base), -p
    out: Interval = (Fraction(1), Fraction(1))
    for _ in range(p):
        out = _mul(out, base)
    return out


def _log(x: Interval) -> Interval:
    """log on [lo, hi] as log(p) − log(q) of each end p/q (Python's log of an integer of any
    size is within an ulp or so), widened by an *absolute* 4(ulp(log p) + ulp(log q) + ulp(r)):
    a relative widening of r alone would not cover the cancellation near v = 1."""
    lo, hi = x
    if lo <= 0:
        raise FormulaError("log of a nonpositive number")

    def end(v: Number, sign: int) -> Number:
        if v == math.inf:
            return math.inf
        v = Fraction(v)
        lp, lq = math.log(v.numerator), math.log(v.denominator)
        r = lp - lq
        err = 4 * (math.ulp(lp) + math.ulp(lq) + math.ulp(r))
        return Fraction(r) + sign * Fraction(err)

    return end(lo, -1), end(hi, 1)


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
        return _add_ends([a[0] for a in args], -1), _add_ends([a[1] for a in args], 1)
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
