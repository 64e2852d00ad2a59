"""The op conformance suite: one generic soundness test per rule of the op contract, run on
every row of ``tests/op_specs.py`` whose class declares the rule; plus completeness (every
primitive class has a row) and honesty (a rule is declared iff the class implements it)."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from boundprop.domains.interval_ort import interval_bounds_ort
from boundprop.ir import InputPrimitive, Network, Node
from boundprop.ops.base import ParametricAffine, PermutationPrimitive, Primitive
from boundprop.ops.contract import RULES, declared_rules, primitive_classes, rules_matrix
from boundprop.ops.rules import NORMS, RuleContext, box_norm_upper
from boundprop.ops.shape import Reshape, Slice
from boundprop.sets import Box
from tests.op_specs import SPECS, OpSpec, sample_in

N_SAMPLES = 20


def rows(rule: str) -> list:
    return [pytest.param(s, id=s.name) for s in SPECS if rule in declared_rules(s.cls)]


def build(spec: OpSpec, seed: int = 0):
    """(op, boxes, samples, rng) of a row, from a seeded generator."""
    rng = np.random.default_rng(seed)
    op = spec.make(rng)
    boxes = spec.boxes(rng, op)
    return op, boxes, sample_in(rng, boxes, N_SAMPLES), rng


def flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1)


def pnorm(a: np.ndarray, norm: str) -> np.ndarray:
    """Per-row p-norm of a (rows, ...) array."""
    return np.linalg.norm(flat(a), ord={"2": 2, "inf": np.inf, "1": 1}[norm], axis=1)


# ------------------------------------------------------------------ completeness and honesty
def test_every_primitive_class_has_a_spec_row():
    covered = {s.cls for s in SPECS}
    missing = [c.__name__ for c in primitive_classes() if c not in covered]
    assert not missing, f"primitive classes without a row in tests/op_specs.py: {missing}"


def _overrides(cls: type, name: str, base: type = Primitive) -> bool:
    return getattr(cls, name, None) is not getattr(base, name, None)


def implemented(cls: type[Primitive], rule: str) -> bool:
    """Whether ``cls`` provides ``rule`` (by introspection of its methods)."""
    if rule == "interval":
        return _overrides(cls, "interval")
    if rule == "backward_linear":
        return _overrides(cls, "backward_linear") and _overrides(cls, "linear_relaxation")
    if rule == "constants":
        return _overrides(cls, "constants_rule")
    if rule == "jacobian":
        return _overrides(cls, "jacobian_backward")
    if rule == "vjp":  # Primitive.vjp falls back on the Jacobian rule at points
        return _overrides(cls, "vjp") or implemented(cls, "jacobian")
    if rule == "parametric":
        return issubclass(cls, ParametricAffine) and all(
            _overrides(cls, m, ParametricAffine)
            for m in ("param_structure", "weight_and_bias", "param_vjp", "perturbed"))
    if rule == "entry_selection":  # semantics checked below; only entry-moving maps qualify
        return rule in cls.rules and issubclass(cls, PermutationPrimitive)
    if rule == "relaxed_forward":
        return _overrides(cls, "relaxed_forward")
    method = {"ort_interval": "emit_interval_onnx", "materialize": "materialize",
              "row_norms": "sq_linear", "needs_tighter": "needs_tighter",
              "slope_parameters": "with_slopes", "curvature": "smoothness_on",
              "slope_restriction": "slope_restriction"}[rule]
    return callable(getattr(cls, method, None))


@pytest.mark.parametrize("cls", primitive_classes(), ids=lambda c: c.__name__)
def test_declarations_are_honest(cls):
    declared = declared_rules(cls)
    assert declared <= RULES.keys()
    wrong = {r: implemented(cls, r) for r in RULES if implemented(cls, r) != (r in declared)}
    assert not wrong, f"{cls.__name__}: declared ≠ implemented for {wrong} (True: implemented)"


def test_rules_matrix_lists_every_class_and_rule():
    text = rules_matrix()
    for cls in primitive_classes():
        assert cls.__name__ in text
    for rule in RULES:
        assert rule in text


# ------------------------------------------------------------------ interval
@pytest.mark.parametrize("spec", rows("interval"))
def test_interval_encloses_samples(spec):
    op, boxes, xs, _ = build(spec)
    lo, hi = op.interval(*boxes)
    y = op.evaluate(*xs)
    assert np.all(lo <= y) and np.all(y <= hi), \
        f"worst excess {np.max(np.maximum(lo - y, y - hi)):.3g}"


# ------------------------------------------------------------------ back-substitution
@pytest.mark.parametrize("spec", rows("backward_linear"))
def test_backward_linear_is_a_lower_bound(spec):
    op, boxes, xs, rng = build(spec)
    lam = rng.standard_normal((3, *op.out_shape))
    relax = op.linear_relaxation(*boxes)
    lams, const, err = op.backward_linear(lam, relax, boxes)
    y = op.evaluate(*xs)
    exact = np.einsum("ko,so->sk", flat(lam), flat(y))
    bound = sum(np.einsum("ki,si->sk", flat(li), flat(x)) for li, x in zip(lams, xs))
    bound = bound + const - err
    slack = 1e-12 * (1 + np.abs(exact))  # the float evaluation of Λ·y itself
    assert np.all(bound <= exact + slack), f"worst excess {np.max(bound - exact):.3g}"


@pytest.mark.parametrize("spec", rows("relaxed_forward"))
def test_relaxed_forward_is_the_back_substituted_function(spec):
    """Λ_k·relaxed_forward(x)_k equals the linear form backward_linear returned, Σ_i Λ_ik·x_i
    + const_k, at sampled points: the identity the slope optimiser's gradients rest on."""
    op, boxes, xs, rng = build(spec)
    k = 4
    lam = rng.standard_normal((k, *op.out_shape))
    relax = op.linear_relaxation(*boxes)
    lams, const, _ = op.backward_linear(lam, relax, boxes)
    for s in range(0, N_SAMPLES, 5):
        at = [np.repeat(x[s:s + 1], k, 0) for x in xs]
        y = op.relaxed_forward(at, relax, lam)
        lhs = (flat(lam) * flat(y)).sum(1)
        rhs = sum((flat(li) * flat(x)).sum(1) for li, x in zip(lams, at)) + const
        scale = 1 + sum((np.abs(flat(li)) * np.abs(flat(x))).sum(1) for li, x in zip(lams, at))
        assert np.allclose(lhs, rhs, rtol=0, atol=1e-9 * float(np.max(scale) + np.abs(const).max()))


