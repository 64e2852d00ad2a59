"""The formula reader (`boundprop.exact.parse`) is a whitelist grammar: certificate text is never
run as code, every formula boundprop writes reads back to the same value, and anything else
(code, garbage, deep nesting, huge numbers) is a one-line FormulaError."""

from __future__ import annotations

import functools
import json
import math
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.errors import BoundpropError
from boundprop.exact import MAX_FORMULA_CHARS, MAX_FORMULA_DEPTH, FormulaError, enclose, parse
from boundprop.sets import default_input_set
from tests.conftest import MODELS

ROUND_TRIP_MODELS = ["mlp_relu", "mlp_gelu", "layernorm_mlp", "mlp_clip", "mlp_elu",
                     "mlp_softplus", "softmax_head"]


def _payloads(marker) -> list[str]:
    cmd = f"touch {marker}"
    return [
        f"(lambda: 0).__globals__['__builtins__']['__import__']('os').system('{cmd}')",
        f"__import__('os').system('{cmd}')",
        f"exec(\"import os; os.system('{cmd}')\")",
        f"x + __import__('os').system('{cmd}')",
        f"Min(x, __import__('os').system('{cmd}'))",
        f"sqrt(x).__class__.__init__.__globals__['os'].system('{cmd}')",
    ]


def test_code_in_a_formula_is_never_run(tmp_path):
    marker = tmp_path / "pwned"
    for text in _payloads(marker):
        with pytest.raises(FormulaError):
            parse(text)
        assert not marker.exists(), text


def test_code_in_a_certificate_is_never_run(tmp_path):
    """bp.load_certificate reads the symbolic formulas: a hostile one is a one-line error."""
    net = bp.load(MODELS / "mlp_relu.onnx")
    doc = bp.certify(net, default_input_set(net)).to_json()
    marker = tmp_path / "pwned"
    for text in _payloads(marker):
        doc["symbolic"]["lipschitz"] = text
        path = tmp_path / "cert.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(BoundpropError) as e:
            bp.load_certificate(path)
        assert "\n" not in str(e.value)
        assert not marker.exists(), text


def _certificate_formulas(name: str) -> list[tuple[str, sp.Expr | None]]:
    """(text, the prover's expression or None) of every formula a certificate carries."""
    net = bp.load(MODELS / f"{name}.onnx")
    s = default_input_set(net)
    c = bp.certify(net, s, norm="inf")
    out = [(str(getattr(c.constants, f"{w}_formula")), getattr(c.constants, f"{w}_formula"))
           for w in ("lipschitz", "smoothness", "bound")]
    doc = c.to_json()
    out += [(v, None) for lc in doc["layers"] for v in (lc.get("symbolic") or {}).values()]
    x = s.sample(1, np.random.default_rng(0))[0]
    cp = bp.certify(net, bp.Box(x, x), norm="2", wrt="params", param_radius=0.05)
    out += [(v, None) for lc in cp.to_json()["layers"]
            for v in (lc.get("symbolic") or {}).values()]
    return out


@pytest.mark.parametrize("name", ROUND_TRIP_MODELS)
def test_real_certificate_formulas_round_trip(name):
    rng = np.random.default_rng(1)
    formulas = _certificate_formulas(name)
    assert formulas
    for text, expr in formulas:
        e = parse(text)
        assert parse(str(e)) == e  # the text it prints reads back to the same tree
        if expr is None:
            continue
        values = {s.name: Fraction(float(v)) for s, v in
                  zip(sorted(expr.free_symbols, key=str), rng.uniform(0.1, 5, 999))}
        lo, hi = enclose(e, values)
        lo0, hi0 = enclose(expr, values)
        assert max(lo, lo0) <= min(hi, hi0)  # both contain the exact value
        assert hi - lo <= 1e-9 * (1 + abs(hi)) or hi == math.inf


_SYMS = [sp.Symbol(n, nonnegative=True) for n in ("a", "b_1", "E", "gamma_x", "I", "pi")]


