"""VNN-LIB property files (the VNN-COMP 2021 subset) → input boxes and an unsafe output region.

A file declares inputs ``X_i`` and outputs ``Y_j`` (``(declare-const X_0 Real)``) and asserts
constraints whose conjunction describes a *counterexample*: an input in the box whose output lies
in the unsafe region. Supported: ``assert`` of ``<= >= < > =`` between linear terms (numbers,
variables, ``(+ ...)``, ``(- ...)``, ``(* c e)``), ``and``/``or`` nested arbitrarily (the file is
brought to disjunctive normal form), input constraints that bound a single ``X_i``. Strict and
non-strict comparisons are both read as ``≤``. ``check-sat``/``get-model``/``exit``/``set-*``
commands are ignored.

The PyPI package ``vnnlib`` (1.0.2) parses VNN-LIB 2.0 (``declare-network``) only and rejects
every VNN-COMP 2021 file at its first ``declare-const``, hence this parser.

Every error is a :class:`VnnlibError` with a one-line message ``FILE:LINE: what``. Refused:
a path that is not a regular file (FIFO, device, folder) or is over the size cap, parentheses
nested deeper than ``MAX_NESTING``, numbers beyond the float range (``nan``/``inf`` are not
numbers in VNN-LIB), constraints whose arithmetic overflows, more than ``MAX_DISJUNCTS``
disjuncts in normal form. Reading is linear in the file's size (20,000 input boxes of 5 inputs:
about 5 s).
"""

from __future__ import annotations

import bisect
import math
import os
import re
import sys
from dataclasses import dataclass
from itertools import product
from pathlib import Path

import numpy as np
from tqdm import tqdm

from boundprop.errors import BoundpropError
from boundprop.safe_io import read_input_text
from boundprop.sets import Box

# At most this many disjuncts after bringing the file to DNF (a product of `or`s can explode).
MAX_DISJUNCTS = 100_000
# At most this many nested parentheses (VNN-COMP files nest 4 deep; the reader recurses).
MAX_NESTING = 100
# A property with at least this many input-box disjuncts shows a progress bar (on a terminal).
PROGRESS_MIN_BOXES = 1000

_TOKEN = re.compile(r";[^\n]*|(\()|(\))|([^\s();]+)")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z")
_VAR = re.compile(r"([XY])_(0|[1-9]\d{0,8})\Z")
_IGNORED = {"check-sat", "get-model", "exit", "set-info", "set-logic", "set-option"}
_COMPARISONS = {"<=", ">=", "<", ">", "="}


class VnnlibError(BoundpropError):
    """A VNN-LIB file is malformed, outside the supported subset, or does not fit the model."""


Conjunction = tuple[np.ndarray, np.ndarray]  # (A, b): the conjunction of rows A_k·y ≤ b_k


@dataclass(frozen=True, eq=False)
class Property:
    """A VNN-LIB property: counterexamples are inputs x in ``box`` with y = f(x) in ``unsafe``,
    for one of the ``cases``.

    ``cases`` is a list of ``(box, unsafe)``: ``box`` a :class:`~boundprop.sets.Box` of flat
    lower/upper bounds (``n_inputs`` values), ``unsafe`` a list of conjunctions (a disjunction),
    each ``(A, b)`` with ``A`` of shape ``(K, n_outputs)``: the conjunction of ``A·y ≤ b``
    (y the flattened output). Cases with the same box are merged.
    """

    cases: list[tuple[Box, list[Conjunction]]]
    n_inputs: int
    n_outputs: int
    path: str = "<string>"

    @property
    def boxes(self) -> list[Box]:
        """The input boxes (a disjunction)."""
        return [box for box, _ in self.cases]

    @property
    def unsafe(self) -> list[Conjunction]:
        """The unsafe output region, when every box shares the same one (all 2021 files)."""
        if not self.cases:
            return []
        first = self.cases[0][1]
        for _, u in self.cases[1:]:
            if len(u) != len(first) or any(
                    a.shape != a0.shape or not (np.array_equal(a, a0) and np.array_equal(b, b0))
                    for (a, b), (a0, b0) in zip(u, first)):
                raise VnnlibError(f"{self.path}: the unsafe output region differs between its "
                                  f"{len(self.cases)} input boxes; use Property.cases")
        return first

    def __repr__(self) -> str:
        n_conj = sum(len(u) for _, u in self.cases)
        return (f"Property({self.path!r}, {self.n_inputs} inputs, {self.n_outputs} outputs, "
                f"{len(self.cases)} box(es), {n_conj} unsafe conjunction(s))")