@pytest.mark.parametrize("spec", rows("slope_restriction"))
def test_slope_restriction_bounds_difference_quotients(spec):
    """α ≤ (σ(a) − σ(b))/(a − b) ≤ β for pairs at every scale (near each other, far apart,
    across the kinks and inflections, up to 1e6), entry by entry; α ≤ β."""
    op, _, _, rng = build(spec)
    alpha, beta = op.slope_restriction()
    assert alpha.shape == beta.shape == (1, *op.in_shapes[0]) and np.all(alpha <= beta)
    for scale in (1e-3, 0.3, 1.0, 3.0, 30.0, 1e6):
        a = rng.standard_normal((64, *op.in_shapes[0])) * scale
        b = a + rng.standard_normal(a.shape) * scale * rng.choice([1e-3, 1.0], a.shape)
        keep = np.abs(a - b) > 1e-9 * (1 + np.abs(a))  # quotients of resolvable differences
        ya, yb = op.evaluate(a), op.evaluate(b)
        d = np.where(keep, a - b, 1.0)
        q = (ya - yb) / d
        # the rounding of σ at the two points (a few ulps of the values), over the difference
        tol = 1e-14 * (1 + np.abs(ya) + np.abs(yb)) / np.abs(d) + 1e-12 * (1 + np.abs(q))
        assert np.all(~keep | (q >= alpha - tol)) and np.all(~keep | (q <= beta + tol)), \
            f"scale {scale}: quotients in [{q[keep].min():.6g}, {q[keep].max():.6g}], " \
            f"bounds [{alpha.min():.6g}, {beta.max():.6g}]"


