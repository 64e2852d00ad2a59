"""Compositions, checked in exact rational interval arithmetic (:mod:`boundprop.exact`).

Every per-layer formula (the op rule's, re-derived in :mod:`boundprop.checker.named`) and the
global formulas (composed here from them) are evaluated at the *claimed*, already verified
values of their inputs; each claimed result must be ≥ the exact upper end. The formulas are
monotone (increasing in every constant except those of ``LOWER_BOUND_STEMS``), so claimed
constants that are upper bounds give claimed results that are upper bounds. Also the
objective's constants (loss constants by the kernel's vector norms) and its step size."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import sympy as sp  # the formulas are sympy expressions

from boundprop.checker.kernel import neuron_lmi_holds, show, vector_norm_upper
from boundprop.checker.result import Recorder, State
from boundprop.constants import FORMULA_LIMIT
from boundprop.domains.constants import LMI_SYMBOL
from boundprop.exact import FormulaError, _isqrt_bounds, as_number, enclose


def _layer_claims(st: State, lc: dict, which: str, sy) -> list[tuple[str, object]]:
    """The claimed values of a layer's constant: in ``layers[k]`` and, for ℓ, L, B, under the
    node's symbol in ``symbolic.values``."""
    claims = [("", lc.get(which))]
    if sy is not None and str(sy) in st.claimed:
        claims.append((f" (symbolic.values.{sy})", st.claimed[str(sy)]))
    return claims


def check_compositions(ck: Recorder, st: State) -> None:
    """Every layer's ℓ, L, B (and op constants) ≥ its formula evaluated exactly at the claimed,
    already verified values of its inputs; node symbols in ``symbolic.values`` too."""
    layers = st.doc["layers"]
    st.values = dict(st.claimed)
    for k, lc in enumerate(layers):
        for which, sy in zip(("lipschitz", "smoothness", "bound"), st.syms[k]):
            st.values[str(sy)] = as_number(lc[which])
    st.layer_hi = [{}]
    for k in range(1, len(layers)):
        lc, his = layers[k], {}
        checks = list(zip(("lipschitz", "smoothness", "bound"), st.rules_local[k], st.syms[k]))
        checks += [(w, e, None) for w, e in zip(("op_lipschitz", "op_smoothness"),
                                                 st.rules_op[k])]
        for which, expr, sy in checks:
            try:
                hi = enclose(expr, st.values)[1]
            except FormulaError as e:
                ck.item(f"layer {k} ({lc['node']}) {which}", False, "exact", str(e))
            his[which] = hi
            for where, c in _layer_claims(st, lc, which, sy):
                if c is None and sy is None:
                    continue  # no op constant claimed
                c = as_number(c) if not isinstance(c, Fraction) and c != math.inf else c
                if not c >= hi:
                    ck.item(f"layer {k} ({lc['node']}) {which}{where}", False, "exact",
                            f"claimed {show(c)} but its formula {str(expr)[:60]} gives up "
                            f"to {show(hi)}")
        st.layer_hi.append(his)
        st.covered.update(str(x) for x in st.syms[k])
    ck.item("layer compositions", True, "exact",
            f"{5 * (len(layers) - 1)} formulas re-evaluated in rational arithmetic")


def _check_upper_of_lipschitz(ck: Recorder, st: State, name: str, claim, product) -> None:
    """A claimed bound on ℓ (the global ℓ, the enclosure method's, ``Jenc``, ``Jlmi``): ≥ the
    verified layer product, or ≥ the verified LipSDP-Neuron bound, or else ≥ the Jacobian
    enclosure re-derived by the prover's code."""
    if claim >= product:
        ck.item(name, True, "exact", f"claimed {show(claim)} ≥ the layer product "
                f"{show(product)}")
        return
    if st.lmi is not None and claim >= st.lmi:
        ck.item(name, True, "exact", f"claimed {show(claim)} ≥ the verified LipSDP-Neuron "
                f"bound {show(st.lmi)}")
        return
    if st.doc["wrt"] == "params":  # the Jacobian enclosure is w.r.t. the input
        ck.item(name, False, "exact", f"claimed {show(claim)} is below the layer product "
                f"{show(product)} (w.r.t. the parameters there is no enclosure method)")
    enc, note = st.enclosure()
    ok = enc is not None and claim >= Fraction(enc)
    ck.item(name, ok, "recomputed",
            f"claimed {show(claim)} ≥ re-derived Jacobian enclosure {enc!r}" if ok else
            f"claimed {show(claim)} is below the layer product {show(product)} and the "
            f"re-derived Jacobian enclosure {enc if enc is not None else note}")


