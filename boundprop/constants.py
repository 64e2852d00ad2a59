"""Lipschitz (ℓ), smoothness (L) and boundedness (B) constants w.r.t. the network input.

One topological pass: every node's op gives a ``Rule`` (``boundprop.ops.rules``) — sympy
expressions of its inputs' constants and its own named constants, each with a certified value —
and the interpreter evaluates them (numbers, rounded up) and substitutes them (the global
formulas). It knows nothing about particular ops.

- ``input_set=None``: global constants, over all inputs (B is then finite only after bounded
  ops such as sigmoid or softmax).
- with an input set: local constants on that (convex) set — each op's constants are taken on
  the enclosure of its inputs (a ReLU that is stably off has slope 0, a sigmoid on [3, 5] has
  slope σ'(3)), and B also uses the enclosures.

ℓ has two methods: ``product`` (the chain rule above, layer by layer) and ``enclosure``
(the Clarke Jacobian enclosed in an interval matrix by a backward pass from the outputs,
then the norm of the enclosure: max row sum (ℓ∞), max column sum (ℓ1), or ‖ |J|max ‖₂ (ℓ2)).
The certified ℓ is the smaller; both are reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from boundprop.errors import BoundpropError, UnsupportedModelError
from boundprop.ir import Network
from boundprop.ops.rules import RuleContext, box_norm_upper, check_norm, node_tags
from boundprop.sets import InputSet, L2Ball

# Work limit of the enclosure method: rows × total entries of the nodes it passes through.
ENCLOSURE_BUDGET = 60_000_000
# Global formulas bigger than this (sympy operation count) keep node symbols instead.
FORMULA_LIMIT = 400


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
    values: dict[sp.Symbol, float] = field(repr=False)
    meaning: dict[sp.Symbol, str] = field(repr=False)
    latex_names: dict[sp.Symbol, str] = field(repr=False)
    lipschitz_formula: sp.Expr | None = field(default=None, repr=False)
    smoothness_formula: sp.Expr | None = field(default=None, repr=False)
    bound_formula: sp.Expr | None = field(default=None, repr=False)
    elapsed_s: float = 0.0
    wrt: str = "input"
    param_radius: float | None = None
    output_box: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

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


def _input_radius(s: InputSet | None, norm: str) -> float:
    if s is None:
        return float("inf")
    if isinstance(s, L2Ball) and norm == "2":
        from boundprop.ops.rules import array_norm_upper
        from boundprop.rounding import round_up

        return float(round_up(array_norm_upper(s.center, "2") + s.radius))
    return box_norm_upper((s.lower, s.upper), norm)


def node_symbols(net: Network) -> list[tuple[sp.Symbol, sp.Symbol, sp.Symbol]]:
    out = []
    for t in node_tags([n.name for n in net.nodes]):
        out.append((sp.Symbol(f"l_{t}", nonnegative=True), sp.Symbol(f"L_{t}", nonnegative=True),
                    sp.Symbol(f"B_{t}", nonnegative=True)))
    return out


def param_ball_intervals(net: Network, s: InputSet, rho: float
                         ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval enclosure of every node over x ∈ s and every dense/conv layer's (W, b) in the
    ball ‖(ΔW, Δb)‖_F ≤ ρ around its current value: each output entry of such a layer moves by
    at most |ΔW_i·patch + Δb_i| ≤ ρ·sqrt(‖patch‖² + 1) ≤ ρ·sqrt(max_b sup‖u_b‖₂² + 1)."""
    from boundprop.analysis import input_box, sanitize
    from boundprop.rounding import round_up, widen

    bounds = [input_box(s, "real")]
    for node in net.nodes[1:]:
        boxes = [(bounds[i][0][None], bounds[i][1][None]) for i in node.inputs]
        lo, hi = node.op.interval(*boxes)
        if hasattr(node.op, "param_structure") and rho > 0:
            ulo, uhi = boxes[0]
            mag = np.maximum(np.abs(ulo), np.abs(uhi))[0]
            per = np.sqrt((mag.reshape(mag.shape[0], -1) ** 2).sum(axis=1)).max() \
                if mag.ndim > 1 else np.sqrt((mag**2).sum())
            lo, hi = widen(lo, hi, round_up(rho * np.sqrt(per**2 * (1 + 1e-12) + 1.0)
                                            * (1 + 1e-12)))
        bounds.append(sanitize(lo[0], hi[0]))
    return bounds