@pytest.mark.parametrize("spec", rows("slope_parameters"))
def test_every_slope_in_range_gives_a_lower_bound(spec):
    """Any lower and upper slopes in ``slope_ranges``, one per row, keep backward_linear below
    the sampled values (rows of both signs use both lines); the touch points are where the
    lines meet σ up to rounding; a planted slope past the range with the old offset is caught
    by the same check."""
    op, boxes, xs, rng = build(spec)
    lo, hi = boxes[0]
    lmin, lmax, umin, umax = op.slope_ranges(lo, hi)
    assert np.all(lmin <= lmax) and np.all(umin <= umax)
    k = 6
    lam = rng.standard_normal((k, *op.out_shape))
    y = op.evaluate(*xs)
    exact = np.einsum("ko,so->sk", flat(lam), flat(y))

    def bound(relax):
        lams, const, err = op.backward_linear(lam, relax, boxes)
        return np.einsum("ki,si->sk", flat(lams[0]), flat(xs[0])) + const - err

    base = op.linear_relaxation(*boxes)
    for t in (0.0, 1.0, rng.random((k, *op.out_shape))):
        relax, x_l, x_u = op.with_slopes(base, lo, hi, lmin + t * (lmax - lmin),
                                         umin + t * (umax - umin))
        assert np.all(bound(relax) <= exact + 1e-12 * (1 + np.abs(exact)))
        a_l, b_l, a_u, b_u = relax
        gap_l = op.evaluate(x_l.reshape(-1, *op.in_shapes[0])).reshape(x_l.shape) - (
            a_l * x_l + b_l)
        assert np.all(gap_l >= 0) and np.all(gap_l <= 1e-6 * (1 + np.abs(b_l)))
    free = lmax > lmin
    if np.any(free):  # a steeper lower slope keeping its old offset
        a_l, b_l, a_u, b_u = base
        steep = (np.where(free, lmax + 0.5, a_l), b_l, a_u, b_u)
        lam_pos = np.abs(lam)
        lams, const, err = op.backward_linear(lam_pos, steep, boxes)
        worst = (np.einsum("ki,si->sk", flat(lams[0]), flat(xs[0])) + const - err
                 - np.einsum("ko,so->sk", flat(lam_pos), flat(y)))
        assert np.max(worst) > 0, "a too-steep planted slope went unnoticed"


@pytest.mark.parametrize("spec", rows("backward_linear"))
def test_every_relaxation_candidate_is_a_lower_bound(spec):
    """Each of ``linear_relaxation_candidates`` (chord and tangent lines for the smooth
    activations) is as sound through ``backward_linear`` as ``linear_relaxation``."""
    op, boxes, xs, rng = build(spec, seed=1)
    lam = rng.standard_normal((3, *op.out_shape))
    y = op.evaluate(*xs)
    exact = np.einsum("ko,so->sk", flat(lam), flat(y))
    for relax in op.linear_relaxation_candidates(*boxes):
        lams, const, err = op.backward_linear(lam, relax, boxes)
        bound = sum(np.einsum("ki,si->sk", flat(li), flat(x)) for li, x in zip(lams, xs))
        bound = bound + const - err
        assert np.all(bound <= exact + 1e-12 * (1 + np.abs(exact)))


# ------------------------------------------------------------------ Jacobian enclosure
def fd_row_jacobian(op, xs: list[np.ndarray], s: int, c: np.ndarray, h: float = 1e-6):
    """c·∂f/∂x_j at point s by central differences, for every input j: [(K, *in_j)]."""
    out = []
    for j, x in enumerate(xs):
        n = int(np.prod(x.shape[1:]))
        steps = np.eye(n).reshape(n, *x.shape[1:]) * h
        args_p = [np.repeat(v[s:s + 1], n, 0) for v in xs]
        args_m = [a.copy() for a in args_p]
        args_p[j] = args_p[j] + steps
        args_m[j] = args_m[j] - steps
        d = (op.evaluate(*args_p) - op.evaluate(*args_m)) / (2 * h)  # (n, *out)
        out.append(np.einsum("ko,no->kn", flat(c), flat(d)).reshape(len(c), *x.shape[1:]))
    return out


@pytest.mark.parametrize("spec", rows("jacobian"))
def test_jacobian_encloses_finite_differences(spec):
    op, boxes, xs, rng = build(spec)
    c = rng.standard_normal((2, *op.out_shape))
    r = 0.1 * rng.random((2, *op.out_shape))
    parts = op.jacobian_backward(c, r, boxes)
    assert parts is not None and len(parts) == len(xs)
    for s in range(2, 8):  # interior points
        for cj in (c - r, c + r, c):
            for (centre, radius), fd in zip(parts, fd_row_jacobian(op, xs, s, cj)):
                tol = 1e-5 * (1 + np.abs(fd))
                assert np.all(np.abs(fd - centre) <= radius + tol), \
                    f"outside by {np.max(np.abs(fd - centre) - radius):.3g}"