class _List(list):
    """A parenthesised expression; ``pos`` is the offset of its '('."""

    __slots__ = ("pos",)


class _Atom(str):
    """A token; ``pos`` is its offset in the file."""


@dataclass
class _Constraint:
    """coeffs·v + const ≤ 0, v ranging over ('X', i) / ('Y', j); pos: offset of its comparison."""

    coeffs: dict[tuple[str, int], float]
    const: float
    pos: int


class _Parser:
    def __init__(self, text: str, name: str, n_inputs: int, n_outputs: int) -> None:
        self.text, self.name = text, name
        self.n_inputs, self.n_outputs = int(n_inputs), int(n_outputs)
        self._newlines: list[int] | None = None
        self.declared: dict[str, int] = {}  # variable name -> offset of its declaration

    # -- error reporting -------------------------------------------------------------------
    def line(self, pos: int) -> int:
        if self._newlines is None:
            self._newlines = [m.start() for m in re.finditer("\n", self.text)]
        return bisect.bisect_right(self._newlines, pos - 1) + 1 if pos >= 0 else 1

    def error(self, pos: int, msg: str) -> VnnlibError:
        return VnnlibError(f"{self.name}:{self.line(pos)}: {msg}")

    # -- reading ---------------------------------------------------------------------------
    def read(self) -> list[_List]:
        stack: list[_List] = []
        top: list[_List] = []
        for m in _TOKEN.finditer(self.text):
            kind = m.lastindex
            if kind == 1:  # "("
                node = _List()
                node.pos = m.start()
                stack.append(node)
                if len(stack) > MAX_NESTING:
                    raise self.error(m.start(), f"expressions nested more than {MAX_NESTING} "
                                                "deep; flatten the (and …)/(or …) nesting")
            elif kind == 2:  # ")"
                if not stack:
                    raise self.error(m.start(), "unbalanced parenthesis: ')' without a matching "
                                                "'('")
                node = stack.pop()
                (stack[-1] if stack else top).append(node)
            elif kind == 3:  # an atom
                if not stack:
                    raise self.error(m.start(), f"unexpected token '{m.group()[:40]}' outside "
                                                "of a command")
                atom = _Atom(m.group())
                atom.pos = m.start()
                stack[-1].append(atom)
        if stack:
            raise self.error(stack[-1].pos, "unbalanced parenthesis: this '(' is never closed")
        return top

    def head(self, e: _List) -> _Atom:
        if not e:
            raise self.error(e.pos, "empty expression '()'")
        h = e[0]
        if not isinstance(h, _Atom):
            raise self.error(e.pos, "expected an operator or command name after '('")
        return h

    def number(self, e: _Atom) -> float:
        """A decimal number token as a finite float."""
        if len(e) > 400:
            raise self.error(e.pos, f"number '{e[:20]}…' has {len(e)} characters; write it "
                                    "with at most 17 significant digits")
        v = float(e)
        if not math.isfinite(v):
            raise self.error(e.pos, f"number '{e[:40]}' is beyond the float range (±1.8e308)")
        return v

    # -- commands --------------------------------------------------------------------------
    def declare(self, e: _List) -> None:
        if len(e) != 3 or not isinstance(e[1], _Atom) or not isinstance(e[2], _Atom):
            raise self.error(e.pos, "expected (declare-const NAME Real)")
        name, sort = e[1], e[2]
        m = _VAR.match(name)
        if not m:
            raise self.error(name.pos, f"unsupported variable name '{name[:40]}' (inputs are "
                                       "X_0, X_1, …, outputs Y_0, Y_1, …)")
        if sort != "Real":
            raise self.error(sort.pos, f"variable {name} has sort '{sort[:40]}'; only Real is "
                                       "supported")
        kind, idx = m.group(1), int(m.group(2))
        limit = self.n_inputs if kind == "X" else self.n_outputs
        if idx >= limit:
            what = "inputs" if kind == "X" else "outputs"
            raise self.error(name.pos, f"property uses {name} but the model has {limit} {what}")
        self.declared.setdefault(str(name), name.pos)

    def linear(self, e) -> tuple[dict[tuple[str, int], float], float]:
        """A linear term as (coefficients, constant)."""
        if isinstance(e, _Atom):
            if _NUMBER.match(e):
                return {}, self.number(e)
            m = _VAR.match(e)
            if m:
                if str(e) not in self.declared:
                    raise self.error(e.pos, f"variable {e} is used but never declared")
                return {(m.group(1), int(m.group(2))): 1.0}, 0.0
            raise self.error(e.pos, f"unparsable token '{e[:40]}' (expected a number or a "
                                    "variable X_i / Y_j)")
        op = self.head(e)
        args = [self.linear(a) for a in e[1:]]
        if op == "+":
            if not args:
                raise self.error(e.pos, "'+' needs at least one argument")
            return _add(args, 1.0)
        if op == "-":
            if not args:
                raise self.error(e.pos, "'-' needs at least one argument")
            if len(args) == 1:
                return _scale(args[0], -1.0)
            return _add([args[0]] + [_scale(a, -1.0) for a in args[1:]], 1.0)
        if op == "*":
            if not args:
                raise self.error(e.pos, "'*' needs at least one argument")
            factor, term = 1.0, None
            for c, k in args:
                if not c:
                    factor *= k
                elif term is None:
                    term = (c, k)
                else:
                    raise self.error(e.pos, "a product of two variables is not linear")
            return ({}, factor) if term is None else _scale(term, factor)
        if op in _COMPARISONS or op in ("and", "or"):
            raise self.error(op.pos, f"'{op}' where a numeric term was expected")
        raise self.error(op.pos, f"unknown operator '{op[:40]}' in a term (+, -, * are "
                                 "supported)")

    def dnf(self, e) -> list[list[_Constraint]]:
        """A formula as a disjunction of conjunctions of constraints."""
        if isinstance(e, _Atom):
            if e == "true":
                return [[]]
            if e == "false":
                return []
            raise self.error(e.pos, f"unparsable token '{e[:40]}' where a formula was expected")
        op = self.head(e)
        if op in _COMPARISONS:
            if len(e) != 3:
                raise self.error(e.pos, f"'{op}' takes 2 arguments, got {len(e) - 1}")
            lhs, rhs = self.linear(e[1]), self.linear(e[2])
            le = _sub(lhs, rhs)
            ge = _sub(rhs, lhs)
            if not all(map(math.isfinite, (le[1], *le[0].values()))):
                raise self.error(op.pos, "this constraint overflows the float range (a "
                                         "coefficient or constant beyond ±1.8e308)")
            if op in ("<=", "<"):
                return [[_Constraint(*le, op.pos)]]
            if op in (">=", ">"):
                return [[_Constraint(*ge, op.pos)]]
            return [[_Constraint(*le, op.pos), _Constraint(*ge, op.pos)]]
        if op == "and":
            out: list[list[_Constraint]] = [[]]
            for a in e[1:]:
                d = self.dnf(a)
                if len(out) * len(d) > MAX_DISJUNCTS:
                    raise self.error(e.pos, f"the formula has more than {MAX_DISJUNCTS} "
                                            "disjuncts in normal form")
                out = [x + y for x, y in product(out, d)]
            return out
        if op == "or":
            return [c for a in e[1:] for c in self.dnf(a)]
        if op in ("+", "-", "*"):
            raise self.error(op.pos, f"'{op}' term where a formula was expected")
        raise self.error(op.pos, f"unknown operator '{op[:40]}' in a formula (and, or, <=, >=, "
                                 "<, >, = are supported)")

    # -- the property ----------------------------------------------------------------------
    def parse(self) -> Property:
        common: list[_Constraint] = []
        disjunctive: list[tuple[int, list[list[_Constraint]]]] = []
        for cmd in self.read():
            op = self.head(cmd)
            if op == "declare-const":
                self.declare(cmd)
            elif op == "assert":
                if len(cmd) != 2:
                    raise self.error(cmd.pos, f"'assert' takes 1 formula, got {len(cmd) - 1}")
                d = self.dnf(cmd[1])
                if len(d) == 1:
                    common.extend(d[0])
                else:
                    disjunctive.append((cmd.pos, d))
            elif op in _IGNORED:
                continue
            else:
                raise self.error(op.pos, f"unknown command '{op[:40]}' (declare-const and "
                                         "assert are supported)")
        self.check_inputs_declared()

        lo, hi = np.full(self.n_inputs, -np.inf), np.full(self.n_inputs, np.inf)
        lo_pos, hi_pos = np.full(self.n_inputs, -1), np.full(self.n_inputs, -1)
        base_rows = self.apply(common, lo, hi, lo_pos, hi_pos)
        if base_rows is None:
            raise self.error(common[0].pos if common else 0,
                             "the assertions are contradictory: there is nothing to check")

        combos: list[list[_Constraint]] = [[]]
        for pos, d in disjunctive:
            if len(combos) * len(d) > MAX_DISJUNCTS:
                raise self.error(pos, f"the property has more than {MAX_DISJUNCTS} disjuncts in "
                                      "normal form")
            combos = [x + y for x, y in product(combos, d)]

        groups: dict[tuple[bytes, bytes], tuple[Box, list[Conjunction]]] = {}
        first_empty: VnnlibError | None = None
        for extra in progress(combos, f"reading {os.path.basename(self.name)}"):
            clo, chi, clp, chp = lo.copy(), hi.copy(), lo_pos.copy(), hi_pos.copy()
            rows = self.apply(extra, clo, chi, clp, chp)
            if rows is None:  # a constant constraint is false: this disjunct is impossible
                continue
            self.check_bounded(clo, chi, clp, chp)
            bad = np.flatnonzero(clo > chi)
            if bad.size:
                k = int(bad[0])
                lines = f"lines {self.line(int(clp[k]))} and {self.line(int(chp[k]))}"
                first_empty = first_empty or self.error(
                    int(max(clp[k], chp[k])), f"X_{k} has lower bound {float(clo[k])!r} > upper "
                    f"bound {float(chi[k])!r} ({lines}): the input box is empty")
                continue
            a, b = self.rows_to_matrix(base_rows + rows)
            key = (clo.tobytes(), chi.tobytes())
            if key not in groups:
                groups[key] = (Box(clo, chi), [])
            groups[key][1].append((a, b))
        if not groups and first_empty is not None:
            raise first_empty
        return Property(cases=list(groups.values()), n_inputs=self.n_inputs,
                        n_outputs=self.n_outputs, path=self.name)

    def check_inputs_declared(self) -> None:
        xs = [int(n[2:]) for n in self.declared if n[0] == "X"]
        missing = sorted(set(range(self.n_inputs)) - set(xs))
        if missing:
            last = max((p for n, p in self.declared.items() if n[0] == "X"), default=0)
            raise self.error(last, f"the property declares {len(xs)} inputs but the model has "
                                   f"{self.n_inputs} (X_{missing[0]} is not declared)")

    def check_bounded(self, lo, hi, lo_pos, hi_pos) -> None:
        for arr, what in ((lo, "lower"), (hi, "upper")):
            bad = np.flatnonzero(~np.isfinite(arr))
            if bad.size:
                k = int(bad[0])
                raise self.error(self.declared[f"X_{k}"], f"input X_{k} has no {what} bound "
                                 f"(every input needs both, e.g. (assert (>= X_{k} 0)))")

    def apply(self, constraints, lo, hi, lo_pos, hi_pos) -> list[_Constraint] | None:
        """Tighten the input box by the input constraints; return the output ones (None if a
        constant constraint is false)."""
        rows = []
        for c in constraints:
            kinds = {v[0] for v in c.coeffs}
            if not kinds:
                if c.const > 0:
                    return None
                continue
            if kinds == {"Y"}:
                rows.append(c)
                continue
            if "Y" in kinds:
                raise self.error(c.pos, "a constraint mixing inputs X and outputs Y is not "
                                        "supported")
            if len(c.coeffs) != 1:
                raise self.error(c.pos, "only bounds on a single input are supported, not linear "
                                        "constraints between inputs")
            ((_, i), w), = c.coeffs.items()
            bound = -c.const / w + 0.0  # w·X_i + const ≤ 0 (+ 0.0: no -0.0)
            if not math.isfinite(bound):
                raise self.error(c.pos, f"the bound on X_{i} overflows the float range")
            if w > 0 and bound <= hi[i]:
                hi[i], hi_pos[i] = bound, c.pos
            elif w < 0 and bound >= lo[i]:
                lo[i], lo_pos[i] = bound, c.pos
        return rows

    def rows_to_matrix(self, rows: list[_Constraint]) -> Conjunction:
        a = np.zeros((len(rows), self.n_outputs))
        b = np.empty(len(rows))
        for k, c in enumerate(rows):
            for (_, j), w in c.coeffs.items():
                a[k, j] += w
            b[k] = -c.const
        return a, b