def _curvature_value(st: State) -> tuple[float | None, str | None]:
    """The curvature method's bound re-derived by the prover's code (w.r.t. the input only)."""
    if st.doc["wrt"] == "params":
        return None, "w.r.t. the parameters there is no curvature method"
    return st.curvature()


def _at_least(claim, value: float | None) -> bool:
    """Whether the claim (exact, or math.inf) is ≥ the re-derived float ``value`` (None: no
    value, never)."""
    if value is None:
        return False
    return claim == math.inf if value == math.inf else claim >= Fraction(value)


def _check_curvature_claim(ck: Recorder, st: State, name: str, claim) -> None:
    """A claimed curvature-method bound on L (``smoothness_curvature``, ``Lcurv``): ≥ the
    bound re-derived by the prover's code."""
    curv, note = _curvature_value(st)
    ok = _at_least(claim, curv)
    ck.item(name, ok, "recomputed",
            f"claimed {show(claim)} ≥ re-derived curvature bound {curv!r}" if ok else
            f"claimed {show(claim)} is below the re-derived curvature bound "
            f"{curv if curv is not None else note}")


def _check_global_smoothness(ck: Recorder, st: State, claim, composed) -> None:
    """The global L: ≥ the output node's verified composed L, or else ≥ the curvature bound
    re-derived by the prover's code."""
    if claim >= composed:
        ck.item("global smoothness", True, "exact", f"claimed {show(claim)} ≥ the composed "
                f"output node's {show(composed)}")
        return
    curv, note = _curvature_value(st)
    ok = _at_least(claim, curv)
    ck.item("global smoothness", ok, "recomputed",
            f"claimed {show(claim)} ≥ re-derived curvature bound {curv!r}" if ok else
            f"claimed {show(claim)} is below the composed {show(composed)} and the "
            f"re-derived curvature bound {curv if curv is not None else note}")


def check_lmi(ck: Recorder, st: State) -> None:
    """``lipschitz_lmi`` with ``lmi_multipliers``: the kernel's verified positive-definiteness
    test of the LipSDP-Neuron matrix (:func:`neuron_lmi_holds`) on the model's chain (its
    matrices and slope restrictions from the prover's ``mlp_chain``); sets ``st.lmi`` to the
    verified value. ℓ2 w.r.t. the input only; multipliers without a value are rejected."""
    doc = st.doc
    claim, ts = doc.get("lipschitz_lmi"), doc.get("lmi_multipliers")
    st.lmi = None
    if claim is None:
        ck.item("lmi_multipliers", ts is None, "independent",
                "no LipSDP-Neuron claim" if ts is None else
                "multipliers given without lipschitz_lmi")
        return
    if doc["norm"] != "2" or doc["wrt"] != "input" or ts is None:
        ck.item("lipschitz_lmi", False, "independent",
                "a LipSDP-Neuron bound is an ℓ2 bound w.r.t. the input, with its multipliers")
    u = as_number(claim)
    if u == math.inf:
        st.lmi = u
        ck.item("lipschitz_lmi", True, "exact", "no finite claim")
        return
    chain, why = st.prover.mlp_chain(st.net)
    if chain is None:
        ck.item("lipschitz_lmi", False, "recomputed", f"the model is not an MLP chain: {why}")
    ok, how = neuron_lmi_holds(chain.weights, chain.slopes, ts, float(u))
    ck.item("lipschitz_lmi", ok, "independent",
            f"‖f(x) − f(x')‖₂ ≤ {show(u)}‖x − x'‖₂: {how}" if ok else how)
    st.lmi = u


