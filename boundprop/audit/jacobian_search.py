"""Lower bounds of local Lipschitz constants: a search for a point x of the input set with a large
Jacobian norm.

    value, x, row = jacobian_norm_lower(net, input_set, norm="inf", time_budget=10.0, seed=0)

``norm="inf"``: max_i ‖∇f_i(x)‖₁ (the ℓ∞→ℓ∞ operator norm of J(x); ``row`` is the maximising
output i). ``norm="2"``: ‖J(x)‖₂ (``row`` is -1). Whatever the search does, the value returned
is ‖J(x)‖ at the returned point x of the set, with J(x) the exact Jacobian of boundprop's float64
IR (one reverse pass through the ops' ``vjp`` rules, :func:`boundprop.audit.function.reverse_pass`,
the pass the audit and the attack use). Where the network is differentiable at x (every point but
a null set of a piecewise-smooth network) J(x) is the derivative, so the value is a lower bound of
sup_{x∈set} ‖J(x)‖, i.e. of the local Lipschitz constant (and of any bound on the Clarke Jacobian
over the set, such as auto_LiRPA's). :func:`pair_quotient` gives the same value as a difference
quotient of two points of the set, which needs no differentiability.

How the search works (all restarts batched; a time budget and optionally a step count stop it):

1. Seeds: the centre, uniform samples, random corners of a box (every corner up to 12 free
   coordinates), each with its exact J; the best rows/points start the ascent.
2. Ascent on the norm of one output row (ℓ∞) or on uᵀJ(x)v with u, v the top singular vectors
   at the current point (ℓ2), by signed steps in the box (normalised steps in a ball) with a step
   size that decays geometrically, restarting from new seeds until the budget is spent:

   * smooth networks (no ReLU-family op): the gradient of sᵀ∇f_i(x) (s = sign ∇f_i, fixed) is
     ∇²f_i(x)s, the symmetric Hessian applied to s, taken as a central difference of two exact
     gradients along s: two reverse passes per step, whatever the input dimension.
   * ReLU-family networks: ‖∇f_i‖₁ is piecewise constant in x (a gradient step sees nothing),
     so the ascent follows a surrogate: the Jacobian through the smoothed reverse rules of
     :func:`boundprop.attack.smoothed_network` (each ReLU's gate 1[z > 0] replaced by
     logistic(z/τ), τ a fraction of the layer's mean |z|, cycled over restarts from coarse to
     fine), whose gradient sees neurons about to switch on or off and how much their columns
     would add to the norm. Up to ``FD_MAX_DIM`` inputs its gradient is a forward difference
     along every input coordinate (d + 1 smoothed reverse passes per step); above, the central
     difference of the smoothed sᵀJ along s as in the smooth case (two passes: not the exact
     gradient of the surrogate, whose forward pass is the exact ReLU net, but on
     mnist-net_256x2 at ε = 0.03 it reached 49 in 20 s where the full differences reached 29).
     Every iterate is re-measured with the exact J.
"""

from __future__ import annotations

import time

import numpy as np

from boundprop.attack import smoothed_network
from boundprop.audit.function import NoJacobian, reverse_pass
from boundprop.audit.pnorms import operator_norm, operator_norm_direction
from boundprop.audit.regions import region_of_set
from boundprop.ops.piecewise import KinkAtOrigin

__all__ = ["exact_jacobians", "jacobian_norm_lower", "jacobian_norms", "pair_quotient"]

SEED_POINTS = 256  # uniform samples and random corners measured first (half each for a box)
RESTARTS = 8  # ascents run side by side
FD_MAX_DIM = 32  # ReLU nets: full forward differences of the surrogate up to this input size
STEPS = 100  # steps of one ascent
FIRST_STEP, LAST_STEP = 0.25, 0.002  # signed step sizes, as fractions of the box width
FRACTIONS = (0.03, 0.01, 0.02, 0.1)  # smoothing τ / mean|z|, cycled over restarts (ReLU nets)
FD_STEP = 1e-4  # surrogate forward differences: this fraction of the box width per coordinate
HVP_STEP = 1e-5  # smooth nets: central difference of gradients, this fraction of the scale
BATCH = 4096  # reverse-pass rows per chunk
TOP_ROWS = 3  # ℓ∞: every other ascent follows one of the rows best among the seeds