def constants(net: Network, input_set: InputSet | None = None, norm: str = "2",
              intervals: str = "linear", enclosure: bool = True, symbolic: bool = True,
              layers: list[tuple[np.ndarray, np.ndarray]] | None = None, wrt: str = "input",
              param_radius: float = 0.0) -> Constants:
    """Certified ℓ, L, B of ``net`` w.r.t. its input (see the module docstring), or with
    ``wrt="params"`` w.r.t. the weights and biases of every dense/conv layer, each in a ball
    of radius ``param_radius`` (Frobenius) around its current value, for inputs in
    ``input_set`` (a data batch is a Box with lower == upper); ℓ2 only.

    ``intervals``: how the local enclosures are computed (``"linear"``: back-substitution,
    tighter, more stable neurons; ``"interval"``: IBP); ignored for global constants.
    ``layers``: precomputed enclosures (e.g. from ``output_bounds``) to reuse.
    """
    from boundprop.ops.rules import parametrized_affine_rule

    t0 = time.perf_counter()
    norm = check_norm(norm)
    if wrt not in ("input", "params"):
        raise BoundpropError(f"unknown wrt '{wrt}'; use input or params")
    params = wrt == "params"
    s = None if input_set is None else input_set.fit(net.input_shape)
    if params:
        if norm != "2":
            raise BoundpropError("constants w.r.t. the parameters are in the ℓ2 (Frobenius) "
                                 "norm only; use norm 2")
        if s is None:
            raise BoundpropError("constants w.r.t. the parameters need the data: give an "
                                 "input set or a batch")
        if not param_radius >= 0 or not np.isfinite(param_radius):
            raise BoundpropError(f"parameter radius must be finite and ≥ 0, got {param_radius}")
        layers = param_ball_intervals(net, s, float(param_radius))
        enclosure = False
    elif s is not None and layers is None:
        from boundprop.analysis import output_bounds

        layers = output_bounds(net, s, method=intervals).layers
    syms = node_symbols(net)
    values: dict[sp.Symbol, float] = {}
    meaning: dict[sp.Symbol, str] = {}
    latex_names: dict[sp.Symbol, str] = {}
    tags = node_tags([n.name for n in net.nodes])
    for i, (ls, Ls, Bs) in enumerate(syms):
        t = tags[i]
        latex_names[ls] = f"\\ell_{{\\mathrm{{{t}}}}}"
        latex_names[Ls] = f"L_{{\\mathrm{{{t}}}}}"
        latex_names[Bs] = f"B_{{\\mathrm{{{t}}}}}"
    radius = sp.Symbol("R", nonnegative=True)
    values[radius] = _input_radius(s, norm)
    meaning[radius] = f"sup ‖x‖_{norm} over the input set"
    latex_names[radius] = "R"
    l0, L0, B0 = syms[0]
    l_in = 0.0 if params else 1.0
    values[l0], values[L0], values[B0] = l_in, 0.0, values[radius]
    rules_local: list[tuple[sp.Expr, sp.Expr, sp.Expr]] = [
        (sp.Integer(int(l_in)), sp.Integer(0), radius)]
    out_layers = [LayerConstants(0, net.nodes[0].name, "input", "input", l_in, 0.0,
                                 values[radius], 1.0, 0.0,
                                 None if layers is None else float(np.max(
                                     layers[0][1] - layers[0][0], initial=0.0)), None)]
    shared: dict[str, float] = {}
    first_reason: str | None = None
    for i, node in enumerate(net.nodes[1:], start=1):
        t = tags[i]
        boxes = None if layers is None else [(layers[j][0][None], layers[j][1][None])
                                             for j in node.inputs]
        ctx = RuleContext(norm, t, boxes, [syms[j][0] for j in node.inputs],
                          [syms[j][1] for j in node.inputs], [syms[j][2] for j in node.inputs])
        try:
            if params and hasattr(node.op, "param_structure"):
                c_bil, copies = node.op.param_structure()
                rule = parametrized_affine_rule(ctx, node.op.operator_norm_upper("2"), c_bil,
                                                copies, float(param_radius),
                                                node.op.offset_norm_upper("2"))
            else:
                rule = node.op.constants_rule(ctx)
        except NotImplementedError:
            raise UnsupportedModelError(
                f"node '{node.name}' ({node.op.kind}) has no Lipschitz/smoothness rule; "
                "constants cannot be certified for this model") from None
        # Shared names (ε of batch norms) must mean one value; otherwise make them per-node.
        renames = {}
        for sym, v in ctx.values.items():
            name = str(sym)
            if not name.endswith(f"_{t}"):
                if name in shared and shared[name] != v:
                    new = sp.Symbol(f"{name}_{t}", nonnegative=True)
                    renames[sym] = new
                    ctx.latex[new] = f"{ctx.latex[sym]}_{{\\mathrm{{{t}}}}}"
                    ctx.meaning[new] = ctx.meaning[sym]
                    continue
                shared[name] = v
        for sym, v in ctx.values.items():
            target = renames.get(sym, sym)
            values[target] = v
            meaning[target] = ctx.meaning[sym]
            latex_names[target] = ctx.latex.get(target, ctx.latex[sym])
        exprs = [e.xreplace(renames) for e in (rule.lipschitz, rule.smoothness, rule.bound,
                                                rule.op_lipschitz, rule.op_smoothness)]
        lip_e, smooth_e, bound_e, oplip_e, opsmooth_e = exprs
        ls, Ls, Bs = syms[i]
        width = None
        if layers is not None:
            lo, hi = layers[i]
            box_b = box_norm_upper((lo, hi), norm)
            bsym = sp.Symbol(f"Bbox_{t}", nonnegative=True)
            values[bsym] = box_b
            meaning[bsym] = f"sup ‖·‖_{norm} of node {node.name}'s enclosure"
            latex_names[bsym] = f"\\bar B_{{\\mathrm{{{t}}}}}"
            bound_e = sp.Min(bound_e, bsym) if box_b != float("inf") else bound_e
            width = float(np.max(hi - lo, initial=0.0))
        values[ls] = upper_value(lip_e, values)
        values[Ls] = upper_value(smooth_e, values)
        values[Bs] = upper_value(bound_e, values)
        reason = rule.reason if values[Ls] == float("inf") else None
        if values[Ls] == float("inf") and reason is None:
            reason = next((lc.reason for lc in out_layers[::-1]
                           if lc.index in node.inputs and lc.reason), None)
        if reason and first_reason is None:
            first_reason = reason
        rules_local.append((lip_e, smooth_e, bound_e))
        out_layers.append(LayerConstants(
            i, node.name, node.op.kind, node.op.family, values[ls], values[Ls], values[Bs],
            upper_value(oplip_e, values), upper_value(opsmooth_e, values), width, reason,
            {"lipschitz": str(lip_e), "smoothness": str(smooth_e), "bound": str(bound_e)}))
    out = net.output
    l_prod = values[syms[out][0]]
    l_enc, note = None, None
    if enclosure:
        l_enc, note = jacobian_enclosure_norm(net, layers, norm)
    lipschitz = l_prod if l_enc is None else min(l_prod, l_enc)
    res = Constants(norm=norm, local=s is not None, lipschitz=lipschitz,
                    lipschitz_product=l_prod, lipschitz_enclosure=l_enc, enclosure_note=note,
                    smoothness=values[syms[out][1]],
                    smoothness_reason=first_reason if values[syms[out][1]] == float("inf")
                    else None,
                    bound=values[syms[out][2]], layers=out_layers, values=values,
                    meaning=meaning, latex_names=latex_names, wrt=wrt,
                    param_radius=float(param_radius) if params else None,
                    output_box=None if layers is None else layers[out])
    if symbolic:
        full = _global_formulas(net, syms, rules_local)
        enc_sym = None
        if l_enc is not None:
            enc_sym = sp.Symbol("Jenc", nonnegative=True)
            values[enc_sym] = l_enc
            meaning[enc_sym] = f"‖Jacobian enclosure‖_{norm} (enclosure method)"
            latex_names[enc_sym] = "\\|\\mathcal{J}\\|"
        lo_f, sm_f, bo_f = full[out]
        res.lipschitz_formula = lo_f if enc_sym is None else sp.Min(lo_f, enc_sym)
        res.smoothness_formula, res.bound_formula = sm_f, bo_f
    res.elapsed_s = time.perf_counter() - t0
    return res


