"""The Gauss-Newton solver (boundprop.gn.solver) on pure-numpy problems: step formulas (dual =
primal = SVD, normal equations, GGN whitening = push-through), LM / grad_norm convergence,
random-subspace GN, the certified safeguard step, the ratio test and the pass counters."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize

from boundprop.gn.result import STATUS_CODES, Result, Status, status_code
from boundprop.gn.solver import solve
from boundprop.gn.steps import ggn_direction, gn_direction, gn_directions_svd

# ---------------------------------------------------------------------------------------------
# numpy problems implementing the solver's duck-typed interface


class NumpyProblem:
    """Base: subclasses define ``_outputs(W) -> (K, q)`` and ``_jac(w) -> (q, p)``."""

    loss = "squared"
    regularization = 0.0
    eps = float(np.finfo(np.float64).eps)

    def __init__(self):
        self.forward_passes = 0
        self.ort_calls = 0
        self.batch_sizes: list[int] = []
        self.jacobian_calls = 0

    def _residual_rows(self, W):
        out = self._outputs(np.atleast_2d(W))
        return out - self.targets.reshape(1, -1) if self.loss == "squared" else out

    def residuals(self, W):
        W = np.atleast_2d(np.asarray(W, dtype=np.float64))
        self.forward_passes += W.shape[0]
        self.ort_calls += 1
        self.batch_sizes.append(W.shape[0])
        return self._residual_rows(W)

    def jacobian(self, w):
        self.jacobian_calls += 1
        self.forward_passes += 2 * self.p + 1       # as central differences would
        self.ort_calls += 1
        w = np.asarray(w, dtype=np.float64)
        return self._jac(w), self._residual_rows(w[None])[0]

    def jvp(self, w, V):
        V = np.atleast_2d(V)
        self.forward_passes += V.shape[0] + 1
        self.ort_calls += 1
        return (self._jac(np.asarray(w, dtype=np.float64)) @ V.T).T

    # exact objective (not counted): for tests and the certified-step oracle
    def f(self, w):
        r = self._residual_rows(np.asarray(w, dtype=np.float64)[None])[0]
        if self.loss == "squared":
            data = 0.5 * float(r @ r)
        else:
            Z = r.reshape(-1, self.output_shape[-1])
            m = Z.max(axis=1, keepdims=True)
            lse = (m + np.log(np.exp(Z - m).sum(axis=1, keepdims=True)))[:, 0]
            data = float(np.sum(lse - Z[np.arange(Z.shape[0]), self.targets]))
        return data + 0.5 * self.regularization * float(np.sum((w - self.w0) ** 2))

    def grad(self, w):
        J = self._jac(w)
        r = self._residual_rows(w[None])[0]
        if self.loss == "squared":
            gz = r
        else:
            Z = r.reshape(-1, self.output_shape[-1])
            P = np.exp(Z - Z.max(axis=1, keepdims=True))
            P /= P.sum(axis=1, keepdims=True)
            P[np.arange(Z.shape[0]), self.targets] -= 1
            gz = P.reshape(-1)
        return J.T @ gz + self.regularization * (w - self.w0)


class TanhInputProblem(NumpyProblem):
    """Input reconstruction through a tanh MLP, N samples: F(x) = W2 tanh(W1 x + b1) + b2
    per sample; w = the N stacked inputs; targets = F(x*)."""

    def __init__(self, n=3, d_in=4, hidden=16, d_out=6, seed=0, start_noise=0.5):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.n, self.d_in, self.d_out = n, d_in, d_out
        self.W1 = rng.standard_normal((hidden, d_in)) / np.sqrt(d_in)
        self.b1 = 0.1 * rng.standard_normal(hidden)
        self.W2 = rng.standard_normal((d_out, hidden)) / np.sqrt(hidden)
        self.b2 = 0.1 * rng.standard_normal(d_out)
        self.p, self.q = n * d_in, n * d_out
        self.output_shape = (n, d_out)
        self.x_true = rng.standard_normal(self.p)
        self.targets = np.zeros(self.q)
        self.targets = self._outputs(self.x_true[None])[0].copy()
        self.w0 = self.x_true + start_noise * rng.standard_normal(self.p)

    def _outputs(self, W):
        X = W.reshape(W.shape[0], self.n, self.d_in)
        H = np.tanh(X @ self.W1.T + self.b1)
        return (H @ self.W2.T + self.b2).reshape(W.shape[0], self.q)

    def _jac(self, w):
        X = w.reshape(self.n, self.d_in)
        S = 1 - np.tanh(X @ self.W1.T + self.b1) ** 2            # (n, hidden)
        J = np.zeros((self.q, self.p))
        for i in range(self.n):
            J[i * self.d_out:(i + 1) * self.d_out, i * self.d_in:(i + 1) * self.d_in] = (
                self.W2 * S[i]) @ self.W1
        return J


class TanhWeightProblem(NumpyProblem):
    """Fitting the first-layer weights (p = d_in·hidden ≫ q = N·d_out): F(W1) = tanh(X W1) V."""

    def __init__(self, n=5, d_in=20, hidden=30, d_out=2, seed=1):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.X = rng.standard_normal((n, d_in)) / np.sqrt(d_in)
        self.V = rng.standard_normal((hidden, d_out)) / np.sqrt(hidden)
        self.shape = (d_in, hidden)
        self.p, self.q = d_in * hidden, n * d_out
        self.output_shape = (n, d_out)
        w_true = rng.standard_normal(self.p)
        self.targets = np.zeros(self.q)
        self.targets = self._outputs(w_true[None])[0].copy()
        self.w0 = rng.standard_normal(self.p)

    def _outputs(self, W):
        W1 = W.reshape(W.shape[0], *self.shape)
        return (np.tanh(self.X @ W1) @ self.V).reshape(W.shape[0], self.q)

    def _jac(self, w):
        W1 = w.reshape(self.shape)
        S = 1 - np.tanh(self.X @ W1) ** 2                       # (n, hidden)
        # F[i, o] = Σ_h tanh(Σ_d X[i,d] W1[d,h]) V[h,o] → dF[i,o]/dW1[d,h] = X[i,d] S[i,h] V[h,o]
        J = np.einsum("id,ih,ho->iodh", self.X, S, self.V)
        return J.reshape(self.q, self.p)


class SoftmaxProblem(NumpyProblem):
    """Multinomial logistic regression on weights: logits z = X W (N, C), w = vec(W), summed
    cross-entropy plus the ridge λ/2‖w − w0‖²."""

    loss = "cross_entropy"

    def __init__(self, n=40, d=5, C=3, lam=0.1, seed=2):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.X = rng.standard_normal((n, d))
        W_true = 2 * rng.standard_normal((d, C))
        logits = self.X @ W_true + 0.7 * rng.standard_normal((n, C))
        self.targets = np.argmax(logits, axis=1)
        self.d, self.C = d, C
        self.p, self.q = d * C, n * C
        self.output_shape = (n, C)
        self.regularization = lam
        self.w0 = 0.1 * rng.standard_normal(self.p)

    def _outputs(self, W):
        Wm = W.reshape(W.shape[0], self.d, self.C)
        return (self.X @ Wm).reshape(W.shape[0], self.q)

    def _jac(self, w):
        # z[i, c] = Σ_d X[i, d] W[d, c]
        J = np.einsum("id,ce->icde", self.X, np.eye(self.C))
        return J.reshape(self.q, self.p)


class Rosenbrock(NumpyProblem):
    """r = [10(x₂ − x₁²), 1 − x₁] from the classic start (−1.2, 1)."""

    def __init__(self):
        super().__init__()
        self.p = self.q = 2
        self.output_shape = (2,)
        self.targets = np.zeros(2)
        self.w0 = np.array([-1.2, 1.0])

    def _outputs(self, W):
        return np.stack([10 * (W[:, 1] - W[:, 0] ** 2), 1 - W[:, 0]], axis=1)

    def _jac(self, w):
        return np.array([[-20 * w[0], 10.0], [-1.0, 0.0]])


class WrongSignJacobian(TanhInputProblem):
    def _jac(self, w):
        return -super()._jac(w)


class CurvatureSabotage(TanhInputProblem):
    """J + N with Nᵀr = 0 and ‖N‖ ≫ ‖J‖: the gradient Jᵀr stays exact, but the GN model's
    curvature is wildly wrong, so GN steps crawl."""

    def _jac(self, w):
        J = super()._jac(w)
        r = self._residual_rows(w[None])[0]
        u = r / np.linalg.norm(r)
        M = np.random.default_rng(7).standard_normal(J.shape)
        return J + 1e3 * (M - np.outer(u, u @ M))


def armijo_certificate(problem):
    """A stand-in for a certified step (the real one comes from boundprop's constants): the
    largest t = 2⁻ᵏ with f(w − t g) ≤ f(w) − t/2‖g‖², checked on the exact objective."""

    def step(w, g):
        f0, gg = problem.f(w), float(g @ g)
        t = 1.0
        for _ in range(60):
            if problem.f(w - t * g) <= f0 - 0.5 * t * gg:
                return t
            t *= 0.5
        return 0.0

    return step


# ---------------------------------------------------------------------------------------------
# step formulas


def _normal_eq_residual(J, r, d, gamma, e, D):
    """‖Jᵀ(r + Jd) + D²(d + e)/γ‖ relative to the size of its terms."""
    t1 = J.T @ (r + J @ d)
    t2 = D ** 2 * (d + e) / gamma
    return np.linalg.norm(t1 + t2) / (np.linalg.norm(J.T @ r) + np.linalg.norm(t2) + 1e-300)


@pytest.mark.parametrize("q,p", [(7, 23), (23, 7), (12, 12)])
@pytest.mark.parametrize("scaled", [False, True])
def test_dual_primal_svd_agree(q, p, scaled):
    rng = np.random.default_rng(q * 100 + p + scaled)
    J = rng.standard_normal((q, p))
    r = rng.standard_normal(q)
    e = rng.standard_normal(p)
    D = rng.uniform(0.3, 3.0, p) if scaled else np.ones(p)
    for gamma in (0.01, 1.3, 50.0):
        ds = {m: gn_direction(J, r, gamma, e=e, scaling=D if scaled else None, method=m)
              for m in ("dual", "primal", "svd", "auto")}
        ref = ds["primal"]
        for m, d in ds.items():
            np.testing.assert_allclose(d, ref, rtol=1e-8, atol=1e-10 * np.linalg.norm(ref),
                                       err_msg=m)
        assert _normal_eq_residual(J, r, ref, gamma, e, D) < 1e-12
        assert _normal_eq_residual(J, r, ds["dual"], gamma, e, D) < 1e-10
    # e = None means e = 0
    np.testing.assert_allclose(gn_direction(J, r, 0.7, method="dual"),
                               gn_direction(J, r, 0.7, e=np.zeros(p), method="primal"),
                               rtol=1e-9, atol=1e-12)


def test_svd_many_gammas_matches_cholesky():
    rng = np.random.default_rng(3)
    J, r, e = rng.standard_normal((9, 30)), rng.standard_normal(9), rng.standard_normal(30)
    D = rng.uniform(0.5, 2.0, 30)
    gammas = [1e-3, 0.1, 1.0, 10.0, 1e4]
    for g, d in zip(gammas, gn_directions_svd(J, r, gammas, e=e, scaling=D)):
        ref = gn_direction(J, r, g, e=e, scaling=D, method="dual")
        np.testing.assert_allclose(d, ref, rtol=1e-8, atol=1e-10 * np.linalg.norm(ref))


def test_step_rank_deficient_and_large_gamma():
    # rank-deficient J, γ so large that JᵀJ + I/γ is nearly singular: still the normal eqs
    rng = np.random.default_rng(4)
    J = rng.standard_normal((30, 3)) @ rng.standard_normal((3, 10))
    r = rng.standard_normal(30)
    d_primal = gn_direction(J, r, 1e6, method="primal")
    d_svd = gn_direction(J, r, 1e6, method="svd")
    np.testing.assert_allclose(d_primal, d_svd, rtol=1e-5, atol=1e-8)
    assert _normal_eq_residual(J, r, d_svd, 1e6, np.zeros(10), np.ones(10)) < 1e-9


def _ggn_primal_reference(J, Z, t, gamma, e, D):
    rows, C = Z.shape
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    H = np.zeros((rows * C, rows * C))
    for i in range(rows):
        H[i * C:(i + 1) * C, i * C:(i + 1) * C] = np.diag(P[i]) - np.outer(P[i], P[i])
    g = P.copy()
    g[np.arange(rows), t] -= 1
    A = J.T @ H @ J + np.diag(D ** 2) / gamma
    return np.linalg.solve(A, -J.T @ g.reshape(-1) - D ** 2 * e / gamma)


@pytest.mark.parametrize("rows,C,p", [(4, 3, 30), (10, 4, 6)])
def test_ggn_whitened_equals_primal_and_pushthrough(rows, C, p):
    rng = np.random.default_rng(rows * C + p)
    J = rng.standard_normal((rows * C, p))
    Z = 3 * rng.standard_normal((rows, C))
    t = rng.integers(0, C, rows)
    e = rng.standard_normal(p)
    D = rng.uniform(0.5, 2.0, p)
    for gamma in (0.05, 2.0, 100.0):
        ref = _ggn_primal_reference(J, Z, t, gamma, e, D)
        for m in ("dual", "primal", "svd", "auto", "pushthrough"):
            d = ggn_direction(J, Z, t, gamma, e=e, scaling=D, method=m)
            np.testing.assert_allclose(d, ref, rtol=1e-7, atol=1e-9 * np.linalg.norm(ref),
                                       err_msg=m)


def test_ggn_confident_wrong_rows():
    # π_t ≈ e^-40 on some rows: the whitened residual is large but the step is still exact
    rng = np.random.default_rng(5)
    rows, C, p = 6, 3, 20
    J = rng.standard_normal((rows * C, p))
    Z = rng.standard_normal((rows, C))
    t = np.zeros(rows, dtype=int)
    Z[:3, 0] -= 40.0
    ref = _ggn_primal_reference(J, Z, t, 0.5, np.zeros(p), np.ones(p))
    for m in ("dual", "primal", "pushthrough"):
        np.testing.assert_allclose(ggn_direction(J, Z.reshape(-1), t, 0.5, method=m), ref,
                                   rtol=1e-6, atol=1e-9 * np.linalg.norm(ref), err_msg=m)


# ---------------------------------------------------------------------------------------------
# the solver


@pytest.mark.parametrize("shape", [dict(n=3, d_in=4, d_out=6), dict(n=3, d_in=8, d_out=3)])
def test_lm_converges_fast(shape):
    prob = TanhInputProblem(**shape)
    res = solve(prob, max_iter=30, tol=1e-12)
    assert res.status == "converged: relative cost <= tol", res.status
    assert res.cost <= 1e-12 * res.cost0
    assert res.iterations <= 15
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert prob.f(res.w) == pytest.approx(res.cost, rel=1e-9, abs=1e-300)


def test_grad_norm_damping_converges():
    prob = TanhInputProblem(seed=3)
    res = solve(prob, max_iter=60, tol=1e-12, damping="grad_norm")
    assert res.cost <= 1e-12 * res.cost0, res.status
    assert res.status.startswith("converged")
    assert all("gamma_hat" in h for h in res.history if h["accepted"])
    # damping follows ‖g‖/γ̂
    for h in res.history:
        if h["accepted"]:
            assert h["damping"] == pytest.approx(h["grad_norm"] / h["gamma_hat"], rel=1e-12)
    # γ̂ doubles after every first-trial acceptance
    hs = res.history
    for h0, h1 in zip(hs, hs[1:]):
        if h1["trials"] == 1 and h1["gamma"] < 1e10:
            assert h1["gamma_hat"] == pytest.approx(2 * h0["gamma_hat"], rel=1e-12)


def test_scaling_jac_and_forced_solvers_converge():
    for kw in (dict(scaling="jac"), dict(linear_solver="svd"), dict(linear_solver="dual")):
        res = solve(TanhInputProblem(seed=4), max_iter=40, tol=1e-12, **kw)
        assert res.cost <= 1e-12 * res.cost0, (kw, res.status)


def test_cross_entropy_ggn_matches_scipy():
    prob = SoftmaxProblem()
    res = solve(prob, max_iter=50, tol=1e-14)
    ref = minimize(prob.f, prob.w0, jac=prob.grad, method="BFGS",
                   options=dict(gtol=1e-10, maxiter=1000))
    assert res.status.startswith("converged"), res.status
    assert res.cost == pytest.approx(ref.fun, rel=1e-9)
    assert np.linalg.norm(prob.grad(res.w)) < 1e-6
    assert res.iterations <= 25
    assert prob.f(res.w) == pytest.approx(res.cost, rel=1e-12)


def test_subspace_reduces_cost_without_jacobian():
    prob = TanhWeightProblem()
    assert prob.p >= 50 * prob.q
    res = solve(prob, method="subspace", max_iter=25, tol=1e-12, seed=1)
    assert prob.jacobian_calls == 0
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert res.cost < 1e-3 * res.cost0, (res.cost, res.cost0, res.status)
    # k = 2q directions per iteration plus the trial rows
    assert res.forward_passes >= res.iterations * 2 * prob.q


def test_subspace_with_ridge_and_certified_step():
    prob = TanhWeightProblem(seed=5)
    prob.regularization = 1e-3
    res = solve(prob, method="subspace", subspace_dim=15, max_iter=15,
                certified_step=armijo_certificate(prob))
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert res.cost < 0.25 * res.cost0
    assert all("certified_t" in h for h in res.history)
    # the full method reaches the ridge problem's stationary point (not cost 0)
    full = solve(prob, max_iter=100, tol=1e-14)
    assert full.status == "converged: stationary", full.status
    assert np.linalg.norm(prob.grad(full.w)) < 1e-8
    assert full.cost < res.cost


def test_subspace_of_full_dimension_equals_full_gn():
    # k = p: range(Ω) = R^p, so the subspace step is the full step (same γ, ridge included)
    costs = {}
    for method in ("full", "subspace"):
        prob = TanhInputProblem(seed=12)
        prob.regularization = 0.05
        res = solve(prob, method=method, subspace_dim=prob.p, gamma0=3.0, max_iter=8, tol=0)
        costs[method] = [h["cost"] for h in res.history]
        assert res.status.startswith("converged") or res.status == "max_iter", res.status
    n = min(len(costs["full"]), len(costs["subspace"]))
    assert n >= 5
    np.testing.assert_allclose(costs["subspace"][:n], costs["full"][:n], rtol=1e-9)


def test_certified_step_monotone():
    prob = TanhInputProblem(seed=6)
    res = solve(prob, max_iter=30, tol=1e-12, certified_step=armijo_certificate(prob))
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert res.cost <= 1e-12 * res.cost0
    assert {h["step_kind"] for h in res.history} <= {"gn", "gradient"}
    assert all("gradient_cost" in h for h in res.history)


def test_certified_step_rescues_sabotaged_gn():
    # the GN model's curvature is wrong (the gradient is exact): GN alone crawls, the certified
    # gradient step is taken and decreases the cost in every iteration
    gn_only = solve(CurvatureSabotage(seed=8), max_iter=10, tol=1e-14)
    prob = CurvatureSabotage(seed=8)
    res = solve(prob, max_iter=10, tol=1e-14, certified_step=armijo_certificate(prob))
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert res.iterations == 10
    assert all(h["accepted"] for h in res.history)
    assert all(b < a for a, b in zip(costs, costs[1:]))
    kinds = [h["step_kind"] for h in res.history]
    assert kinds.count("gradient") >= 8, kinds
    assert res.cost < 0.5 * gn_only.cost


def test_ratio_test_rejects_wrong_sign_jacobian():
    # every GN step (and the gradient from the same wrong J) goes uphill: all trials are
    # rejected, the cost never increases and the solver reports the stall
    for cert in (False, True):
        prob = WrongSignJacobian(seed=9)
        res = solve(prob, max_iter=5, certified_step=armijo_certificate(prob) if cert else None)
        assert res.status.startswith("stalled"), res.status
        assert res.cost == res.cost0
        np.testing.assert_array_equal(res.w, prob.w0)
        assert not res.history[-1]["accepted"]
        assert res.history[-1]["trials"] == 3 + 2 * 3  # γ + 2 explored, 2 retry batches of 3


def test_ratio_test_on_rosenbrock_with_retries_batched():
    prob = Rosenbrock()
    res = solve(prob, max_iter=100, tol=1e-20, gamma0=1e3)
    np.testing.assert_allclose(res.w, [1.0, 1.0], atol=1e-8)
    costs = [res.cost0] + [h["cost"] for h in res.history]
    assert all(b <= a for a, b in zip(costs, costs[1:]))
    assert any(h["trials"] > 1 for h in res.history)          # some steps were rejected
    assert 3 in prob.batch_sizes                               # retries: 3 γ's in one call
    assert all(h["rho"] > 1e-4 for h in res.history if h["accepted"])


def test_counters_history_and_json():
    prob = TanhInputProblem(seed=10)
    prob.forward_passes, prob.ort_calls = 100, 7          # used before the solve
    seen = []
    res = solve(prob, max_iter=20, tol=1e-12, callback=seen.append)
    assert isinstance(res, Result)
    assert res.forward_passes == prob.forward_passes - 100 > 0
    assert res.ort_calls == prob.ort_calls - 7 > 0
    assert seen == res.history and len(seen) == res.iterations
    assert res.history[-1]["forward_passes"] == res.forward_passes
    assert res.history[-1]["ort_calls"] == res.ort_calls
    fps = [h["forward_passes"] for h in res.history]
    assert fps == sorted(fps)
    keys = {"iteration", "cost", "step_norm", "gamma", "damping", "accepted", "forward_passes",
            "ort_calls", "seconds", "step_kind", "rho", "trials"}
    assert keys <= set(res.history[0])
    d = json.loads(json.dumps(res.to_json()))
    assert d["status"] == res.status and len(d["w"]) == prob.p and d["iterations"] == res.iterations
    # 1 Jacobian per iteration (the start's doubles as iteration 1's) plus ≥ 1 trial row each
    assert prob.jacobian_calls == res.iterations


def test_callback_can_stop_and_noise_floor():
    prob = TanhInputProblem(seed=11)
    res = solve(prob, max_iter=50, callback=lambda h: h["iteration"] >= 2)
    assert res.status == "stopped by callback" and res.iterations == 2
    # a float32-like noise level: stop at the floor, not at tol
    prob = TanhInputProblem(seed=11)
    prob.eps = float(np.finfo(np.float32).eps)
    res = solve(prob, max_iter=50, tol=1e-30)
    assert res.status == "converged: noise floor", res.status
    F = prob._outputs(res.w[None])[0]
    assert res.cost <= 0.125 * prob.eps ** 2 * np.sum((1 + np.abs(F)) ** 2)


def test_bad_arguments():
    prob = TanhInputProblem()
    with pytest.raises(ValueError):
        solve(prob, damping="newton")
    with pytest.raises(ValueError):
        solve(prob, method="cg")
    with pytest.raises(ValueError):
        gn_direction(np.eye(2), np.ones(2), -1.0)
    with pytest.raises(ValueError):
        gn_direction(np.eye(2), np.ones(2), 1.0, method="qr")


# ---------------------------------------------------------------------------------------------
# the result in scipy.optimize's vocabulary


def _stops():
    """(message prefix, result) of solves that stop for each reason."""
    wrong = WrongSignJacobian(seed=9)
    ridge = TanhWeightProblem(seed=5)
    ridge.regularization = 1e-3
    noisy = TanhInputProblem(seed=11)
    noisy.eps = float(np.finfo(np.float32).eps)
    return [
        ("converged: relative cost <= tol", solve(TanhInputProblem(seed=1), max_iter=30,
                                                   tol=1e-12)),
        ("converged: stationary", solve(ridge, max_iter=100, tol=1e-14)),
        ("converged: noise floor", solve(noisy, max_iter=50, tol=1e-30)),
        ("converged: small step", solve(TanhInputProblem(seed=1), max_iter=30, tol=0,
                                        step_tol=1e-2, noise_floor=False)),
        ("max_iter", solve(TanhInputProblem(seed=1), max_iter=1, tol=0)),
        ("stopped by callback", solve(TanhInputProblem(seed=1), callback=lambda h: True)),
        ("stalled: no decrease", solve(wrong, max_iter=5)),
    ]


def test_result_speaks_scipy_least_squares():
    # scipy.optimize.least_squares: 1 gtol, 2 ftol, 3 xtol, 0 evaluation limit, -2 callback;
    # success = status > 0
    expected = {"converged: relative cost <= tol": 2, "converged: stationary": 1,
                "converged: noise floor": 2, "converged: small step": 3, "max_iter": 0,
                "stopped by callback": -2, "stalled: no decrease": -3}
    for prefix, res in _stops():
        assert res.message.startswith(prefix), (prefix, res.message)
        assert isinstance(res.status, int) and not isinstance(res.status, bool)
        assert int(res.status) == expected[prefix], (prefix, int(res.status))
        assert res.success is (int(res.status) > 0) is res.converged
        assert res.x is res.w and res.x.ndim == 1
        assert res.nit == res.iterations == len(res.history)
        assert res.nfev == res.forward_passes > 0
        d = json.loads(json.dumps(res.to_json()))
        assert (d["nit"], d["nfev"], d["message"], d["success"], d["status_code"]) == (
            res.nit, res.nfev, res.message, res.success, int(res.status))


def test_status_is_an_int_that_still_reads_as_its_message():
    status = Status("stalled: non-finite cost")
    assert int(status) == -4 and status < 0 and status == -4 and status != -3
    assert status == "stalled: non-finite cost" and status != "stalled"
    assert status.startswith("stalled") and not status.startswith("converged")
    assert str(status) == f"{status}" == "stalled: non-finite cost"
    assert f"{status:d}" == "-4" and repr(status) == "Status(-4, 'stalled: non-finite cost')"
    assert {status: 1}[-4] == 1
    import copy
    import pickle
    for clone in (copy.deepcopy(status), pickle.loads(pickle.dumps(status))):
        assert int(clone) == -4 and clone.message == status.message
    assert status_code("converged: relative cost <= tol") == 2
    assert status_code("stalled: no decrease in 9 trials") == -3
    assert all(isinstance(code, int) for _, code in STATUS_CODES)
    with pytest.raises(ValueError):
        status_code("done")


def test_result_fields_are_scipy_names_with_old_aliases():
    res = Result(x=np.zeros(2), cost=0.0, cost0=1.0, nit=3, message="max_iter", nfev=7)
    assert (res.w is res.x, res.iterations, res.forward_passes) == (True, 3, 7)
    assert res.status == 0 and res.status == "max_iter" and not res.success
    with pytest.raises(AttributeError):
        res.w = np.ones(2)