def exact_jacobians(net, X, reverse_net=None) -> np.ndarray:
    """J(x) (n, K, d) at the flat points X (n, d): the exact Jacobian of the float64 IR by one
    reverse pass of K rows per point (through ``reverse_net``'s rules if given). Raises
    :class:`NoJacobian` at an op without a reverse rule."""
    X = np.atleast_2d(np.asarray(X, float))
    n, d = X.shape
    K = int(np.prod(net.output_shape))
    per = max(1, BATCH // K)
    out = np.zeros((n, K, d))
    eye = np.eye(K).reshape(K, *net.output_shape)
    for a in range(0, n, per):
        Xs = X[a:a + per]
        m = len(Xs)
        vals = net.evaluate_all(Xs.reshape(m, *net.input_shape))
        cot = np.tile(eye, (m,) + (1,) * (eye.ndim - 1))
        g, _ = reverse_pass(reverse_net or net, vals, cot, m, ())
        if g is not None:
            out[a:a + m] = np.nan_to_num(g.reshape(m, K, d))
    return out


def _row_gradients(net, X, rows, reverse_net=None) -> np.ndarray:
    """uᵀJ(x) (n, d) at the flat points X for the output functionals ``rows`` (n, K)."""
    n, d = X.shape
    out = np.zeros((n, d))
    for a in range(0, n, BATCH):
        Xs = X[a:a + BATCH]
        m = len(Xs)
        vals = net.evaluate_all(Xs.reshape(m, *net.input_shape))
        g, _ = reverse_pass(reverse_net or net, vals,
                            rows[a:a + m].reshape(m, *net.output_shape), m, ())
        if g is not None:
            out[a:a + m] = np.nan_to_num(g.reshape(m, d))
    return out


def jacobian_norms(J, norm: str):
    """(value, row) per point of J (n, K, d): max_i ‖J_i‖₁ and its i (ℓ∞), or ‖J‖₂ and -1."""
    if norm == "inf":
        s = np.abs(J).sum(axis=2)
        i = s.argmax(axis=1)
        return s[np.arange(len(J)), i], i
    if norm == "2":
        return np.array([np.linalg.norm(j, 2) for j in J]), np.full(len(J), -1)
    raise ValueError(f"norm must be 'inf' or '2', not {norm!r}")


def pair_quotient(net, input_set, x, norm: str, row: int = -1, rel_step: float = 1e-7):
    """A difference quotient ‖f(b) − f(a)‖ / ‖b − a‖ (ℓ∞: of output ``row`` alone, divided by
    ‖b − a‖∞; ℓ2: of every output, ‖·‖₂) of two points a = c − hv, b = c + hv of the set, v the
    maximising direction of J(x) and c = x moved inward by at most h where x is on the set's
    boundary: a lower bound of the local Lipschitz constant by definition, equal to ‖J(x)‖ when
    f is linear between a and b (h = ``rel_step`` × the set's width)."""
    region = _region(net, input_set)
    x = np.asarray(x, float).reshape(1, -1)
    J = exact_jacobians(net, x)[0]
    if norm == "inf":
        v = np.sign(J[row])
    else:
        v = operator_norm_direction(J, "2")[1]
    h = rel_step * max(region.scale, 1e-300)
    c, (da, db) = region.fit(x, [-h * v[None], h * v[None]])  # x moved inward where needed
    a, b = region.project(c + da), region.project(c + db)
    if np.array_equal(a, b):
        return 0.0
    ya, yb = net(np.concatenate([a, b]).reshape(2, *net.input_shape)).reshape(2, -1)
    if norm == "inf":
        return float(abs(yb[row] - ya[row]) / np.abs(b - a).max())
    return float(np.linalg.norm(yb - ya) / np.linalg.norm(b - a))


def _region(net, input_set):
    return region_of_set(input_set.fit(tuple(net.input_shape))
                         if hasattr(input_set, "fit") else input_set)


class _Best:
    def __init__(self):
        self.value, self.x, self.row = -np.inf, None, -1

    def update(self, X, vals, rows):
        k = int(np.argmax(vals))
        if vals[k] > self.value:
            self.value, self.x, self.row = float(vals[k]), X[k].copy(), int(rows[k])


def _seeds(region, n, rng):
    """The centre, every corner (≤ 12 free coordinates) or random corners, uniform samples."""
    parts = [region.center()]
    corners = region.corners()
    if corners is not None:
        parts.append(corners)
    if hasattr(region, "lo"):
        pick = rng.random((n // 2, region.dim)) < 0.5
        parts.append(np.where(pick, region.hi, region.lo))
    parts.append(region.sample(n - n // 2, rng))
    return np.concatenate(parts)


def _surrogate(net, rev, X, fun, norm):
    """The ascended function at points X (n, d): fun = (row i, sign s) → sᵀ(∇f_i through the
    rules of ``rev``); or (u, v) → uᵀJv (ℓ2). ``fun`` holds per-point (n, K) rows and (n, d)
    directions."""
    rows, dirs = fun
    g = _row_gradients(net, X, rows, rev)
    return (g * dirs).sum(axis=1)


def _ascent_direction(net, rev, region, X, fun, norm, kinked, width):
    """The gradient of the surrogate at each of the points X (module docstring)."""
    rows, dirs = fun
    n, d = X.shape
    if kinked and d <= FD_MAX_DIM:
        h = FD_STEP * np.where(width > 0, width, region.scale or 1.0)
        P = np.concatenate([X[:, None, :], X[:, None, :] + np.diag(h)[None]], axis=1)
        P = P.reshape(n * (d + 1), d)
        F = _surrogate(net, rev, P, (np.repeat(rows, d + 1, axis=0),
                                     np.repeat(dirs, d + 1, axis=0)), norm).reshape(n, d + 1)
        return (F[:, 1:] - F[:, :1]) / h
    # ∇(uᵀ J v) = Σ_k u_k ∇²f_k v: central difference of uᵀJ along v (symmetric Hessians)
    delta = HVP_STEP * (region.scale or 1.0)
    P = np.concatenate([X + delta * dirs, X - delta * dirs])
    G = _row_gradients(net, P, np.concatenate([rows, rows]), rev)
    return (G[:n] - G[n:]) / (2 * delta)


def _targets(J, norm, rows_hint=None):
    """Per point: the output functional (n, K) and input direction (n, d) of its norm."""
    n, K, d = J.shape
    rows, dirs = np.zeros((n, K)), np.zeros((n, d))
    for t in range(n):
        if norm == "inf":
            i = int(np.abs(J[t]).sum(axis=1).argmax()) if rows_hint is None else rows_hint[t]
            rows[t, i], dirs[t] = 1.0, np.sign(J[t, i])
        else:
            _, v, u = operator_norm_direction(J[t], "2", with_u=True)
            rows[t], dirs[t] = u, v
    return rows, dirs


def jacobian_norm_lower(net, input_set, norm: str = "inf", time_budget: float = 10.0,
                        seed: int = 0, steps: int | None = None):
    """(value, x, row): the largest ‖J(x)‖ found (module docstring) over the input set, the
    point x (shaped as the net's input) and the maximising output row (ℓ∞; -1 for ℓ2).
    Searches for ``time_budget`` seconds, or (when given) ``steps`` ascent steps in all,
    whichever comes first; deterministic for a given seed when the step count is the limit."""
    if norm not in ("inf", "2"):
        raise ValueError(f"norm must be 'inf' or '2', not {norm!r}")
    deadline = time.perf_counter() + time_budget
    rng = np.random.default_rng(seed)
    region = _region(net, input_set)
    width = (region.hi - region.lo) if hasattr(region, "lo") else np.full(region.dim,
                                                                          region.scale)
    kinked = any(isinstance(n.op, KinkAtOrigin) for n in net.nodes)
    best = _Best()
    X0 = _seeds(region, SEED_POINTS, rng)
    J0 = exact_jacobians(net, X0)
    v0, r0 = jacobian_norms(J0, norm)
    best.update(X0, v0, r0)
    order = list(np.argsort(-v0, kind="stable"))
    seed_rows = np.abs(J0).sum(axis=2).max(axis=0)  # each row's best seed value
    taken, restart, done = 0, 0, 0
    while time.perf_counter() < deadline and (steps is None or done < steps):
        R = RESTARTS
        if taken < len(order):  # the best seeds first, then fresh samples
            idx = order[taken:taken + R]
            taken += R
            X, Jx = X0[idx].copy(), J0[idx]
        else:
            X = region.sample(R, rng) if rng.random() < 0.5 else _seeds(region, 2 * R, rng)[-R:]
            Jx = exact_jacobians(net, X)
        frac = FRACTIONS[restart % len(FRACTIONS)]
        restart += 1
        rev = smoothed_network(net, frac) if kinked else None
        fixed_rows = None
        if norm == "inf":  # each ascent keeps its row: the seed's best, or another row
            fixed_rows = np.abs(Jx).sum(axis=2).argmax(axis=1)
            if restart % 2 == 0:  # another of the TOP_ROWS rows best among the seeds
                top = np.argsort(-seed_rows, kind="stable")[:TOP_ROWS]
                fixed_rows = rng.choice(top, len(X))
        n_steps = STEPS
        for k in range(n_steps):
            if time.perf_counter() >= deadline or (steps is not None and done >= steps):
                break
            Js = exact_jacobians(net, X, rev) if kinked else Jx
            fun = _targets(Js, norm, fixed_rows)
            g = _ascent_direction(net, rev, region, X, fun, norm, kinked, width)
            alpha = FIRST_STEP * (LAST_STEP / FIRST_STEP) ** (k / max(n_steps - 1, 1))
            X = region.step(X, g, np.full(len(X), alpha))
            Jx = exact_jacobians(net, X)
            vals, rows = jacobian_norms(Jx, norm)
            if fixed_rows is not None:  # the row ascended, or any better one
                best.update(X, vals, rows)
            else:
                best.update(X, vals, rows)
            done += 1
    x = best.x.reshape(net.input_shape)
    return best.value, x, best.row


def smoothness_lower(net, input_set, norm: str = "2", time_budget: float = 5.0, seed: int = 0,
                     points=None) -> float:
    """A lower bound of the smoothness constant L (‖J(x) − J(y)‖_p ≤ L‖x − y‖_p on the set):
    the largest quotient ‖J(b) − J(a)‖_p / ‖b − a‖_p (exact Jacobians) over pairs a, b of the
    set, b − a along the top singular direction of J at the base point or a random corner
    direction, at several scales; base points ``points`` (flat, e.g. the Lipschitz search's
    best) then samples."""
    deadline = time.perf_counter() + time_budget
    rng = np.random.default_rng(seed)
    region = _region(net, input_set)
    pts = [] if points is None else [np.asarray(p, float).reshape(1, -1) for p in points]
    best = 0.0
    scales = (1e-3, 1e-2, 0.1, 0.3)
    while time.perf_counter() < deadline:
        base = pts.pop(0) if pts else region.sample(1, rng)
        J = exact_jacobians(net, base)[0]
        v = operator_norm_direction(J, "2")[1]
        dirs = [v[None], region.directions(1, rng)]
        for d in dirs:
            nd = np.abs(d).max() if hasattr(region, "lo") else np.linalg.norm(d)
            if nd == 0:
                continue
            for t in scales:
                off = t * (region.scale or 1.0) * d / nd
                c, (da, db) = region.fit(base, [-off / 2, off / 2])
                a, b = region.project(c + da), region.project(c + db)
                step = (b - a)[0]
                den = np.abs(step).max() if norm == "inf" else np.linalg.norm(step)
                if den == 0:
                    continue
                Ja, Jb = exact_jacobians(net, np.concatenate([a, b]))
                best = max(best, operator_norm(Jb - Ja, norm) / den)
    return float(best)


__all__ += ["NoJacobian", "smoothness_lower"]