def _global_formulas(net, syms, rules_local):
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


def jacobian_enclosure_norm(net: Network, layers, norm: str) -> tuple[float | None, str | None]:
    """‖J‖_p over an interval-matrix enclosure of every Clarke Jacobian on the set (or over all
    inputs when ``layers`` is None), by a backward pass from the outputs. Returns
    (bound, None) or (None, why it does not apply)."""
    from boundprop.norms import spectral_norm_upper
    from boundprop.rounding import gamma, round_up

    k_out = int(np.prod(net.output_shape))
    work = k_out * sum(int(np.prod(n.shape)) for n in net.nodes)
    if work > ENCLOSURE_BUDGET:
        return None, (f"enclosure skipped: {k_out} outputs × {work // k_out} node entries "
                      f"exceeds the work budget")
    boxes = layers
    if boxes is None:
        boxes = [(np.full(n.shape, -np.inf), np.full(n.shape, np.inf)) for n in net.nodes]
    acc: dict[int, tuple[np.ndarray, np.ndarray]] = {
        net.output: (np.eye(k_out).reshape(k_out, *net.output_shape),
                     np.zeros((k_out, *net.output_shape)))}
    for i in range(len(net.nodes) - 1, 0, -1):
        if i not in acc:
            continue
        node = net.nodes[i]
        c, r = acc.pop(i)
        ins = [(boxes[j][0][None], boxes[j][1][None]) for j in node.inputs]
        with np.errstate(invalid="ignore", over="ignore"):
            parts = node.op.jacobian_backward(c, r, ins)
        if parts is None:
            return None, f"enclosure not available: no Jacobian rule for {node.op.kind}"
        for j, (cj, rj) in zip(node.inputs, parts):
            if j in acc:
                c0, r0 = acc[j]
                acc[j] = (c0 + cj, round_up(r0 + rj + gamma(2) * np.abs(c0 + cj)))
            else:
                acc[j] = (cj, rj)
    if 0 not in acc:
        return 0.0, None  # the output does not depend on the input
    c, r = acc[0]
    mag = round_up(np.abs(c).reshape(k_out, -1) + r.reshape(k_out, -1))
    if not np.all(np.isfinite(mag)):
        return float("inf"), None
    n = mag.shape[1]
    if norm == "inf":
        return float(round_up(mag.sum(axis=1).max() * (1 + gamma(n + 2)))), None
    if norm == "1":
        return float(round_up(mag.sum(axis=0).max() * (1 + gamma(k_out + 2)))), None
    # J = C + E with |E| ≤ R: ‖J‖₂ ≤ ‖ |C| + R ‖₂ and ‖J‖₂ ≤ ‖C‖₂ + ‖R‖₂ (the latter keeps
    # the centre's cancellations).
    split = round_up(spectral_norm_upper(c.reshape(k_out, -1))
                     + spectral_norm_upper(r.reshape(k_out, -1)))
    return float(min(spectral_norm_upper(mag), split)), None