# ------------------------------------------------------------------ curvature
@pytest.mark.parametrize("spec", rows("curvature"))
def test_curvature_bounds_sampled_derivative_quotients(spec):
    """Elementwise, and per entry |σ'(x) − σ'(y)| ≤ κ̄ |x − y| for x, y in the entry's box
    (σ' by central differences of the op itself, away from the box ends)."""
    op, boxes, xs, rng = build(spec)
    (lo, hi), = boxes
    kappa = op.smoothness_on(lo, hi)
    assert kappa.shape == np.broadcast_shapes(lo.shape, kappa.shape) and np.all(kappa >= 0)
    x = xs[0]
    y = x + 0.1 * rng.random(x.shape) * (hi - lo)
    h = 1e-5 * np.maximum(1.0, np.abs(hi - lo))
    ok = (lo + h <= np.minimum(x, y)) & (np.maximum(x, y) <= hi - h) & np.isfinite(kappa)
    y = np.where(ok, y, x)

    def slope(z):
        return (op.evaluate(z + h) - op.evaluate(z - h)) / (2 * h)

    quot = np.abs(slope(x) - slope(y))
    moved = np.where(np.isfinite(kappa), kappa, 0.0) * np.abs(x - y)
    bound = np.where(np.isfinite(kappa), moved, np.inf) + 1e-6 * (1 + np.abs(slope(x))) \
        + 4e-16 / h
    assert np.all(quot <= bound), f"σ' moves by {np.max(quot - bound):.3g} more than κ̄ allows"


