"""The vocabulary of the constants rules: what each primitive says about its own Lipschitz
constant ℓ_φ, smoothness L_φ and output bound, and how the chain composes them.

A rule is written in sympy, in terms of the *input node's* symbols (ℓ_u, L_u, B_u) and of the
op's own named constants (``ctx.symbol``), each carrying its certified float value (an upper
bound). The interpreter (``boundprop.constants``) substitutes numbers to get certified values
and substitutes expressions to get the global formulas. All norms are the same p-norm on inputs
and outputs (p = 2, ∞ or 1), over the whole tensor (batch axis included).

Composition (g then φ, any induced norm):
    ℓ_{φ∘g} ≤ ℓ_φ ℓ_g,   L_{φ∘g} ≤ L_φ ℓ_g² + ℓ_φ L_g,   B_{φ∘g} ≤ ‖φ(0)‖ + ℓ_φ B_g.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import sympy as sp

from boundprop.errors import BoundpropError
from boundprop.rounding import gamma, round_down, round_up

NORMS = ("2", "inf", "1")
Interval = tuple[np.ndarray, np.ndarray]


def check_norm(norm: str) -> str:
    norm = {"l2": "2", "linf": "inf", "l1": "1", "∞": "inf"}.get(str(norm).lower(), str(norm))
    if norm not in NORMS:
        raise BoundpropError(f"unknown norm '{norm}'; use 2, inf or 1")
    return norm


def dim_factor(n: int, norm: str) -> float:
    """‖1_n‖_p = n^{1/p}: how much copying one entry to n places can grow a p-norm."""

    n = max(int(n), 0)
    if norm == "inf":
        return 1.0 if n else 0.0
    if norm == "1":
        return float(n)
    return float(round_up(np.sqrt(float(n))))


def array_norm_upper(a: np.ndarray, norm: str) -> float:
    """‖a‖_p of the flattened array, rounded up (inf if any entry is)."""

    a = np.abs(np.asarray(a, dtype=np.float64)).reshape(-1)
    if a.size == 0:
        return 0.0
    if not np.all(np.isfinite(a)):
        return float("inf")
    if norm == "inf":
        return float(a.max())
    if norm == "1":
        return float(round_up(a.sum() * (1 + gamma(a.size))))
    scale = float(a.max())
    if scale == 0.0:
        return 0.0
    s = (a / scale) ** 2  # scaled to avoid overflow; division by a power of two would be exact
    return float(round_up(scale * np.sqrt(s.sum() * (1 + gamma(a.size + 2))) * (1 + 2**-50)))


def box_norm_upper(box: Interval, norm: str) -> float:
    """sup of ‖x‖_p over the box."""
    lo, hi = box
    return array_norm_upper(np.maximum(np.abs(lo), np.abs(hi)), norm)


_TAG = re.compile(r"[^0-9A-Za-z]+")


def tag_of(name: str, index: int) -> str:
    t = _TAG.sub("", name)[:24]
    return t if t and not t[0].isdigit() else f"n{index}{t}"


def node_tags(names: list[str]) -> list[str]:
    """A short symbol-safe tag per node, unique in the network (names that clean up to the
    same tag, e.g. long exporter names differing past 24 characters, get their index)."""
    tags = [tag_of(n, i) for i, n in enumerate(names)]
    seen: dict[str, int] = {}
    for t in tags:
        seen[t] = seen.get(t, 0) + 1
    return [t if seen[t] == 1 else f"{t}{i}" for i, t in enumerate(tags)]


@dataclass
class RuleContext:
    """What a rule sees: the norm, its inputs' enclosures (None: global, over all inputs),
    the symbols of its inputs' constants, and a factory for its own named constants.

    ``wrt``: "input" (constants of x ↦ node) or "params" (of θ ↦ node, parametric ops in the
    ball of radius ``param_radius``); ``operator_norms``: norm name → a verified ‖A‖ that an
    affine op uses instead of recomputing its own (the independent checker's)."""

    norm: str
    tag: str
    boxes: list[Interval] | None
    in_lipschitz: list[sp.Symbol]
    in_smoothness: list[sp.Symbol]
    in_bound: list[sp.Symbol]
    values: dict[sp.Symbol, float] = field(default_factory=dict)
    latex: dict[sp.Symbol, str] = field(default_factory=dict)
    meaning: dict[sp.Symbol, str] = field(default_factory=dict)
    wrt: str = "input"
    param_radius: float = 0.0
    operator_norms: dict[str, float] | None = None

    @property
    def local(self) -> bool:
        return self.boxes is not None

    def symbol(self, stem: str, value: float, meaning: str, latex: str | None = None,
               shared: bool = False) -> sp.Expr:
        """A named nonnegative constant of this op with its certified value. ``shared``
        symbols (e.g. the batch-norm ε) have one name across the network."""
        value = float(value)
        if value == 0.0:
            return sp.Integer(0)
        name = stem if shared else f"{stem}_{self.tag}"
        s = sp.Symbol(name, nonnegative=True)
        self.values[s] = value
        self.meaning[s] = meaning
        self.latex[s] = latex if latex is not None else (
            stem if shared else f"{stem}_{{\\mathrm{{{self.tag}}}}}")
        return sp.oo if value == float("inf") else s


@dataclass
class Rule:
    """One node's constants, as expressions of its inputs' symbols and its own.

    ``lipschitz``/``smoothness``/``bound``: ℓ, L, B of the node as a function of the network
    input; ``op_lipschitz``/``op_smoothness``: the op's own ℓ_φ, L_φ (for the per-layer table);
    ``reason``: why L is infinite, if it is."""

    lipschitz: sp.Expr
    smoothness: sp.Expr
    bound: sp.Expr
    op_lipschitz: sp.Expr
    op_smoothness: sp.Expr
    reason: str | None = None


def chain_rule(ctx: RuleContext, slope: sp.Expr, curvature: sp.Expr, at_zero: sp.Expr,
               sup_bound: sp.Expr = sp.oo, reason: str | None = None,
               bound_slope: sp.Expr | None = None) -> Rule:
    """The rule of a one-input op with Lipschitz constant ``slope`` (ℓ_φ), smoothness
    ``curvature`` (L_φ), ‖φ(0)‖ = ``at_zero`` and sup‖φ‖ ≤ ``sup_bound``.
    ``bound_slope``: a Lipschitz constant valid on the segments from 0 to the inputs (for
    B ≤ ‖φ(0)‖ + ℓ B_u), when ``slope`` holds only on the inputs' enclosure."""
    lu, Lu, Bu = ctx.in_lipschitz[0], ctx.in_smoothness[0], ctx.in_bound[0]
    lip = slope * lu
    if curvature == sp.oo:
        smooth = sp.oo
    else:
        smooth = curvature * lu**2 + slope * Lu
    bound = at_zero + (slope if bound_slope is None else bound_slope) * Bu
    if sup_bound != sp.oo:
        bound = sp.Min(sup_bound, bound)
    return Rule(lip, smooth, bound, slope, curvature, reason)


def linear_rule(ctx: RuleContext, norm_value: float, offset_norm: float, what: str) -> Rule:
    """An affine map x ↦ A x + b: ℓ_φ = ‖A‖_p, L_φ = 0, B ≤ ‖A‖ B_u + ‖b‖."""
    slope = ctx.symbol("A", norm_value, f"‖{what}‖_{ctx.norm} (operator norm)",
                       latex=f"\\|A_{{\\mathrm{{{ctx.tag}}}}}\\|")
    b = ctx.symbol("b", offset_norm, f"‖offset‖_{ctx.norm}")
    return chain_rule(ctx, slope, sp.Integer(0), b)


def interval_times(c: np.ndarray, r: np.ndarray, lo: np.ndarray, hi: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Centre–radius enclosure of {j·d : j ∈ [c − r, c + r], d ∈ [lo, hi]} (broadcast),
    rounded outward."""

    a, b = c - r, c + r
    prods = [a * lo, a * hi, b * lo, b * hi]
    pmin = round_down(np.minimum.reduce(prods))
    pmax = round_up(np.maximum.reduce(prods))
    centre = 0.5 * (pmin + pmax)
    radius = round_up(np.maximum(pmax - centre, centre - pmin))
    return centre, radius


def standardization_rule(ctx: RuleContext, group_size: int, groups: int, eps: float,
                         gamma_max: float, beta_norm: float, var_lower: float = 0.0) -> Rule:
    """Rule of y = γ⊙(x − μ)/sqrt(σ² + ε) + β with statistics over groups of m entries
    (training-mode batch norm: per channel over batch and space; layer norm: per row).

    Per group, with s = sqrt(v + ε) and x̂ = (x − μ)/s, the Jacobian of x̂ is
    (1/s)(P − x̂x̂ᵀ/m), P = I − 11ᵀ/m: ‖·‖₂ = 1/s ≤ 1/sqrt(v_lo + ε); ‖·‖_∞ = ‖·‖_1
    ≤ (2 + sqrt(m − 1))/s since |x̂_i| ≤ sqrt(m − 1), ‖x̂‖₁ ≤ m. Second derivative (derived
    from x̂ = w·g(‖w‖²/m), w = Px, g(v) = (v + ε)^{−1/2}): four terms giving
    ‖D²x̂‖₂ ≤ 3(√v/s³ + v^{3/2}/s⁵)/√m ≤ 6·h(v)/√m with h(v) = √v/(v + ε)^{3/2} ≤
    h(ε/2) = 2/(3√3 ε), so L₂ ≤ (4/√3)/(ε√m); L_∞ ≤ m L₂ and L_1 ≤ √m L₂ by norm
    equivalence inside a group. Groups are independent (block diagonal): the max over groups.
    ‖x̂‖₂ ≤ √m per group bounds the output whatever the input."""
    norm = ctx.norm
    m = int(group_size)
    e = ctx.symbol("eps_bn", eps, "batch/layer-norm ε", latex="\\varepsilon", shared=True)
    g = ctx.symbol("gamma", gamma_max, "max |γ| of the normalisation")
    v = ctx.symbol("vlo", var_lower, "lower bound of the group variance on the set")
    m_s = sp.Integer(m)
    if norm == "2":
        slope = g / sp.sqrt(v + e)
    else:
        slope = g * (2 + sp.sqrt(m_s - 1)) / sp.sqrt(v + e)
    curv2 = sp.Rational(4) / sp.sqrt(3) * g / (e * sp.sqrt(m_s))
    if var_lower > eps / 2:  # past the peak of h: h(v_lo) is the sup on v ≥ v_lo
        curv2 = 6 * g * sp.sqrt(v) / ((v + e) ** sp.Rational(3, 2) * sp.sqrt(m_s))
    curvature = {"2": curv2, "inf": m_s * curv2, "1": sp.sqrt(m_s) * curv2}[norm]
    beta = ctx.symbol("beta", beta_norm, "‖β‖ over the output")
    per_group = {"2": sp.sqrt(m_s), "inf": sp.sqrt(m_s - 1), "1": m_s}[norm]
    reps = {"2": sp.sqrt(sp.Integer(groups)), "inf": sp.Integer(1),
            "1": sp.Integer(groups)}[norm]
    return chain_rule(ctx, slope, curvature, beta, sup_bound=g * per_group * reps + beta)


def sum_rule(ctx: RuleContext, weights: list[sp.Expr]) -> Rule:
    """y = Σ_i w_i-weighted inputs (w_i ≥ |coefficient| × copy factor): linear, L_φ = 0."""
    lip = sum(w * li for w, li in zip(weights, ctx.in_lipschitz))
    smooth = sum(w * Li for w, Li in zip(weights, ctx.in_smoothness))
    bound = sum(w * Bi for w, Bi in zip(weights, ctx.in_bound))
    return Rule(lip, smooth, bound, sum(weights), sp.Integer(0))


def stack_rule(ctx: RuleContext) -> Rule:
    """y = (x_1, …, x_k) stacked: ‖y‖_p is the p-norm of the parts' norms."""
    def combine(parts):
        if ctx.norm == "inf":
            return sp.Max(*parts)
        if ctx.norm == "1":
            return sum(parts)
        return sp.sqrt(sum(p**2 for p in parts))
    return Rule(combine(ctx.in_lipschitz), combine(ctx.in_smoothness), combine(ctx.in_bound),
                sp.Integer(1), sp.Integer(0))


def parametrized_affine_rule(ctx: RuleContext, op_norm: float, bilinear: float, copies: int,
                             rho: float, offset_norm: float) -> Rule:
    """ℓ2 constants w.r.t. the parameters θ of a layer v = A(W)u + b whose own (W, b) lie in
    the ball ‖(ΔW, Δb)‖_F ≤ ρ around the current values, upstream parameters in theirs.

    With c the bilinear constant (‖A(ΔW)u‖ ≤ c‖ΔW‖_F‖u‖: 1 for dense, √(max patch overlap)
    for convolutions), r the copies of the bias, ‖A(W)‖ ≤ ‖A(W*)‖ + cρ =: a on the ball:
      ‖D_own v‖ ≤ g := sqrt(c²B_u² + r),  ℓ_v ≤ sqrt(g² + a²ℓ_u²),
      D²v[Δ,Δ] = 2A(ΔW)Du[Δ_up] + A(W)D²u[Δ_up,Δ_up] ⇒ L_v ≤ (aL_u + sqrt(a²L_u² + 4c²ℓ_u²))/2
    (the largest eigenvalue of [[0, cℓ_u], [cℓ_u, aL_u]]), B_v ≤ aB_u + ‖b*‖ + ρ√r."""
    lu, Lu, Bu = ctx.in_lipschitz[0], ctx.in_smoothness[0], ctx.in_bound[0]
    a = ctx.symbol("A", op_norm, "‖A(W*)‖₂ at the current weights",
                   latex=f"\\|A_{{\\mathrm{{{ctx.tag}}}}}\\|")
    c = ctx.symbol("c", bilinear, "bilinear constant of the layer")
    rho_s = ctx.symbol("rho", rho, "parameter-ball radius", latex="\\rho", shared=True)
    b = ctx.symbol("b", offset_norm, "‖offset‖₂")
    r = sp.Integer(copies)
    a_ball = a + c * rho_s
    g = sp.sqrt(c**2 * Bu**2 + r)
    lip = sp.sqrt(g**2 + a_ball**2 * lu**2)
    smooth = (a_ball * Lu + sp.sqrt(a_ball**2 * Lu**2 + 4 * c**2 * lu**2)) / 2
    bound = a_ball * Bu + b + rho_s * sp.sqrt(r)
    return Rule(lip, smooth, bound, a_ball, sp.Integer(0))