LOSSES = ("squared", "cross_entropy")


@dataclass
class ObjectiveConstants:
    """Constants of F(θ) = loss(ψ(θ)) on the parameter ball: ℓ_F ≤ ℓ_f ℓ_ψ and
    L_F ≤ L_ψ ℓ_f + ℓ_ψ² L_f (chain rule), so gradient descent with step 1/L_F decreases F
    while it stays in the ball (descent lemma)."""

    loss: str
    reduction: str
    loss_lipschitz: float
    loss_smoothness: float
    lipschitz: float
    smoothness: float
    targets: np.ndarray | None = field(default=None, repr=False)

    @property
    def step_size(self) -> float:
        from boundprop.rounding import round_down

        if not np.isfinite(self.smoothness):
            return 0.0  # no smoothness constant: no certified step
        return float(round_down(1.0 / self.smoothness)) if self.smoothness > 0 else float("inf")

    def to_json(self) -> dict:
        def num(x):
            return float(x) if np.isfinite(x) else "inf"
        return {"loss": self.loss, "reduction": self.reduction,
                "loss_lipschitz": num(self.loss_lipschitz),
                "loss_smoothness": num(self.loss_smoothness),
                "lipschitz": num(self.lipschitz), "smoothness": num(self.smoothness),
                "step_size": num(self.step_size),
                "targets": None if self.targets is None else
                np.asarray(self.targets, dtype=np.float64).reshape(-1).tolist()}


