"""Named constants: the input radius R and the enclosure norms B̄ recomputed by the kernel,
operator norms A_k shown by the kernel on the op's own matrix, every other constant re-derived
by its op's rule on the re-propagated enclosures; and each node's formulas against the rule's.

A claimed constant c covers the true one when c ≥ the re-derived upper bound, except the
constants formulas decrease in (:data:`LOWER_BOUND_STEMS`), which must be ≤ the model's."""

from __future__ import annotations

import math
from fractions import Fraction

import sympy as sp  # the rules' formulas are sympy expressions

from boundprop.checker.kernel import (
    box_norm_upper,
    input_radius_upper,
    operator_norm_holds,
    show,
)
from boundprop.checker.result import Recorder, State
from boundprop.exact import as_number
from boundprop.ops.rules import RuleContext
from boundprop.sets import L2Ball

# Constants a formula decreases in: claimed values must not exceed the model's (re-derived) ones.
LOWER_BOUND_STEMS = ("eps_bn", "vlo")


def claim_at_least(ck: Recorder, st: State, name: str, true_upper, how: str,
                   what: str) -> None:
    """Item: the claimed constant ``name`` (0 if not claimed) is ≥ ``true_upper``."""
    c = st.claimed.get(name, Fraction(0))
    ok = c >= true_upper
    st.covered.add(name)
    ck.item(f"constant {name}", ok, how,
            f"{what}: claimed {show(c)} ≥ {show(true_upper)}" if ok else
            f"{what}: claimed {show(c)} is below {show(true_upper)}")


def check_operator_norm(st: State, op, norm: str, claim) -> tuple[str, str]:
    """('independent', detail) if the claim is shown ≥ ‖A‖_p by the kernel on the op's own
    matrix, else ('', why not)."""
    if claim == math.inf:
        return "independent", "no finite claim"
    got = st.prover.witness_matrix(op, norm)
    if got is None:
        return "", "too large to materialise"
    a, rel, what = got
    ok, detail = operator_norm_holds(a, rel, norm, claim)
    return ("independent", f"{detail} on {what}") if ok else ("", detail)


def _input_radius(st: State) -> Fraction | float:
    """R = sup ‖x‖_p over the set (∞ without a set), rounded up by the kernel."""
    s = st.s
    if s is None:
        return math.inf
    ball = (s.center, s.radius) if isinstance(s, L2Ball) else None
    return input_radius_upper(s.lower, s.upper, st.doc["norm"], ball)


def check_input_constants(ck: Recorder, st: State) -> None:
    """R, and the input node's own ℓ (1, or 0 w.r.t. the parameters), L = 0, B ≥ R, in
    ``symbolic.values`` and in ``layers[0]`` (op constants: the identity's 1 and 0)."""
    doc, claimed = st.doc, st.claimed
    r_true = _input_radius(st)
    if "R" in claimed or st.s is not None:
        what = "input radius (global: unbounded)" if st.s is None else \
            f"sup ‖x‖_{doc['norm']} over the set"
        claim_at_least(ck, st, "R", r_true, "independent", what)
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
                    f"claimed {c} ≥ {show(v)}" if ok else f"claimed {c} is below {show(v)}")


def check_named_constants(ck: Recorder, st: State) -> None:
    """Every node's named constants re-derived by its op's rule on the re-propagated
    enclosures (operator norms independently); the node's formulas are the rule's."""
    st.syms, tags = st.prover.node_names(st.net)
    check_input_constants(ck, st)
    radius = sp.Symbol("R", nonnegative=True)
    st.rules_local = [(sp.Integer(0 if st.doc["wrt"] == "params" else 1), sp.Integer(0),
                       radius)]
    st.rules_op = [(sp.Integer(1), sp.Integer(0))]
    for i in range(1, len(st.net.nodes)):
        _check_node(ck, st, i, tags[i])


def _check_node_norms(ck: Recorder, st: State, i: int, t: str) -> dict[str, float]:
    """Node i's operator norm A_t (shown by the kernel; returned as norm → value for the op's
    rule) and its enclosure norm B̄ox_t (recomputed by the kernel from the enclosure)."""
    node, doc, claimed = st.net.nodes[i], st.doc, st.claimed
    a_name, norm, verified = f"A_{t}", doc["norm"], {}
    if a_name in claimed and st.prover.has_operator_norm(node.op):
        p = "2" if doc["wrt"] == "params" else norm
        how, what = check_operator_norm(st, node.op, p, claimed[a_name])
        if how == "independent":
            st.covered.add(a_name)
            ck.item(f"constant {a_name}", True, how, what)
            verified[p] = float(claimed[a_name])  # the op's rule uses it, not its own
    bbox = f"Bbox_{t}"
    if st.boxes is not None and bbox in claimed:
        claim_at_least(ck, st, bbox, box_norm_upper(*st.boxes[i], norm), "independent",
                       f"sup ‖·‖_{norm} of node {node.name}'s enclosure")
    return verified


def _check_node(ck: Recorder, st: State, i: int, t: str) -> None:
    """Node i: its norms, its rule's named constants, its formulas (ℓ, L, B) and op
    constants as the rule gives them (recorded in ``st.rules_local``/``st.rules_op``)."""
    node, syms, boxes, claimed, doc = st.net.nodes[i], st.syms, st.boxes, st.claimed, st.doc
    verified = _check_node_norms(ck, st, i, t)
    rho = doc.get("param_radius")
    ctx = RuleContext(doc["norm"], t, None if boxes is None else
                      [(boxes[j][0][None], boxes[j][1][None]) for j in node.inputs],
                      [syms[j][0] for j in node.inputs], [syms[j][1] for j in node.inputs],
                      [syms[j][2] for j in node.inputs], wrt=doc["wrt"],
                      param_radius=0.0 if rho is None else float(rho),
                      operator_norms=verified or None)
    rule = st.prover.constants_rule(node.op, ctx)
    renames = _check_rule_constants(ck, st, ctx, t, f"A_{t}", node.name)
    lip_e, smooth_e, bound_e, oplip_e, opsmooth_e = (
        e.xreplace(renames) for e in (rule.lipschitz, rule.smoothness, rule.bound,
                                      rule.op_lipschitz, rule.op_smoothness))
    bbox = f"Bbox_{t}"
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


def _check_rule_constants(ck: Recorder, st: State, ctx, t: str, a_name: str,
                          node_name: str) -> dict:
    """The rule's named constants against the claimed ones; the renames of shared names the
    prover made per node."""
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
                    f"{ctx.meaning[s_]} of node {node_name}: claimed {show(c)}"
                    f" {'≤' if c <= Fraction(v) else 'exceeds'} {v!r}")
        else:
            claim_at_least(ck, st, name, as_number(v), "recomputed",
                           f"{ctx.meaning[s_]} of node {node_name}")
    return renames
