"""The constants domain: certified Lipschitz (ℓ), smoothness (L) and boundedness (B) constants
of every node, by one topological pass of each op's ``constants_rule``.

Each rule (``boundprop.ops.rules``) gives sympy expressions of the node's inputs' constants
and of its own named constants, each with a certified value; this pass evaluates them
(:func:`upper_value`: numbers, rounded up) and, for the global formulas, substitutes them
(:func:`global_formulas`). With enclosures (a local analysis) a node's B is also at most the
norm bound of its enclosure. It knows nothing about particular ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import sympy as sp  # this domain is symbolic: sympy is its arithmetic, not an optional extra

from boundprop.domains.curvature import curvature_smoothness
from boundprop.domains.jacobian import jacobian_enclosure_norm
from boundprop.domains.lipsdp import lipschitz_lmi
from boundprop.domains.walker import Box, input_boxes
from boundprop.errors import BoundpropError, UnsupportedModelError
from boundprop.ir import Network, Node
from boundprop.ops.rules import (
    Rule,
    RuleContext,
    array_norm_upper,
    box_norm_upper,
    node_tags,
)
from boundprop.rounding import round_up
from boundprop.sets import InputSet, L2Ball

# Global formulas bigger than this (sympy operation count) keep node symbols instead.
FORMULA_LIMIT = 400
# The named constant of the verified LipSDP-Neuron bound in the ℓ formula.
LMI_SYMBOL = "Jlmi"

Symbols = tuple[sp.Symbol, sp.Symbol, sp.Symbol]  # (ℓ, L, B) of one node


def upper_value(expr: sp.Expr, values: dict[sp.Symbol, float]) -> float:
    """Certified float upper bound of a monotone expression in nonnegative constants, from
    upper bounds of those constants: exact rational substitution, 30-digit evaluation, then
    one ulp up (covers the evaluation error)."""
    if expr == sp.oo:
        return float("inf")
    subs = {}
    for s in expr.free_symbols:
        v = values[s]
        subs[s] = sp.oo if v == float("inf") else sp.Rational(v)
    e = expr.xreplace(subs)
    if e.has(sp.oo) or e.has(sp.zoo) or e.has(sp.nan):
        e = sp.simplify(e)
        if e.is_finite is not True:
            return float("inf")
    v = e.evalf(30)
    if v.is_real is not True or v.is_finite is not True:
        return float("inf")  # 0·∞ and the like: no finite claim
    f = float(v)
    return float(np.nextafter(max(f, 0.0), np.inf)) if f != 0.0 else 0.0


@dataclass
class LayerConstants:
    """One node's certified constants (as a function of the network input)."""

    index: int
    node: str
    op: str
    family: str
    lipschitz: float
    smoothness: float
    bound: float
    op_lipschitz: float
    op_smoothness: float
    interval_width: float | None
    reason: str | None
    formulas: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        def num(x):
            return None if x is None else (x if np.isfinite(x) else "inf")
        return {"node": self.node, "op": self.op, "family": self.family,
                "lipschitz": num(self.lipschitz), "smoothness": num(self.smoothness),
                "bound": num(self.bound), "op_lipschitz": num(self.op_lipschitz),
                "op_smoothness": num(self.op_smoothness),
                "interval_width": num(self.interval_width),
                "smoothness_reason": self.reason, "symbolic": self.formulas}


@dataclass
class Constants:
    """Certified ℓ, L, B of the network output w.r.t. its input, in the p-norm ``norm``."""

    norm: str
    local: bool
    lipschitz: float
    lipschitz_product: float
    lipschitz_enclosure: float | None
    enclosure_note: str | None
    smoothness: float
    smoothness_reason: str | None
    bound: float
    layers: list[LayerConstants]
    smoothness_curvature: float | None = None
    curvature_note: str | None = None
    values: dict[sp.Symbol, float] = field(default_factory=dict, repr=False)
    meaning: dict[sp.Symbol, str] = field(default_factory=dict, repr=False)
    latex_names: dict[sp.Symbol, str] = field(default_factory=dict, repr=False)
    lipschitz_formula: sp.Expr | None = field(default=None, repr=False)
    smoothness_formula: sp.Expr | None = field(default=None, repr=False)
    bound_formula: sp.Expr | None = field(default=None, repr=False)
    elapsed_s: float = 0.0
    wrt: str = "input"
    param_radius: float | None = None
    output_box: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    # Global ℓ2 only: the verified LipSDP-Neuron bound and its multipliers (domains/lipsdp.py).
    lipschitz_lmi: float | None = None
    lmi_multipliers: list[np.ndarray] | None = field(default=None, repr=False)
    lmi_note: str | None = None

    def formula(self, which: str = "lipschitz", free: list[str] | tuple[str, ...] = ()
                ) -> sp.Expr:
        """The global formula of ``which`` (lipschitz, smoothness, bound) with every named
        constant replaced by its certified value except those listed in ``free``."""
        expr = getattr(self, f"{which}_formula")
        if expr is None:
            raise BoundpropError("no formula: run with symbolic=True")
        subs = {s: (sp.oo if v == float("inf") else sp.Float(v, 17))
                for s, v in self.values.items() if str(s) not in free}
        return expr.xreplace(subs)

    def latex(self, which: str = "lipschitz", free: tuple[str, ...] | None = None) -> str:
        expr = getattr(self, f"{which}_formula") if free is None else self.formula(which, free)
        return sp.latex(expr, symbol_names=self.latex_names)