def progress(items: list, desc: str, unit: str = "box"):
    """``items``, with a progress bar on stderr when it is a terminal and there are at least
    ``PROGRESS_MIN_BOXES`` of them (20,000 boxes take seconds to read, minutes to verify)."""
    if len(items) < PROGRESS_MIN_BOXES or not sys.stderr.isatty():
        return items
    return tqdm(items, desc=desc, unit=unit, leave=False, file=sys.stderr)


def _add(terms, sign: float) -> tuple[dict[tuple[str, int], float], float]:
    coeffs: dict[tuple[str, int], float] = {}
    const = 0.0
    for c, k in terms:
        for v, w in c.items():
            coeffs[v] = coeffs.get(v, 0.0) + sign * w
        const += sign * k
    return {v: w for v, w in coeffs.items() if w != 0.0}, const


def _sub(p, q) -> tuple[dict[tuple[str, int], float], float]:
    """p − q."""
    coeffs = dict(p[0])
    for v, w in q[0].items():
        coeffs[v] = coeffs.get(v, 0.0) - w
    if 0.0 in coeffs.values():
        coeffs = {v: w for v, w in coeffs.items() if w != 0.0}
    return coeffs, p[1] - q[1]


def _scale(term, s: float) -> tuple[dict[tuple[str, int], float], float]:
    c, k = term
    return {v: w * s for v, w in c.items() if w * s != 0.0}, k * s


