"""Fuzzing the checker's formula reader and rational evaluator (``boundprop.exact``): the
formulas of genuine certificates after token mutations (names, numbers, operators, functions,
powers, nesting) and hostile text (Python attribute access, huge numbers and powers).

Target ``formula``: ``parse(text)`` returns an expression or raises a one-line
BoundpropError, never runs code (a canary file) and stays within the time limit; when it
parses, ``enclose(expr, values)`` returns an interval [lo, hi] or raises BoundpropError, and
(the differential oracle) the interval contains the value sympy computes at 60 digits.
"""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import strategies as st

from boundprop.errors import BoundpropError
from boundprop.exact import enclose, parse
from tests.fuzz.harness import MODES, call, fuzz

TOKEN = re.compile(r"\*\*|[A-Za-z_][A-Za-z0-9_]*|\d+\.?\d*(?:[eE][-+]?\d+)?|\S")
NUMBERS = ["0", "1", "2", "0.5", "1e-300", "1e308", "1e309", "9" * 500, "1e99999", "3.0e-5",
           "00", ".5", "1.", "oo", "nan", "zoo", "-1"]
OPS = ["+", "-", "*", "/", "**", "(", ")", ",", ".", "[", "]", "'", "@", "=", "_", "lambda"]
FUNCS = ["Min(", "Max(", "sqrt(", "log(", "exp(", "sin(", "Abs(", "Symbol(", "__import__(",
         "eval(", "Rational(", "Integer(", "Float("]
HOSTILE = ["(1).__class__", "().__class__.__base__.__subclasses__()", "open('x','w')",
           "__import__('os').system('true')", "9**9**9**9", "2**(2**64)", "x**-1000000",
           "sqrt(-1)", "log(0)", "log(-1)", "0**-1", "1/0", "oo - oo", "0*oo",
           "Min()", "Max(1)", "(" * 5000 + "1" + ")" * 5000, "1" + "+1" * 100_000,
           "A_h" + "*A_h" * 5000, "x" * 100_000, "A_h**64**64", "\u0661", "A_h\u00a0*l_x"]


def _formula_seeds(seed_dir) -> tuple[list[str], dict[str, float]]:
    texts, values = [], {}
    for p in sorted(seed_dir.glob("*.json")):
        doc = json.loads(p.read_text())
        sym = doc.get("symbolic") or {}
        texts += [sym[w] for w in ("lipschitz", "smoothness", "bound") if w in sym]
        for lc in doc["layers"]:
            texts += list((lc.get("symbolic") or {}).values())
        values.update({k: v for k, v in (sym.get("values") or {}).items()
                       if isinstance(v, (int, float))})
    return sorted(set(texts)), values


@st.composite
def formulas(draw, seeds: list[str], names: list[str]):
    text = draw(st.sampled_from(seeds + HOSTILE))
    toks = TOKEN.findall(text)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, max(len(toks) - 1, 0)))
        new = draw(st.one_of(st.sampled_from(NUMBERS), st.sampled_from(OPS),
                             st.sampled_from(FUNCS), st.sampled_from(names),
                             st.sampled_from(["**2", "**-1", "**0.5", "**(1/2)", "**64",
                                              "**65", "**(-64)"]),
                             st.text(max_size=3)))
        how = draw(st.sampled_from(["put", "insert", "delete"]))
        if how == "put":
            toks = toks[:i] + [new] + toks[i + 1:]
        elif how == "insert":
            toks = toks[:i] + [new] + toks[i:]
        else:
            toks = toks[:i] + toks[i + 1:]
    return "".join(toks)


def _value_strategy(names: list[str], values: dict[str, float]):
    hostile = st.sampled_from([0.0, 5e-324, 1e-300, 1.0, 1e300, 1.7976931348623157e308,
                               math.inf])
    return st.dictionaries(st.sampled_from(names), hostile, max_size=4).map(
        lambda d: {**values, **d})


def _sympy_value(expr: sp.Expr, values: dict[str, float]) -> float | None:
    """expr at values, to 60 digits, by sympy (None when not a finite real)."""
    subs = {s: sp.Float(values[s.name], 60) for s in expr.free_symbols if s.name in values}
    if len(subs) != len(expr.free_symbols):
        return None
    try:
        v = sp.N(expr.subs(subs), 60)
    except Exception:  # noqa: BLE001 - sympy cannot evaluate it: no oracle
        return None
    if not v.is_real or not v.is_finite:
        return None
    return v


def _check_one(text: str, values: dict[str, float], canary) -> str | None:
    try:
        expr = parse(text)
    except BoundpropError as e:
        return "multi-line error" if "\n" in str(e) else None
    if canary.exists():
        return "parse ran code"
    if not isinstance(expr, sp.Basic):
        return f"parse returned a {type(expr).__name__}"
    try:
        lo, hi = enclose(expr, values)
    except BoundpropError:
        return None
    if not (lo <= hi):
        return "enclose returned an empty interval"
    v = _sympy_value(expr, values)
    if v is not None and (abs(v) < 1e300):
        exact = Fraction(str(v))
        tol = abs(exact) * Fraction(1, 10**40)
        if not (lo - tol <= exact <= hi + tol):
            return "UNSOUND: enclose misses the value"
    return None


@pytest.mark.parametrize("mode", MODES)
def test_formulas(mode, seed_dir, tmp_path):
    seeds, values = _formula_seeds(seed_dir)
    names = sorted(values)
    canary = tmp_path / "RAN"
    hostile_canary = [f"__import__('os').system('touch {canary}')",
                      f"open('{canary}','w')"]

    def prop(x):
        text, vals = x
        out, o = call(lambda: _check_one(text, vals, canary))
        if o.exception:
            kind = o.exception.split(":")[0]
            return (kind if kind == "Hang" else "escaped " + kind), o.exception
        return out, ""

    strategy = st.tuples(formulas(seeds + hostile_canary, names),
                         _value_strategy(names, values))
    fuzz("formula", mode, strategy, prop, smoke=300)