def check_globals(ck: Recorder, st: State) -> None:
    """Global ℓ, L, B against the output node's; ``lipschitz_product`` against the exact
    layer product; the LipSDP-Neuron claim by the kernel; ``lipschitz_enclosure``, ``Jenc``
    and ``Jlmi`` against the product, the verified LipSDP-Neuron bound or the re-derived
    enclosure; L against the output node's composed L or the re-derived curvature bound,
    ``smoothness_curvature`` and ``Lcurv`` against the latter; the global formulas (and
    their ``*_free`` forms) against the composed rules."""
    doc, net = st.doc, st.net
    out = doc["layers"][net.output]
    c = as_number(doc["bound"])
    ck.item("global bound", c >= as_number(out["bound"]), "exact",
            f"claimed {show(c)}, output node's {show(as_number(out['bound']))}")
    _check_global_smoothness(ck, st, as_number(doc["smoothness"]),
                             as_number(out["smoothness"]))
    if doc.get("smoothness_curvature") is not None:
        _check_curvature_claim(ck, st, "smoothness_curvature",
                               as_number(doc["smoothness_curvature"]))
    if "Lcurv" in st.claimed:
        st.covered.add("Lcurv")
        _check_curvature_claim(ck, st, "constant Lcurv", st.claimed["Lcurv"])
    product = as_number(out["lipschitz"])
    exact_product = st.layer_hi[net.output].get("lipschitz", product) if net.output else product
    check_lmi(ck, st)
    _check_upper_of_lipschitz(ck, st, "global lipschitz", as_number(doc["lipschitz"]), product)
    if doc.get("lipschitz_product") is not None:
        c = as_number(doc["lipschitz_product"])
        ck.item("lipschitz_product", c >= exact_product, "exact",
                f"claimed {show(c)} {'≥' if c >= exact_product else 'is below'} the layer "
                f"product {show(exact_product)} (exact)")
    if doc.get("lipschitz_enclosure") is not None:
        _check_upper_of_lipschitz(ck, st, "lipschitz_enclosure",
                                  as_number(doc["lipschitz_enclosure"]), product)
    for name in ("Jenc", LMI_SYMBOL):
        if name in st.claimed:
            st.covered.add(name)
            _check_upper_of_lipschitz(ck, st, f"constant {name}", st.claimed[name], product)
    _check_global_formulas(ck, st)


def compose_global_formulas(net, syms, rules_local) -> list[tuple]:
    """Each node's ℓ, L, B as expressions of the named constants only: its rule's formulas
    with its inputs' symbols ℓ_j, L_j, B_j replaced by their inputs' composed formulas, in
    node order; a composed formula with more than FORMULA_LIMIT operations is kept as the
    node's own symbol (its formula is in the per-layer table), as the prover prints it."""
    full: list[tuple] = [rules_local[0]]
    for i in range(1, len(rules_local)):
        subs = {syms[j][k]: full[j][k] for j in net.nodes[i].inputs for k in range(3)}
        triple = []
        for k, e in enumerate(rules_local[i]):
            f = e.xreplace(subs)
            triple.append(syms[i][k] if sp.count_ops(f) > FORMULA_LIMIT else f)
        full.append(tuple(triple))
    return full


def _check_global_formulas(ck: Recorder, st: State) -> None:
    """The certificate's global formulas: the composition of the verified rules (with the
    enclosure's ``Jenc`` when claimed), each evaluated exactly ≤ the claimed constant."""
    doc, net = st.doc, st.net
    sym = doc.get("symbolic") or {}
    full = compose_global_formulas(net, st.syms, st.rules_local)[net.output]
    for name in ("Jenc", LMI_SYMBOL):  # as the prover adds them: Min(product, Jenc, Jlmi)
        if name in st.claimed:
            full = (sp.Min(full[0], sp.Symbol(name, nonnegative=True)), *full[1:])
    if "Lcurv" in st.claimed:
        full = (full[0], sp.Min(full[1], sp.Symbol("Lcurv", nonnegative=True)), full[2])
    free = doc.get("free") or []
    names = {str(x) for e in full for x in e.free_symbols}
    missing = [f for f in free if f not in names]
    ck.item("free constants", not missing, "exact",
            f"{len(free)} free constant(s) of the formulas" if not missing else
            f"'{missing[0]}' is listed as free but no global formula uses it")
    for which, expr in zip(("lipschitz", "smoothness", "bound"), full):
        text = sym.get(which)
        if text is None:
            if sym.get(f"{which}_free") is not None:
                ck.item(f"global {which} formula", False, "exact",
                        f"{which}_free without the {which} formula")
            continue
        if text != str(expr):
            ck.item(f"global {which} formula", False, "recomputed",
                    f"the certificate's formula {text[:60]} is not the composition of the "
                    f"ops' rules {str(expr)[:60]}")
        try:
            hi = enclose(expr, st.values)[1]
        except FormulaError as e:
            ck.item(f"global {which} formula", False, "exact", str(e))
        c = as_number(doc[which])
        ck.item(f"global {which} formula", c >= hi, "exact",
                f"the formula gives ≤ {show(hi)}" if c >= hi else
                f"claimed {show(c)} but the formula gives up to {show(hi)}")
        if f"{which}_free" in sym:
            _check_free_formula(ck, st, which, expr, free)