def parse_vnnlib(text: str, n_inputs: int, n_outputs: int, name: str = "<string>") -> Property:
    """Parse VNN-LIB text for a model with ``n_inputs`` inputs and ``n_outputs`` outputs."""
    return _Parser(text, name, n_inputs, n_outputs).parse()


def load_vnnlib(path: str | os.PathLike, n_inputs: int, n_outputs: int) -> Property:
    """Read a VNN-LIB file for a model with ``n_inputs`` (flattened) inputs and ``n_outputs``
    (flattened) outputs.

    Raises:
        VnnlibError: one line, ``FILE:LINE: what``.
    """
    path = Path(path)
    try:  # a regular file under the size cap: a FIFO or /dev/zero is refused, never read
        text = read_input_text(path, "VNN-LIB property", hint="give a .vnnlib text file")
    except VnnlibError:
        raise
    except BoundpropError as e:
        raise VnnlibError(str(e)) from None
    return parse_vnnlib(text, n_inputs, n_outputs, name=str(path))


def _num(x: float) -> str:
    return repr(float(x))


def format_vnnlib(prop: Property) -> str:
    """VNN-LIB text for ``prop`` (``parse_vnnlib`` reads it back to the same property)."""
    lines = [f"(declare-const X_{i} Real)" for i in range(prop.n_inputs)]
    lines += [f"(declare-const Y_{j} Real)" for j in range(prop.n_outputs)]

    def box_terms(box: Box) -> list[str]:
        lo, hi = box.lower.reshape(-1), box.upper.reshape(-1)
        return [t for i in range(prop.n_inputs)
                for t in (f"(>= X_{i} {_num(lo[i])})", f"(<= X_{i} {_num(hi[i])})")]

    def row(a_k: np.ndarray, b_k: float) -> str:
        terms = [f"(* {_num(w)} Y_{j})" for j, w in enumerate(a_k) if w != 0.0]
        lhs = "0.0" if not terms else terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})"
        return f"(<= {lhs} {_num(b_k)})"

    disjuncts = []
    for box, unsafe in prop.cases:
        bt = box_terms(box)
        for a, b in unsafe:
            disjuncts.append("(and " + " ".join(bt + [row(a[k], b[k])
                                                      for k in range(len(b))]) + ")")
    if not disjuncts:
        lines.append("(assert false)")
    else:
        lines.append("(assert (or")
        lines += [f"    {d}" for d in disjuncts]
        lines.append("))")
    return "\n".join(lines) + "\n"