def _targets(targets: object, loss: str, out_shape: tuple[int, ...]) -> np.ndarray:
    """The loss targets as float64, checked: real and finite; for cross-entropy, integral
    class indices in [0, C) where C is the size of the output's last axis."""
    try:
        t = np.asarray(targets)
        if t.dtype.kind not in "biuf":
            raise TypeError
        t = t.astype(np.float64)
    except (TypeError, ValueError):
        raise BoundpropError(f"{loss} targets are not real numbers; give a numeric array") \
            from None
    if not np.all(np.isfinite(t)):
        k = int(np.argmax(~np.isfinite(t).reshape(-1)))
        raise BoundpropError(f"{loss} targets are not finite (flat index {k}: "
                             f"{t.reshape(-1)[k]}); give finite numbers")
    if loss == "cross_entropy":
        classes = out_shape[-1] if out_shape else 1
        bad = (t != np.round(t)) | (t < 0) | (t >= classes)
        if np.any(bad):
            k = int(np.argmax(bad.reshape(-1)))
            raise BoundpropError(f"cross-entropy target {t.reshape(-1)[k]:g} (flat index {k}) "
                                 f"is not a class index: the model has {classes} classes, give "
                                 f"integers 0..{classes - 1}")
    return t


def objective_constants(c: Constants, loss: str, targets: np.ndarray,
                        reduction: str = "mean") -> ObjectiveConstants:
    """Loss constants on the certified output enclosure, composed with the network's.

    squared: f(y) = ½‖y − t‖² (sum over entries; ``mean`` divides by the batch size n):
    ∇f = y − t, so ℓ_f = sup‖y − t‖₂ over the enclosure, L_f = 1.
    cross_entropy (softmax over the last axis, ``targets`` the class of each row): per row
    ∇ = p − e_y with ‖p − e_y‖₂² ≤ 2 and Hessian diag(p) − ppᵀ with norm ≤ 1/2, so ℓ_f ≤
    sqrt(2·rows), L_f ≤ 1/2 (block diagonal). Both divided by n for ``mean``."""
    from boundprop.ops.rules import array_norm_upper
    from boundprop.rounding import round_up

    if loss not in LOSSES:
        raise BoundpropError(f"unknown loss '{loss}'; use {' or '.join(LOSSES)}")
    if reduction not in ("mean", "sum"):
        raise BoundpropError(f"unknown reduction '{reduction}'; use mean or sum")
    if c.output_box is None:
        raise BoundpropError("loss constants need the output enclosure (an input set)")
    lo, hi = c.output_box
    n = lo.shape[0] if lo.ndim > 1 else 1
    div = float(n) if reduction == "mean" else 1.0
    t = _targets(targets, loss, lo.shape)
    if loss == "squared":
        if t.shape != lo.shape:
            raise BoundpropError(f"targets of shape {t.shape} do not match the output "
                                 f"shape {lo.shape}")
        lf = array_norm_upper(np.maximum(np.abs(hi - t), np.abs(lo - t)), "2")
        Lf = 1.0
    else:
        rows = int(np.prod(lo.shape[:-1])) if lo.ndim > 1 else 1
        if t.size != rows:
            raise BoundpropError(f"cross-entropy targets need one class per output row "
                                 f"({rows}), got {t.size}")
        lf = float(round_up(np.sqrt(2.0 * rows)))
        Lf = 0.5
    lf, Lf = float(round_up(lf / div)), float(round_up(Lf / div))
    lip = float(round_up(lf * c.lipschitz))
    smooth = float(round_up(round_up(c.smoothness * lf) + round_up(round_up(c.lipschitz**2) * Lf)))
    return ObjectiveConstants(loss, reduction, lf, Lf, lip, smooth, t)