@dataclass
class SymbolTable:
    """The named constants of one analysis: certified value, meaning and LaTeX name of each."""

    values: dict[sp.Symbol, float] = field(default_factory=dict)
    meaning: dict[sp.Symbol, str] = field(default_factory=dict)
    latex: dict[sp.Symbol, str] = field(default_factory=dict)

    def add(self, sym: sp.Symbol, value: float, meaning: str, latex: str) -> None:
        self.values[sym], self.meaning[sym], self.latex[sym] = value, meaning, latex


def input_radius(s: InputSet | None, norm: str) -> float:
    """R = sup ‖x‖_p over the input set (∞ without one); on an ℓ2 ball in the 2-norm,
    ‖c‖₂ + r."""
    if s is None:
        return float("inf")
    if isinstance(s, L2Ball) and norm == "2":
        return float(round_up(array_norm_upper(s.center, "2") + s.radius))
    return box_norm_upper((s.lower, s.upper), norm)


def node_symbols(net: Network) -> list[Symbols]:
    """The symbols (ℓ_t, L_t, B_t) of every node, t its tag."""
    out = []
    for t in node_tags([n.name for n in net.nodes]):
        out.append((sp.Symbol(f"l_{t}", nonnegative=True), sp.Symbol(f"L_{t}", nonnegative=True),
                    sp.Symbol(f"B_{t}", nonnegative=True)))
    return out


def global_formulas(net: Network, syms: list[Symbols],
                    rules_local: list[tuple[sp.Expr, sp.Expr, sp.Expr]]
                    ) -> list[tuple[sp.Expr, sp.Expr, sp.Expr]]:
    """Each node's constants as expressions of the named constants only (node symbols
    substituted away), unless an expression grows past FORMULA_LIMIT: then later nodes
    refer to that node's symbol (its own formula is in the per-layer table)."""
    full: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = []
    for i, (lip_e, smooth_e, bound_e) in enumerate(rules_local):
        if i == 0:
            full.append(rules_local[0])
            continue
        subs = {}
        for j in net.nodes[i].inputs:
            for k in range(3):
                subs[syms[j][k]] = full[j][k]
        triple = []
        for k, e in enumerate((lip_e, smooth_e, bound_e)):
            f = e.xreplace(subs)
            if sp.count_ops(f) > FORMULA_LIMIT:
                f = syms[i][k]
            triple.append(f)
        full.append(tuple(triple))
    return full


def _node_rule(node: Node, ctx: RuleContext) -> Rule:
    """The node's constants rule (w.r.t. the parameters when ``ctx.wrt == "params"``: a
    parametric op's rule then covers its (W, b) in the ball of radius ``ctx.param_radius``)."""
    try:
        return node.op.constants_rule(ctx)
    except NotImplementedError:
        raise UnsupportedModelError(
            f"node '{node.name}' ({node.op.kind}) has no Lipschitz/smoothness rule; "
            "constants cannot be certified for this model") from None


def _merge_named(ctx: RuleContext, tag: str, shared: dict[str, float],
                 table: SymbolTable) -> dict[sp.Symbol, sp.Symbol]:
    """Add the rule's named constants to the table. Shared names (ε of batch norms) must mean
    one value; one already used with another value is renamed per node (returned renames)."""
    renames = {}
    for sym, v in ctx.values.items():
        name = str(sym)
        if not name.endswith(f"_{tag}"):
            if name in shared and shared[name] != v:
                new = sp.Symbol(f"{name}_{tag}", nonnegative=True)
                renames[sym] = new
                ctx.latex[new] = f"{ctx.latex[sym]}_{{\\mathrm{{{tag}}}}}"
                ctx.meaning[new] = ctx.meaning[sym]
                continue
            shared[name] = v
    for sym, v in ctx.values.items():
        target = renames.get(sym, sym)
        table.values[target] = v
        table.meaning[target] = ctx.meaning[sym]
        table.latex[target] = ctx.latex.get(target, ctx.latex[sym])
    return renames