def _exprs(evaluate: bool) -> st.SearchStrategy:
    """Random formulas. Evaluated ones (as the prover builds them) have exact numbers only: an
    evaluated Float product prints 15 digits of a 53-bit value, so its text is not its value."""
    numbers = [st.integers(0, 1000).map(sp.Integer),
               st.fractions(0, 100, max_denominator=50).map(
                   lambda q: sp.Rational(q.numerator, q.denominator))]
    if not evaluate:
        numbers.append(st.floats(1e-6, 1e6).map(lambda f: sp.Float(f"{f:.15g}")))
    leaves = st.one_of(st.sampled_from(_SYMS), *numbers)
    kw = {"evaluate": evaluate}

    def grow(children):
        return st.one_of(
            st.lists(children, min_size=2, max_size=4).map(lambda a: sp.Add(*a, **kw)),
            st.lists(children, min_size=2, max_size=4).map(lambda a: sp.Mul(*a, **kw)),
            st.tuples(children, children).map(
                lambda a: sp.Add(a[0], sp.Mul(-1, a[1], **kw), **kw)),
            st.tuples(children, children).map(
                lambda a: sp.Mul(a[0], sp.Pow(sp.Add(a[1], 1, **kw), -1, **kw), **kw)),
            st.tuples(children, st.sampled_from([2, 3, -1, -2, sp.Rational(1, 2),
                                                 sp.Rational(3, 2)])).map(
                lambda a: sp.Pow(sp.Add(a[0], 1, **kw), a[1], **kw)),
            children.map(lambda a: sp.sqrt(a, evaluate=evaluate)),
            st.lists(children, min_size=2, max_size=3).map(lambda a: sp.Min(*a, **kw)),
            st.lists(children, min_size=2, max_size=3).map(lambda a: sp.Max(*a, **kw)),
            st.integers(2, 99).map(lambda n: sp.log(n, **kw)),
        )
    return st.recursive(leaves, grow, max_leaves=10)


def _mp(x) -> mpmath.mpf:
    return mpmath.mpf(x) if not isinstance(x, Fraction) else (
        mpmath.mpf(x.numerator) / x.denominator)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.booleans().flatmap(_exprs), st.lists(st.floats(0, 100), min_size=6, max_size=6))
def test_random_expressions_round_trip(expr, vals):
    """str(expr) reads back to an expression enclosing the value of expr (and so does the text
    of what was read: sympy prints unevaluated trees a little differently, e.g. ``- 1*1``)."""
    values = {s.name: Fraction(v) for s, v in zip(_SYMS, vals)}
    try:
        # sympy may evaluate the tree into functions the checker refuses to read (Abs…):
        # refusing is sound; real certificates' formulas are read back in the test above.
        e = parse(str(expr))
        lo, hi = enclose(e, values)
        lo2, hi2 = enclose(parse(str(e)), values)
    except FormulaError:  # e.g. log/sqrt of a negative interval: the checker refuses it
        return
    mpmath.mp.prec = 200
    # Substitute exactly and evaluate the tree first: evalf(subs=...) of an unevaluated tree is
    # numerical, and noise such as sqrt(sqrt(sqrt(a − a))) ≈ 3e-26 is not the true 0.
    # Float leaves become exact rationals too, so that doit() does no 53-bit arithmetic.
    subs = {s: sp.Rational(Fraction(v)) for s, v in zip(_SYMS, vals)}
    subs.update({f: sp.Rational(str(f)) for f in expr.atoms(sp.Float)})
    exact = expr.xreplace(subs).doit().evalf(60)
    if not exact.is_finite or not exact.is_real:
        return
    v = mpmath.mpf(sp.Float(exact, 60)._mpf_)
    tol = mpmath.mpf(10) ** -40 * (1 + abs(v))
    assert _mp(lo) - tol <= v <= _mp(hi) + tol
    assert _mp(lo2) - tol <= v <= _mp(hi2) + tol


@pytest.mark.parametrize("text", [
    "", "   ", "x +", "* x", "(x", "x)", "x y", "Min()", "sqrt(x, y)", "log()", "foo(x)",
    "x[0]", "x.y", "x; y", "'x'", "x == y", "x if y else z", "lambda: 0", "x @ y", "x % y",
    "x // y", "1_000", "0x10", "1j", "nan", "zoo", "Min", "x**", "Rational(1, 2)",
    "Integer(3)", "Float('1.0')", "Symbol('x')", "x,y", "(x,)", "Min(x,)", "\x00", "x\ny",
    "é", "∞", "1" * (2 * 400), "1e1001", "1.5e-9999", "1e" + "9" * 30, "x**1e1999",
])
def test_garbage_is_a_one_line_formula_error(text):
    with pytest.raises(FormulaError) as e:
        parse(text)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