# ------------------------------------------------------------------ vjp
@pytest.mark.parametrize("spec", rows("vjp"))
def test_vjp_matches_finite_differences(spec):
    op, _, xs, rng = build(spec)
    pts = [x[2:6] for x in xs]
    k = 2
    cot = rng.standard_normal((len(pts[0]) * k, *op.out_shape))
    got = op.vjp(cot, pts, k)
    assert [g.shape for g in got] == [(len(cot), *x.shape[1:]) for x in pts]
    for s in range(len(pts[0])):
        want = fd_row_jacobian(op, pts, s, cot[s * k:(s + 1) * k])
        for g, w in zip(got, want):
            np.testing.assert_allclose(g[s * k:(s + 1) * k], w, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ constants
def rule_value(expr, ctx: RuleContext, inputs: dict) -> float:
    subs = {k: sp.Float(v) for k, v in {**ctx.values, **inputs}.items()}
    return float(sp.sympify(expr).xreplace(subs).evalf())


def local_context(op, boxes, norm: str) -> tuple[RuleContext, dict, dict]:
    """A rule context on ``boxes`` and the substitutions making each input the projection of
    the stacked input (ℓ = 1, L = 0, B = sup of its norm on its box)."""
    k = len(op.in_shapes)
    syms = [[sp.Symbol(f"{a}{j}", nonnegative=True) for j in range(k)] for a in "lLB"]
    ctx = RuleContext(norm, "t", boxes, *syms)
    lip_in = {s: 1.0 for s in syms[0]} | {s: 0.0 for s in syms[1]}
    bound_in = {s: box_norm_upper(b, norm) for s, b in zip(syms[2], boxes)}
    return ctx, lip_in, bound_in


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("spec", rows("constants"))
def test_constants_bound_sampled_slopes_and_values(spec, norm):
    op, boxes, xs, rng = build(spec)
    ctx, lip_in, bound_in = local_context(op, boxes, norm)
    rule = op.constants_rule(ctx)
    ell = rule_value(rule.lipschitz, ctx, lip_in)
    bound = rule_value(rule.bound, ctx, bound_in)
    ys = sample_in(rng, boxes, N_SAMPLES)
    fx, fy = op.evaluate(*xs), op.evaluate(*ys)
    dz = np.concatenate([flat(x - y) for x, y in zip(xs, ys)], axis=1)
    apart = pnorm(dz, norm) > 0
    slopes = pnorm(fx - fy, norm)[apart] / pnorm(dz, norm)[apart]
    assert np.all(slopes <= ell * (1 + 1e-9) + 1e-12), f"slope {slopes.max():.6g} > ℓ {ell:.6g}"
    assert np.all(pnorm(fx, norm) <= bound * (1 + 1e-9) + 1e-12)


# ------------------------------------------------------------------ onnxruntime emission
def one_node_network(op) -> Network:
    """input (Σ sizes,) → per input: Slice, Reshape → op: a network whose only input box is
    the concatenation of the op's input boxes."""
    sizes = [int(np.prod(s)) for s in op.in_shapes]
    total = sum(sizes)
    nodes = [Node("input", InputPrimitive((total,)), ())]
    feeds, start = [], 0
    for j, (shape, n) in enumerate(zip(op.in_shapes, sizes)):
        nodes.append(Node(f"slice{j}", Slice((total,), (slice(start, start + n),)), (0,)))
        nodes.append(Node(f"reshape{j}", Reshape((n,), shape), (len(nodes) - 1,)))
        feeds.append(len(nodes) - 1)
        start += n
    nodes.append(Node("op", op, tuple(feeds)))
    return Network(nodes=nodes, output=len(nodes) - 1)


@pytest.mark.parametrize("spec", rows("ort_interval"))
def test_ort_interval_encloses_samples(spec):
    op, boxes, xs, _ = build(spec)
    net = one_node_network(op)
    lo = np.concatenate([b[0].reshape(-1) for b in boxes])
    hi = np.concatenate([b[1].reshape(-1) for b in boxes])
    got = interval_bounds_ort(net, Box(lo, hi))[-1]
    y = op.evaluate(*xs)
    assert np.all(got[0] <= y) and np.all(y <= got[1])
    num = op.interval(*boxes)
    assert np.all(got[0] <= num[0] + 1e-6 * (1 + np.abs(num[0])))  # no tighter than exact
    assert np.all(got[1] >= num[1] - 1e-6 * (1 + np.abs(num[1])))


# ------------------------------------------------------------------ parametric
@pytest.mark.parametrize("spec", rows("parametric"))
def test_param_vjp_matches_finite_differences(spec):
    op, _, xs, rng = build(spec)
    w, b = op.weight_and_bias()
    u = xs[0][2:3]
    cot = rng.standard_normal((2, *op.out_shape))
    gw, gb = op.param_vjp(cot, u, 2)
    dw = rng.standard_normal(w.shape)
    db = None if b is None else rng.standard_normal(w.shape[0])
    h = 1e-6
    diff = (op.perturbed(h * dw, None if db is None else h * db).evaluate(u)
            - op.perturbed(-h * dw, None if db is None else -h * db).evaluate(u)) / (2 * h)
    want = np.einsum("ko,o->k", flat(cot), diff.reshape(-1))
    got = np.einsum("kw,w->k", flat(gw), dw.reshape(-1))
    if db is not None:
        got = got + gb @ db
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", rows("parametric"))
def test_param_rule_bounds_sampled_parameter_slopes(spec):
    op, boxes, xs, rng = build(spec)
    rho = 0.5
    ctx, _, bound_in = local_context(op, boxes, "2")
    ctx.wrt, ctx.param_radius = "params", rho
    rule = op.constants_rule(ctx)
    fixed_input = {s: 0.0 for s in ctx.in_lipschitz} | {s: 0.0 for s in ctx.in_smoothness}
    ell = rule_value(rule.lipschitz, ctx, fixed_input | bound_in)
    w, b = op.weight_and_bias()
    nb = 0 if b is None else w.shape[0]

    def response(t, u):  # f(θ* + t) − f(θ*) at the input u: linear in t for a fixed u
        dw, db = t[:w.size].reshape(w.shape), (t[w.size:] if nb else None)
        return op.perturbed(dw, db).evaluate(u) - op.evaluate(u)

    for s in range(3):
        u = xs[0][s:s + 1]
        t = rng.standard_normal(w.size + nb)
        for _ in range(8):  # power iteration: t → the top right singular vector of ∂f/∂θ
            t = rho * t / np.linalg.norm(t)
            gw, gb = op.param_vjp(response(t, u), u, 1)
            t = np.concatenate([gw.reshape(-1)] + ([gb.reshape(-1)] if nb else []))
        t = rho * t / np.linalg.norm(t)
        slope = np.linalg.norm(response(t, u)) / rho
        assert slope <= ell * (1 + 1e-9), f"slope {slope:.6g} > ℓ_θ {ell:.6g}"


# ------------------------------------------------------------------ linear structure
@pytest.mark.parametrize("spec", rows("materialize"))
def test_materialized_matrix_is_the_map(spec):
    op, _, xs, _ = build(spec)
    m = op.materialize()
    np.testing.assert_allclose(flat(xs[0]) @ m.T, flat(op.linear(xs[0])), rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("spec", rows("row_norms"))
def test_sq_linear_is_the_squared_entry_map(spec):
    op, _, xs, _ = build(spec)
    m = op.materialize()
    np.testing.assert_allclose(flat(op.sq_linear(xs[0])), flat(xs[0]) @ (m**2).T, rtol=1e-12,
                               atol=1e-12)


@pytest.mark.parametrize("spec", rows("entry_selection"))
def test_entry_selection_copies_distinct_entries(spec):
    op, *_ = build(spec)
    n = int(np.prod(op.in_shapes[0]))
    x = (np.arange(n, dtype=float) + 1).reshape(1, *op.in_shapes[0])
    y = op.evaluate(x).reshape(-1)
    assert op.offset is None
    assert set(y.tolist()) <= set(x.reshape(-1).tolist())
    assert len(set(y.tolist())) == y.size, "an input entry is copied twice"
