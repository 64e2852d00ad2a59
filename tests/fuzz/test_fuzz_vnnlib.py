"""Fuzzing VNN-LIB: structure-aware mutations (tokens, numbers, names, nesting, disjunct
counts, truncation) of the built-in seed and the shared VNN-COMP 2021 properties.

Targets: ``parse_vnnlib`` in-process (returns a Property with finite, ordered boxes and finite
constraint rows — right-hand sides may be ±inf, never NaN — or raises BoundpropError, within
the time limit) and, on a share of the inputs,
``boundprop certify TINY.onnx --vnnlib FILE`` (exit 0/1/2, one-line error)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import strategies as st

from boundprop.errors import BoundpropError
from boundprop.vnnlib import parse_vnnlib
from tests.fuzz import corpus
from tests.fuzz.harness import MODES, call, contract_violation, fuzz, run_cli

TOKEN = re.compile(r"\(|\)|[^\s()]+")
HOSTILE_NUMBERS = ["nan", "NaN", "inf", "-inf", "+inf", "1e308", "-1e308", "1e309", "-1e309",
                   "1e-400", "0x1p3", "1_000", "+1", "--1", "1e", ".", "-.", "1/3", "1.5e+",
                   "9" * 5000, "0." + "0" * 5000 + "1", "1e99999999999", "-0", "00012",
                   "1" + "0" * 400, "(- 1)", "#x10", "1.0.0"]
HOSTILE_NAMES = ["X_999999999", "Y_999999999999999999999", "X_-1", "X_", "Y_00", "X_0x1",
                 "X_٣", "Ｘ_0", "X_1e3", "x_0", "Z_0", "X_0.5", "|X_0|", "X_0;c", "X\u00000"]
HOSTILE_OPS = ["assert", "or", "and", "<=", ">=", "<", ">", "=", "declare-const", "define-fun",
               "not", "+", "-", "*", "/", "=>", "ite", "Real", "Int", "check-sat", "exit",
               "declare-fun", "let", "forall"]


def _tokens(text: str) -> list[str]:
    return TOKEN.findall(text)


class Seed:
    """A seed property as tokens, with the positions of its numbers, names and other atoms."""

    def __init__(self, name: str, text: str, n_in: int, n_out: int) -> None:
        self.name, self.n_in, self.n_out = name, n_in, n_out
        self.toks = _tokens(text)
        self.atoms = [i for i, t in enumerate(self.toks) if t not in "()"] or [0]
        self.numbers = [i for i in self.atoms if re.match(r"[-+.\d]", self.toks[i])] or self.atoms
        self.names = [i for i in self.atoms if re.match(r"[XY]_", self.toks[i])] or self.atoms

    def __repr__(self) -> str:
        return f"Seed({self.name})"


SEEDS = tuple(Seed(*s) for s in corpus.vnnlib_seeds())
BUILTIN = SEEDS[:1]


@st.composite
def vnnlib_inputs(draw, seeds=SEEDS):
    """(text, n_in, n_out): a seed after 1–3 token mutations and at most one large one."""
    seed = draw(st.sampled_from(seeds))
    toks = list(seed.toks)
    for _ in range(draw(st.integers(1, 3))):
        toks = draw(_mutation(seed, toks))
    text = draw(_large(" ".join(toks)))
    n_in, n_out = seed.n_in, seed.n_out
    if draw(st.booleans()):  # the declared sizes or a model of another size
        n_in = draw(st.sampled_from([n_in, 0, 1, n_in + 1, max(n_in - 1, 0)]))
        n_out = draw(st.sampled_from([n_out, 0, 1, n_out + 1]))
    return text, n_in, n_out


def _mutation(seed: Seed, toks: list[str]) -> st.SearchStrategy[list[str]]:
    """One token-level change (the positions come from the seed; clipped to the tokens)."""
    k = st.integers(0, max(len(toks) - 1, 0))

    def at(positions):
        return st.sampled_from(positions).map(lambda i: min(i, max(len(toks) - 1, 0)))

    def put(i, v):
        return toks[:i] + [v] + toks[i + 1:]

    return st.one_of(
        st.builds(put, at(seed.numbers), st.sampled_from(HOSTILE_NUMBERS)),
        st.builds(put, at(seed.names), st.sampled_from(HOSTILE_NAMES)),
        st.builds(put, at(seed.atoms), st.sampled_from(HOSTILE_OPS)),
        st.builds(lambda i: toks[:i] + toks[i + 1:], k),                       # delete
        st.builds(lambda i: toks[:i + 1] + toks[i:], k),                       # duplicate
        st.builds(lambda i, j: toks[:i] + toks[j:j + 1] + toks[i + 1:], k, k),  # copy over
        st.builds(lambda i: toks + [t for t in toks[i:i + 12]], k),           # repeat a run
        st.builds(lambda t: toks + [t], st.text(max_size=20)),                 # junk text
    )


def _large(text: str) -> st.SearchStrategy[str]:
    """Text-level changes: none (most often), truncation, deep or unbalanced nesting, many
    disjuncts, a product of `or`s whose DNF explodes."""
    n = len(text)
    clause = "(or (<= Y_0 0) (>= Y_0 1))"
    return st.one_of(
        st.just(text), st.just(text), st.just(text),
        st.integers(0, n).map(lambda i: text[:i]),
        st.sampled_from([50, 5000, 200_000]).map(lambda d: "(" * d + text + ")" * d),
        st.sampled_from([3, 10_000]).map(lambda d: text + "(" * d),
        st.sampled_from([0, 1, 1000, 100_001]).map(
            lambda m: text + "(assert (or " + "(and (<= Y_0 0))" * m + "))"),
        st.sampled_from([2, 17, 20, 40]).map(
            lambda m: text + "(assert (and " + clause * m + "))"),
    )


def _parse_property(x) -> tuple[str | None, str]:
    text, n_in, n_out = x
    value, o = call(lambda: _parse_or_error(text, n_in, n_out))
    if o.exception:
        return o.exception.split(":")[0] if o.exception.startswith("Hang") else \
            "escaped " + o.exception.split(":")[0], o.exception
    if isinstance(value, str):
        return value, ""
    return None, ""


def _parse_or_error(text: str, n_in: int, n_out: int) -> str | None:
    """None if parse_vnnlib returns a sane Property or raises a one-line BoundpropError;
    otherwise what is wrong."""
    try:
        prop = parse_vnnlib(text, n_in, n_out, name="fuzz.vnnlib")
    except BoundpropError as e:
        return "multi-line error" if "\n" in str(e) else None
    for box, unsafe in prop.cases:
        lo, hi = np.asarray(box.lower), np.asarray(box.upper)
        if lo.size != n_in or not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            return "accepted a box that is not finite or not n_inputs long"
        if np.any(lo > hi):
            return "accepted an empty box (lower > upper)"
        for a, b in unsafe:
            # b = ±inf is a number beyond float range (1e309): the row is then always or never
            # met, which the verifier handles (checked: a model whose real outputs reach 1e309
            # is reported falsified); NaN or a non-finite coefficient is not
            if np.asarray(a).shape[-1] != n_out or not np.all(np.isfinite(a)) or \
                    np.any(np.isnan(b)):
                return "accepted a NaN / non-finite or mis-sized output constraint"
    return None


@pytest.mark.parametrize("mode", MODES)
def test_parse_vnnlib(mode):
    fuzz("vnnlib_parse", mode, vnnlib_inputs(), _parse_property, smoke=150)


@pytest.mark.parametrize("mode", MODES)
def test_certify_vnnlib_cli(mode, seed_dir, tmp_path):
    model = str(seed_dir / "relu.onnx")

    def prop(x):
        text, _, _ = x
        path = tmp_path / "p.vnnlib"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        o = run_cli(["certify", model, "--vnnlib", str(path), "--quiet"])
        return contract_violation(o), o.exception or o.err[-800:]

    fuzz("vnnlib_cli", mode, vnnlib_inputs(seeds=BUILTIN), prop, smoke=25)