@pytest.mark.parametrize("text", [
    "(" * 10**5 + "x" + ")" * 10**5,
    "sqrt(" * 10**5 + "x" + ")" * 10**5,
    "Min(x, " * 10**5 + "x" + ")" * 10**5,
    "x**" * 10**5 + "x",
    "-(" * 10**5 + "x" + ")" * 10**5,
    "x" + "+x" * (MAX_FORMULA_CHARS // 2),
])
def test_deep_or_long_formulas_are_refused(text):
    limit = sys.getrecursionlimit()
    with pytest.raises(FormulaError):
        parse(text)
    assert sys.getrecursionlimit() == limit


def test_nesting_up_to_the_limit_is_read():
    depth = MAX_FORMULA_DEPTH - 1
    e = parse("(" * depth + "x + 1" + ")" * depth)
    assert enclose(e, {"x": Fraction(2)}) == (3, 3)
    assert parse("-" * 10**4 + "x") == sp.Symbol("x", nonnegative=True)  # unary signs: a loop
    long = "+".join(f"x{i}" for i in range(20_000))
    assert len(parse(long).args) == 20_000


def test_a_large_power_is_not_evaluated():
    with pytest.raises(FormulaError):
        enclose(parse("x**1000000000"), {"x": Fraction(3)})
    with pytest.raises(FormulaError):
        enclose(parse("x**(2**40)"), {"x": Fraction(3)})


def test_numbers_read_as_sympy_reads_them():
    assert parse("3") == sp.Integer(3)
    assert parse("1.5e-7") == sp.Float("1.5e-7")
    assert parse("x**(3/2)").args[1] == sp.Mul(3, sp.Pow(2, -1, evaluate=False), evaluate=False)
    assert parse("oo") is sp.oo and parse("-oo") == -sp.oo
    assert parse("a - b") == sp.Add(sp.Symbol("a", nonnegative=True),
                                     sp.Mul(-1, sp.Symbol("b", nonnegative=True),
                                            evaluate=False), evaluate=False)


@functools.cache
def _real_formulas() -> list[str]:
    return [t for name in ("mlp_gelu", "layernorm_mlp") for t, _ in _certificate_formulas(name)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(0, 5),
       st.text(alphabet="()+-*/,.e0123456789 _xMinMaxsqrtlog'[]:\\\"\x00λ", max_size=8))
def test_mutated_formulas_parse_or_raise_formula_error(pick, where, cut, insert):
    real = _real_formulas()
    text = real[pick % len(real)]
    k = where % (len(text) + 1)
    mutated = text[:k] + insert + text[k + cut:]
    try:
        e = parse(mutated)
    except FormulaError as err:
        assert "\n" not in str(err)
        return
    assert isinstance(e, sp.Expr)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_or_raises_formula_error(text):
    try:
        parse(text)
    except FormulaError:
        pass


@pytest.mark.parametrize("tiny", [1e-20, 1e-30, 3e-17])
def test_log_near_one_contains_the_true_value(tiny):
    """log(1 + a) for tiny a: the end 1 + a is an exact rational whose float is 1.0; a relative
    widening of log(1.0) = 0 gave [−2e-323, 2e-323], excluding the true value ≈ a."""
    lo, hi = enclose(parse("log(1 + A)"), {"A": tiny})
    truth = Fraction(tiny) - Fraction(tiny) ** 2 / 2  # log(1+a) > a − a²/2 for small a > 0
    assert lo <= truth and hi >= Fraction(tiny) * (1 - Fraction(1, 10**6))


def test_log_beyond_float_range():
    lo, hi = enclose(parse("log(1e-300**-11)"), {})  # fuzz F12: OverflowError before
    assert lo <= hi and abs(float(lo) - 3300 * math.log(10)) < 1e-9