class ConstantsPass:
    """One pass of the constants rules over ``net`` in the p-norm ``norm``, on the enclosures
    ``layers`` (None: global, over all inputs); w.r.t. the input, or w.r.t. the parameters of
    every parametric layer in a Frobenius ball of radius ``param_radius`` (not None)."""

    def __init__(self, net: Network, s: InputSet | None, norm: str,
                 layers: list[Box] | None, param_radius: float | None):
        self.net, self.norm, self.layers, self.param_radius = net, norm, layers, param_radius
        self.syms = node_symbols(net)
        self.tags = node_tags([n.name for n in net.nodes])
        self.table = SymbolTable()
        for t, (ls, Ls, Bs) in zip(self.tags, self.syms):
            self.table.latex[ls] = f"\\ell_{{\\mathrm{{{t}}}}}"
            self.table.latex[Ls] = f"L_{{\\mathrm{{{t}}}}}"
            self.table.latex[Bs] = f"B_{{\\mathrm{{{t}}}}}"
        radius = sp.Symbol("R", nonnegative=True)
        values = self.table.values
        self.table.add(radius, input_radius(s, norm), f"sup ‖x‖_{norm} over the input set",
                       "R")
        l0, L0, B0 = self.syms[0]
        l_in = 0.0 if param_radius is not None else 1.0
        values[l0], values[L0], values[B0] = l_in, 0.0, values[radius]
        self.rules_local: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = [
            (sp.Integer(int(l_in)), sp.Integer(0), radius)]
        self.layer_constants = [LayerConstants(
            0, net.nodes[0].name, "input", "input", l_in, 0.0, values[radius], 1.0, 0.0,
            None if layers is None else float(np.max(layers[0][1] - layers[0][0],
                                                     initial=0.0)), None)]
        self.shared: dict[str, float] = {}
        self.first_reason: str | None = None

    def run(self) -> ConstantsPass:
        """Every node's constants, in topological order."""
        for i in range(1, len(self.net.nodes)):
            self._node(i)
        return self

    def _context(self, i: int) -> RuleContext:
        node = self.net.nodes[i]
        boxes = None if self.layers is None else input_boxes(self.layers, node)
        syms = self.syms
        params = self.param_radius is not None
        return RuleContext(self.norm, self.tags[i], boxes, [syms[j][0] for j in node.inputs],
                           [syms[j][1] for j in node.inputs], [syms[j][2] for j in node.inputs],
                           wrt="params" if params else "input",
                           param_radius=self.param_radius if params else 0.0)

    def _enclosure_bound(self, i: int, bound_e: sp.Expr) -> tuple[sp.Expr, float | None]:
        """With enclosures: B_i ≤ sup ‖·‖ of node i's enclosure (the symbol Bbox_t), and the
        enclosure's largest width."""
        if self.layers is None:
            return bound_e, None
        lo, hi = self.layers[i]
        t, node = self.tags[i], self.net.nodes[i]
        box_b = box_norm_upper((lo, hi), self.norm)
        bsym = sp.Symbol(f"Bbox_{t}", nonnegative=True)
        self.table.add(bsym, box_b, f"sup ‖·‖_{self.norm} of node {node.name}'s enclosure",
                       f"\\bar B_{{\\mathrm{{{t}}}}}")
        bound_e = sp.Min(bound_e, bsym) if box_b != float("inf") else bound_e
        return bound_e, float(np.max(hi - lo, initial=0.0))

    def _node(self, i: int) -> None:
        node, t, values = self.net.nodes[i], self.tags[i], self.table.values
        ctx = self._context(i)
        rule = _node_rule(node, ctx)
        renames = _merge_named(ctx, t, self.shared, self.table)
        lip_e, smooth_e, bound_e, oplip_e, opsmooth_e = [
            e.xreplace(renames) for e in (rule.lipschitz, rule.smoothness, rule.bound,
                                          rule.op_lipschitz, rule.op_smoothness)]
        ls, Ls, Bs = self.syms[i]
        bound_e, width = self._enclosure_bound(i, bound_e)
        values[ls] = upper_value(lip_e, values)
        values[Ls] = upper_value(smooth_e, values)
        values[Bs] = upper_value(bound_e, values)
        reason = rule.reason if values[Ls] == float("inf") else None
        if values[Ls] == float("inf") and reason is None:
            reason = next((lc.reason for lc in self.layer_constants[::-1]
                           if lc.index in node.inputs and lc.reason), None)
        if reason and self.first_reason is None:
            self.first_reason = reason
        self.rules_local.append((lip_e, smooth_e, bound_e))
        self.layer_constants.append(LayerConstants(
            i, node.name, node.op.kind, node.op.family, values[ls], values[Ls], values[Bs],
            upper_value(oplip_e, values), upper_value(opsmooth_e, values), width, reason,
            {"lipschitz": str(lip_e), "smoothness": str(smooth_e), "bound": str(bound_e)}))

    def result(self, s: InputSet | None, enclosure: bool, symbolic: bool) -> Constants:
        """The network output's constants: ℓ the smallest of the product (chain rule), the
        Jacobian-enclosure bound if ``enclosure`` and, for global ℓ2 constants w.r.t. the
        input, the verified LipSDP-Neuron bound; L the smaller of the composition and, if
        ``enclosure``, the curvature method's bound; with ``symbolic`` the global formulas."""
        net, values, out = self.net, self.table.values, self.net.output
        l_prod = values[self.syms[out][0]]
        l_enc, note = None, None
        l_curv, curv_note = None, None
        if enclosure:
            l_enc, note = jacobian_enclosure_norm(net, self.layers, self.norm)
            l_curv, curv_note = curvature_smoothness(
                net, self.layers, self.norm, [lc.op_smoothness for lc in self.layer_constants])
        params = self.param_radius is not None
        lmi = lipschitz_lmi(net) if (s is None and self.norm == "2" and not params) else None
        l_lmi = None if lmi is None else lmi.value
        smooth = values[self.syms[out][1]]
        if l_curv is not None:
            smooth = min(smooth, l_curv)
        res = Constants(norm=self.norm, local=s is not None,
                        lipschitz=min(x for x in (l_prod, l_enc, l_lmi) if x is not None),
                        lipschitz_product=l_prod, lipschitz_enclosure=l_enc,
                        enclosure_note=note, smoothness=smooth,
                        smoothness_curvature=l_curv, curvature_note=curv_note,
                        smoothness_reason=self.first_reason if smooth == float("inf")
                        else None, bound=values[self.syms[out][2]],
                        layers=self.layer_constants, values=values,
                        meaning=self.table.meaning, latex_names=self.table.latex,
                        wrt="params" if params else "input",
                        param_radius=float(self.param_radius) if params else None,
                        output_box=None if self.layers is None else self.layers[out],
                        lipschitz_lmi=l_lmi,
                        lmi_multipliers=None if lmi is None else lmi.multipliers,
                        lmi_note=None if lmi is None else lmi.note)
        if symbolic:
            self._formulas(res, l_enc, l_curv, l_lmi)
        return res

    def _formulas(self, res: Constants, l_enc: float | None, l_curv: float | None,
                  l_lmi: float | None) -> None:
        """The output's global formulas; ℓ's is the minimum of the product formula and, when
        they exist, Jenc (enclosure) and Jlmi (LipSDP-Neuron); L's min(composed formula,
        Lcurv) with the curvature method."""
        full = global_formulas(self.net, self.syms, self.rules_local)
        lo_f, sm_f, bo_f = full[self.net.output]
        if l_enc is not None:
            enc_sym = sp.Symbol("Jenc", nonnegative=True)
            self.table.add(enc_sym, l_enc, f"‖Jacobian enclosure‖_{self.norm} (enclosure "
                           "method)", "\\|\\mathcal{J}\\|")
            lo_f = sp.Min(lo_f, enc_sym)
        if l_lmi is not None:
            lmi_sym = sp.Symbol(LMI_SYMBOL, nonnegative=True)
            self.table.add(lmi_sym, l_lmi, "global ℓ2 Lipschitz bound by a verified "
                           "LipSDP-Neuron certificate (lmi_multipliers)",
                           "\\ell_{\\mathrm{LMI}}")
            lo_f = sp.Min(lo_f, lmi_sym)
        if l_curv is not None and np.isfinite(l_curv):
            curv_sym = sp.Symbol("Lcurv", nonnegative=True)
            self.table.add(curv_sym, l_curv, f"‖D²y‖ bound of the curvature method "
                           f"(per-neuron second-order chain rule, {self.norm}-norm)",
                           "L_{\\mathrm{curv}}")
            sm_f = sp.Min(sm_f, curv_sym)
        res.lipschitz_formula = lo_f
        res.smoothness_formula, res.bound_formula = sm_f, bo_f