def _check_free_formula(ck: Recorder, st: State, which: str, expr, free) -> None:
    """``symbolic.<which>_free``: the verified formula with every named constant except the
    free ones replaced by its claimed (verified) value, as the prover prints it."""
    subs = {sp.Symbol(k, nonnegative=True): sp.oo if v == math.inf else sp.Float(float(v), 17)
            for k, v in st.claimed.items() if k not in free}
    want = str(expr.xreplace(subs))
    text = st.doc["symbolic"][f"{which}_free"]
    ck.item(f"global {which}_free formula", text == want, "exact",
            f"the verified formula at the verified values, {len(free)} constant(s) free"
            if text == want else
            f"the certificate's {text[:60]} is not the verified formula at the claimed values "
            f"{want[:60]}")


def _loss_constants_needed(ck: Recorder, doc: dict) -> tuple:
    """(ℓ_f, L_f) the loss needs on the claimed output bounds: squared loss ½‖y − t‖²/n:
    ℓ_f = ‖max(|hi − t|, |lo − t|)‖₂/n, L_f = 1/n; cross-entropy over ``rows`` rows:
    ℓ_f = √(2 rows)/n, L_f = ½/n (n: the batch size with reduction ``mean``, else 1)."""
    o = doc["objective"]
    lo = np.asarray(doc["output_bounds"]["lower"])
    hi = np.asarray(doc["output_bounds"]["upper"])
    shape = tuple(doc["model"]["output_shape"])
    n = shape[0] if len(shape) > 1 else 1
    div = Fraction(n) if o["reduction"] == "mean" else Fraction(1)
    if o["loss"] == "squared":
        t = o.get("targets")
        if t is None or len(t) != lo.size:
            ck.item("objective loss constants", False, "independent",
                    "squared loss without targets of the output's size")
        t = np.asarray(t, dtype=np.float64)
        dev = np.maximum(np.abs(hi - t), np.abs(lo - t))
        return vector_norm_upper(dev * (1 + 2.0**-52), "2") / div, Fraction(1) / div
    rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return _isqrt_bounds(Fraction(2 * rows))[1] / div, Fraction(1, 2) / div


def check_objective(ck: Recorder, doc: dict) -> None:
    """The loss constants, ℓ_F ≥ ℓ_f ℓ, L_F ≥ L ℓ_f + ℓ² L_f, and step size ≤ 1/L_F."""
    o = doc["objective"]
    n_lip, n_smooth = as_number(doc["lipschitz"]), as_number(doc["smoothness"])
    lf, Lf = as_number(o["loss_lipschitz"]), as_number(o["loss_smoothness"])
    need_l, need_L = _loss_constants_needed(ck, doc)
    ck.item("objective loss constants", lf >= need_l and Lf >= need_L, "independent",
            f"ℓ_f {show(lf)} ≥ {show(need_l)}, L_f {show(Lf)} ≥ {show(need_L)}")
    lip_f, smooth_f = as_number(o["lipschitz"]), as_number(o["smoothness"])
    need_smooth = n_smooth * lf + n_lip * n_lip * Lf if n_smooth != math.inf else math.inf
    ck.item("objective constants", lip_f >= lf * n_lip and smooth_f >= need_smooth, "exact",
            "ℓ_F ≥ ℓ_f ℓ and L_F ≥ L ℓ_f + ℓ² L_f")
    step = as_number(o["step_size"])
    ok = (step == 0) or (smooth_f == 0) or (smooth_f != math.inf and step != math.inf
                                            and step * smooth_f <= 1)
    ck.item("objective step size", ok, "exact", f"step {show(step)} ≤ 1/L_F = 1/{show(smooth_f)}")
