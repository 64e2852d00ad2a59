"""Regularized Gauss-Newton / Levenberg-Marquardt on a black-box problem (forward passes only).

The problem object (``boundprop.gn.oracle.Problem``, or any object with the same attributes)
gives residuals for a batch of points, an explicit Jacobian (by batched finite differences) and
Jacobian-vector products; see :func:`solve`. Everything here is dense numpy/scipy linear algebra
on that Jacobian (``../shared/refs/gn.md``, sections 0 and 3).

Objective (what ``cost`` means everywhere in this module)::

    squared:        f(w) = ½‖r(w)‖²                              + λ/2‖w − w0‖²,  r = F(w) − y
    cross_entropy:  f(w) = Σ_rows [logsumexp(z_row) − z_row[t]]  + λ/2‖w − w0‖²,  z = logits

Cross-entropy is *summed* over rows (not averaged), matching ``objective_constants(...,
reduction="sum")`` and the certified step of ``boundprop.gn.uses``.

The step. Linearize at w_k (J = dr/dw or dz/dw) and minimize the model plus a proximal term::

    ½‖r + J d‖² + (1/2γ)‖D(d + e)‖²     (squared; e = w_k − w_t, D = diag(scaling) or I)

with the normal equations ``(JᵀJ + D²/γ) d = −Jᵀr − D²e/γ``. With Jd = J D⁻¹ (Moré scaling):

- dual / push-through (q×q, used when q < p): ``s = (Jd Jdᵀ + I/γ)⁻¹ (r − J e)``,
  ``d = −D⁻¹ Jdᵀ s − e`` (the ``(I_q + γ Jd Jdᵀ)`` form of the refs with s scaled by γ, which
  stays finite when γ → ∞);
- primal (p×p): ``(JdᵀJd + I/γ) u = −Jdᵀ r − D e/γ``, ``d = D⁻¹ u``;
- SVD: Jd = U S Vᵀ gives ``d(γ) = −D⁻¹ V diag(S/(S² + 1/γ)) Uᵀ (r − J e) − e`` for every γ.

Systems are solved by Cholesky (``scipy.linalg.cho_factor``), with ``lstsq`` when the
factorization fails; JᵀJ is never formed when the dual form is used.

The ridge term λ/2‖w − w0‖² is folded exactly into the proximal term: with a = w_k − w0,
``λ‖d + a‖² + (1/γ)‖D d‖² = (1/γ)‖D'(d + e')‖² + const`` where ``D'² = λγ + D²`` and
``e' = λγ a / D'²``, so one call of the step formula covers it (no extra rows in J).

Cross-entropy uses the generalized GN (GGN) model ``gᵀ(Jd) + ½(Jd)ᵀH(Jd)`` with the per-row
softmax Hessian H = diag(π) − ππᵀ and g = π − onehot. Per row, H = A Aᵀ with
``A = diag(√π) − π √πᵀ`` (because H = diag(√π)(I − √π√πᵀ)diag(√π) and I − √π√πᵀ is a
projector), and ``g = A r̂`` with ``r̂ = g/√π`` (r̂_c = √π_c for c ≠ t, r̂_t = −(1 − π_t)/√π_t;
r̂ ⟂ √π, so it is the minimum-norm solution). Hence the GGN model is exactly the
least-squares model of the *whitened* pair ``Ĵ = AᵀJ`` (per row ``√π ⊙ (J_row − πᵀJ_row)``)
and r̂ (up to a constant), and the same dual/primal/SVD step applies. Rows with log π_t < −200
(a cross-entropy above 200 nats) use r̂ with log π_t clipped at −200 to stay finite; the ratio
test still evaluates the exact objective. :func:`ggn_direction` also offers the unfactored
(non-symmetric, LU) push-through form ``d = −γD⁻²Jᵀ(I + γ H J D⁻²Jᵀ)⁻¹(g − H J e) − e``.

Damping and acceptance. Each trial point costs one forward pass (one row of a batched
``problem.residuals`` call). A step is accepted when ρ = actual/predicted decrease > 1e-4
(predicted by the undamped model, including the ridge term), so accepted steps never increase
the evaluated cost. ``damping="lm"``: Nielsen's update γ ← γ / max(1/3, 1 − (2ρ − 1)³) on
acceptance (×3 for ρ ≈ 1, ÷2 for ρ ≈ 0); rejected: retries in batches of ``retry_candidates``
candidates γ/2, γ/8, γ/64, γ/2¹⁰, … (Nielsen's doubling ν), all of a batch in ONE residual call,
at most ``retries`` batches; the lowest-cost accepted candidate is taken.
``damping="grad_norm"`` (Semenov–Jaggi–Doikov, gradient-normalized smoothness): the damping is
λ_k = 1/γ_k = ‖g_k‖/γ̂_k; γ̂ doubles after an accepted step; the paper halves γ̂ on rejection
and retries, here the batched retries use γ̂/4, γ̂/16, … (two halvings per candidate, so a batch
of 3 spans 64×; with halving, 7 trials proved too few on a tanh-MLP test) and γ̂ ← 2γ̂_accepted.
The initial damping (both modes) is 1/γ0 = 10⁻³ · max_j ‖(Jd)_:j‖² (Madsen–Nielsen–Tingleff);
γ is kept below 10¹⁴/‖Jd‖²_F so that the damping never drops under the rounding level.

Random-subspace GN (``method="subspace"``; Cartis–Fowkes–Shao R-SGN, for p ≫ q): a fresh
Gaussian Ω (p×k) every iteration, JΩ from ``problem.jvp(w, Ωᵀ)`` (k passes, no Jacobian), and
the step d = Ω z of ``(ΩᵀJᵀJΩ + ΩᵀΩ/γ) z = −(JΩ)ᵀ r``. It is computed in the orthonormal basis
Q = ΩR⁻¹ (ΩᵀΩ = RᵀR, Cholesky-QR): identical step, a k×k well-scaled problem, ‖d‖ = ‖y‖.

Certified safeguard (``certified_step``): a callable (w, g) → t supplied by a caller who
certifies that the gradient step w − t g decreases f (e.g. t ≤ 1/L_F on a ball containing the
segment, so f decreases by ≥ t‖g‖²/2 by the descent lemma). Each iteration the point w − t g is
evaluated in the same batched call as the GN trial, and the iteration takes whichever accepted
point has the lower evaluated cost (``step_kind`` "gn" or "gradient" in the history). The
iterate is then never worse than a certified gradient-descent step from it, so the certified
decrease (and GD's global guarantees) carry over, while the GN step keeps the fast local rate.
The decrease is only as good as g: g = Jᵀ∇ℓ is computed from the problem's Jacobian. In the
subspace method g is the projected gradient QQᵀ∇f, for which the descent lemma holds as well
(gᵀQQᵀg = ‖QQᵀg‖²).

Stopping (``Result.status``): ``converged: relative cost <= tol`` (cost ≤ tol·cost0);
``converged: noise floor`` (squared loss: cost ≤ ⅛ε² Σ_i (1 + |F_i|)², i.e. every residual is at
the size of one rounding ½ε(1 + |F_i|) of the output in the graph's dtype ε = ``problem.eps`` —
float32 graphs reach about this level, refs sec. 2); ``converged: small step`` (an accepted step
with ‖d‖ ≤ step_tol·(1 + ‖w‖), default step_tol = ε: the graph cannot resolve smaller moves);
``converged: stationary`` (zero gradient, or a GN predicted decrease below the rounding level
of an evaluated cost, ε(cost + Σ_i |∂ℓ/∂F_i|(1 + |F_i|)): no decrease could be measured);
``stalled: no decrease in N trials`` (every trial of an iteration rejected: a wrong Jacobian, or
noise above that estimate); ``stalled: non-finite ...``; ``max_iter``; ``stopped by callback``
(the callback returned True). An iteration's Jacobian is only computed after these tests pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.special import logsumexp

__all__ = ["Result", "gn_direction", "gn_directions_svd", "ggn_direction", "solve"]

ACCEPT_RHO = 1e-4           # ratio-test threshold
INIT_TAU = 1e-3             # initial damping 1/γ0 = τ · max diag(JdᵀJd)
GAMMA_CAP = 1e14            # γ ≤ GAMMA_CAP / ‖Jd‖²_F
LOGPI_CLIP = -200.0         # cross-entropy whitening: log π_t clipped below at this value


# --------------------------------------------------------------------------------------------
# linear algebra


def _spd_solve(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve M x = b for symmetric positive (semi)definite M: Cholesky, lstsq on failure."""
    try:
        c = sla.cho_factor(M, lower=True, check_finite=False)
        x = sla.cho_solve(c, b, check_finite=False)
        if np.all(np.isfinite(x)):
            return x
    except (np.linalg.LinAlgError, sla.LinAlgError, ValueError):
        pass
    return np.linalg.lstsq(M, b, rcond=None)[0]


def _add_diag(K: np.ndarray, value: float) -> np.ndarray:
    M = K.copy()
    M.flat[:: M.shape[0] + 1] += value
    return M


def _choose_form(q: int, p: int, method: str) -> str:
    if method == "auto":
        return "dual" if q < p else "primal"
    if method not in ("dual", "primal", "svd"):
        raise ValueError(f"method must be 'auto', 'dual', 'primal' or 'svd', got {method!r}")
    return method


def _prox_u(Jd: np.ndarray, r: np.ndarray, gamma: float, De: np.ndarray | None, form: str,
            cache: Any = None) -> np.ndarray:
    """u minimizing ½‖r + Jd u‖² + (1/2γ)‖u + De‖² (u = D d, Jd = J D⁻¹, De = D e).

    ``cache``: the Gram matrix of Jd (dual: Jd Jdᵀ, primal: JdᵀJd) or, for "svd", the tuple
    (U, S, Vt) of its thin SVD; computed here when None."""
    inv_g = 1.0 / gamma
    rhs = r if De is None else r - Jd @ De
    if form == "dual":
        K = Jd @ Jd.T if cache is None else cache
        s = _spd_solve(_add_diag(K, inv_g), rhs)
        u = -(Jd.T @ s)
    elif form == "primal":
        K = Jd.T @ Jd if cache is None else cache
        # (JdᵀJd + I/γ)(u + De) = −Jdᵀ(r − Jd De)
        u = _spd_solve(_add_diag(K, inv_g), -(Jd.T @ rhs))
    else:  # svd
        U, S, Vt = np.linalg.svd(Jd, full_matrices=False) if cache is None else cache
        u = -(Vt.T @ ((S / (S * S + inv_g)) * (U.T @ rhs)))
    return u if De is None else u - De


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be positive and finite, got {gamma}")
    return gamma


def _prepare(J, r, e, scaling):
    J = np.asarray(J, dtype=np.float64)
    if J.ndim != 2:
        raise ValueError(f"J must be a (q, p) matrix, got shape {J.shape}")
    q, p = J.shape
    r = np.asarray(r, dtype=np.float64).reshape(q)
    e = None if e is None else np.asarray(e, dtype=np.float64).reshape(p)
    D = None
    if scaling is not None:
        D = np.asarray(scaling, dtype=np.float64).reshape(p)
        if not np.all(D > 0) or not np.all(np.isfinite(D)):
            raise ValueError("scaling must be positive and finite")
    Jd = J if D is None else J / D
    De = None if e is None else (e if D is None else D * e)
    return J, r, D, Jd, De


def gn_direction(J, r, gamma: float, e=None, scaling=None, method: str = "auto") -> np.ndarray:
    """The regularized Gauss-Newton step d minimizing ``½‖r + J d‖² + (1/2γ)‖D(d + e)‖²``.

    J (q, p), r (q,), γ > 0, e (p,) the offset w_k − w_t of the proximal centre (None: 0),
    scaling (p,) the positive diagonal of D (None: identity). ``method``: "auto" (the q×q dual /
    push-through Cholesky when q < p, the p×p primal otherwise), "dual", "primal" or "svd".
    Formulas in the module docstring."""
    gamma = _check_gamma(gamma)
    J, r, D, Jd, De = _prepare(J, r, e, scaling)
    form = _choose_form(*J.shape, method)
    u = _prox_u(Jd, r, gamma, De, form)
    return u if D is None else u / D


def gn_directions_svd(J, r, gammas, e=None, scaling=None) -> list[np.ndarray]:
    """The steps of :func:`gn_direction` for several γ from ONE thin SVD of J D⁻¹."""
    gammas = [_check_gamma(g) for g in np.atleast_1d(gammas)]
    J, r, D, Jd, De = _prepare(J, r, e, scaling)
    svd = np.linalg.svd(Jd, full_matrices=False)
    out = []
    for g in gammas:
        u = _prox_u(Jd, r, g, De, "svd", svd)
        out.append(u if D is None else u / D)
    return out


# --------------------------------------------------------------------------------------------
# cross-entropy (GGN)


def _softmax_parts(z: np.ndarray, t: np.ndarray, C: int):
    """log π (rows, C) and the whitened residual r̂ = g/√π (rows·C,) with g = π − onehot(t)."""
    Z = np.asarray(z, dtype=np.float64).reshape(-1, C)
    logp = Z - logsumexp(Z, axis=1, keepdims=True)
    rows = np.arange(Z.shape[0])
    rhat = np.exp(0.5 * logp)                               # c ≠ t: π_c/√π_c = √π_c
    lt = np.maximum(logp[rows, t], LOGPI_CLIP)
    rhat[rows, t] = np.expm1(lt) * np.exp(-0.5 * lt)        # (π_t − 1)/√π_t
    return logp, rhat.reshape(-1)


def _whiten(J: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Ĵ = AᵀJ per row: √π ⊙ (J_row − πᵀJ_row), with J (rows·C, n)."""
    rows, C = logp.shape
    pi = np.exp(logp)
    Jb = J.reshape(rows, C, -1)
    mean = np.einsum("rc,rcn->rn", pi, Jb)
    return (np.exp(0.5 * logp)[:, :, None] * (Jb - mean[:, None, :])).reshape(J.shape)


def _ce_grad_z(logp: np.ndarray, t: np.ndarray) -> np.ndarray:
    g = np.exp(logp)
    g[np.arange(g.shape[0]), t] -= 1.0
    return g.reshape(-1)


def _targets_int(targets, rows: int, C: int) -> np.ndarray:
    t = np.asarray(targets).reshape(-1)
    if t.size != rows:
        raise ValueError(f"cross-entropy needs one integer class per row ({rows} rows), got "
                         f"{t.size} targets")
    ti = t.astype(np.int64)
    if not np.array_equal(ti, t) or ti.min(initial=0) < 0 or ti.max(initial=0) >= C:
        raise ValueError(f"cross-entropy targets must be integers in [0, {C})")
    return ti


def ggn_direction(J, logits, targets, gamma: float, e=None, scaling=None,
                  method: str = "auto") -> np.ndarray:
    """The generalized GN step for the summed softmax cross-entropy of the logits z (q,):
    ``(JᵀHJ + D²/γ) d = −Jᵀg − D²e/γ`` with per-row H = diag(π) − ππᵀ, g = π − onehot.

    ``logits`` (rows, C) or flat with ``targets`` (rows,) integer classes. ``method``: "auto",
    "dual", "primal", "svd" (the whitened least-squares form Ĵ = AᵀJ, r̂ = g/√π, see the module
    docstring) or "pushthrough" (the unfactored q×q non-symmetric LU form)."""
    gamma = _check_gamma(gamma)
    J = np.asarray(J, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    t0 = np.asarray(targets).reshape(-1)
    rows = t0.size
    if rows == 0 or J.shape[0] % rows or z.size != J.shape[0]:
        raise ValueError("logits, targets and J do not agree in size")
    C = J.shape[0] // rows
    t = _targets_int(t0, rows, C)
    logp, rhat = _softmax_parts(z, t, C)
    if method != "pushthrough":
        return gn_direction(_whiten(J, logp), rhat, gamma, e, scaling, method)
    q, p = J.shape
    D2 = np.ones(p) if scaling is None else np.asarray(scaling, dtype=np.float64) ** 2
    pi = np.exp(logp)

    def hmul(U: np.ndarray) -> np.ndarray:          # H U, blockwise, U (q, m)
        Ub = U.reshape(rows, C, -1)
        return (pi[:, :, None] * (Ub - np.einsum("rc,rcm->rm", pi, Ub)[:, None, :])
                ).reshape(U.shape)

    g = _ce_grad_z(logp, t)
    rhs = g if e is None else g - hmul((J @ np.asarray(e, dtype=np.float64))[:, None])[:, 0]
    K = (J / D2) @ J.T
    v = sla.solve(np.eye(q) + gamma * hmul(K), rhs)
    d = -gamma * (J.T @ v) / D2
    return d if e is None else d - np.asarray(e, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# the objective and the local model


class _Objective:
    """Cost of residual rows for the problem's loss, plus the ridge term."""

    def __init__(self, problem):
        self.loss = str(getattr(problem, "loss", "squared"))
        if self.loss not in ("squared", "cross_entropy"):
            raise ValueError(f"loss must be 'squared' or 'cross_entropy', got {self.loss!r}")
        self.q = int(problem.q)
        self.p = int(problem.p)
        self.lam = float(getattr(problem, "regularization", 0.0) or 0.0)
        if self.lam < 0:
            raise ValueError(f"regularization must be ≥ 0, got {self.lam}")
        self.w0 = np.asarray(problem.w0, dtype=np.float64).reshape(self.p).copy()
        self.eps = float(getattr(problem, "eps", None) or np.finfo(np.float64).eps)
        targets = getattr(problem, "targets", None)
        if self.loss == "cross_entropy":
            self.C = int(tuple(problem.output_shape)[-1])
            if self.q % self.C:
                raise ValueError(f"q = {self.q} is not a multiple of the {self.C} classes")
            self.rows = self.q // self.C
            self.t = _targets_int(targets, self.rows, self.C)
            self.y = None
        else:
            y = None if targets is None else np.asarray(targets, dtype=np.float64).reshape(-1)
            self.y = y if y is not None and y.size == self.q else None

    def reg(self, W: np.ndarray) -> np.ndarray:
        if self.lam == 0:
            return np.zeros(W.shape[0])
        return 0.5 * self.lam * np.sum((W - self.w0) ** 2, axis=1)

    def costs(self, R: np.ndarray, W: np.ndarray) -> np.ndarray:
        """(K,) objective values of residual rows R (K, q) at points W (K, p)."""
        R = np.asarray(R, dtype=np.float64).reshape(W.shape[0], self.q)
        if self.loss == "squared":
            data = 0.5 * np.sum(R * R, axis=1)
        else:
            Z = R.reshape(R.shape[0], self.rows, self.C)
            zt = np.take_along_axis(Z, self.t[None, :, None], axis=2)[..., 0]
            data = np.sum(logsumexp(Z, axis=2) - zt, axis=1)
        with np.errstate(invalid="ignore", over="ignore"):
            c = data + self.reg(W)
        return np.where(np.isfinite(c), c, np.inf)

    def cost(self, r: np.ndarray, w: np.ndarray) -> float:
        return float(self.costs(r[None], w[None])[0])

    def floor(self, r: np.ndarray) -> float:
        """Noise floor of the data cost: ⅛ε² Σ(1 + |F_i|)² (squared loss only; else 0)."""
        if self.loss != "squared":
            return 0.0
        F = r if self.y is None else r + self.y
        return 0.125 * self.eps ** 2 * float(np.sum((1.0 + np.abs(F)) ** 2))

    def cost_noise(self, r: np.ndarray, gz: np.ndarray, cost: float) -> float:
        """Rounding level of an evaluated cost: ε(cost + Σ_i |∂ℓ/∂F_i| (1 + |F_i|)), the
        first-order effect of an error ε(1 + |F_i|) in every output plus the final sum."""
        F = r if self.y is None else r + self.y
        return self.eps * (abs(cost) + float(np.sum(np.abs(gz) * (1.0 + np.abs(F)))))

    def model(self, Jraw: np.ndarray, r: np.ndarray):
        """(Jm, rm, gz): the least-squares model pair (whitened for cross-entropy) and the
        derivative of the data loss w.r.t. the residuals/logits."""
        if self.loss == "squared":
            return Jraw, r, r
        logp, rhat = _softmax_parts(r, self.t, self.C)
        return _whiten(Jraw, logp), rhat, _ce_grad_z(logp, self.t)


class _Model:
    """The damped local model in n coordinates (n = p full, n = k subspace) with its cached
    factorization; ``direction(γ)`` → (y, predicted decrease)."""

    def __init__(self, Jm, rm, gz, Jraw, a, lam, D0, form, to_full):
        self.Jm, self.rm, self.a, self.lam, self.D0 = Jm, rm, a, lam, D0
        self.to_full = to_full
        q, n = Jm.shape
        self.form = _choose_form(q, n, form)
        self.g = Jraw.T @ gz + (lam * a if lam else 0.0)
        self.Jd0 = Jm if D0 is None else Jm / D0
        self.fro2 = float(np.sum(self.Jd0 * self.Jd0))
        # The scaling D' = sqrt(λγ + D0²) is c(γ)·D0 when λ = 0 or D0 = I: cache once.
        self.cacheable = lam == 0 or D0 is None
        self._cache = None

    def gamma_init(self) -> float:
        m = float(np.max(np.sum(self.Jd0 * self.Jd0, axis=0), initial=0.0))
        return 1.0 / (INIT_TAU * m) if m > 0 and math.isfinite(m) else 1.0

    def gamma_max(self) -> float:
        return min(GAMMA_CAP / max(self.fro2, 1e-300), 1e300)

    def _cached(self):
        if self._cache is None:
            J = self.Jd0
            if self.form == "dual":
                self._cache = J @ J.T
            elif self.form == "primal":
                self._cache = J.T @ J
            else:
                self._cache = np.linalg.svd(J, full_matrices=False)
        return self._cache

    def direction(self, gamma: float):
        lam, a = self.lam, self.a
        D0sq = 1.0 if self.D0 is None else self.D0 ** 2
        if lam:
            Dp = np.sqrt(lam * gamma + D0sq) * np.ones(a.size)
            e = lam * gamma * a / (Dp * Dp)
        else:
            Dp = None if self.D0 is None else self.D0
            e = None
        if self.cacheable:
            c = 1.0 if (lam == 0 or Dp is None) else float(Dp[0])   # D' = c·D0
            Jd = self.Jd0 if c == 1.0 else self.Jd0 / c
            cache = self._cached()
            if c != 1.0:
                cache = cache / (c * c) if self.form != "svd" else (
                    cache[0], cache[1] / c, cache[2])
        else:
            Jd = self.Jm / Dp
            cache = None
        De = None if e is None else (e if Dp is None else Dp * e)
        u = _prox_u(Jd, self.rm, gamma, De, self.form, cache)
        y = u if Dp is None else u / Dp
        Jy = self.Jm @ y
        pred = -(float(self.rm @ Jy) + 0.5 * float(Jy @ Jy))
        if lam:
            pred -= lam * (float(a @ y) + 0.5 * float(y @ y))
        return y, pred


# --------------------------------------------------------------------------------------------
# the solver


@dataclass
class Result:
    """Outcome of :func:`solve`. ``forward_passes``/``ort_calls`` are what the problem's
    counters increased by during the solve (so a problem used before still reports this solve's
    cost); ``gamma`` is the γ the next iteration would start from.

    ``history`` has one dict per iteration: iteration, cost (after the iteration), step_norm,
    gamma and damping (= 1/γ) of the step taken (or of the last trial when none was accepted),
    rho (GN ratio actual/predicted; None for a gradient step), accepted, step_kind ("gn",
    "gradient" or None), trials (GN trial points evaluated), grad_norm (‖g‖ of the objective at
    the iteration's start; projected in the subspace method), forward_passes, ort_calls and
    seconds (cumulative since the solve started); with ``certified_step`` also certified_t and
    gradient_cost; with grad_norm damping gamma_hat (γ̂ of the step taken, γ = γ̂/‖g‖)."""

    w: np.ndarray
    cost: float
    cost0: float
    iterations: int
    status: str
    history: list[dict] = field(default_factory=list)
    forward_passes: int = 0
    ort_calls: int = 0
    seconds: float = 0.0
    loss: str = "squared"
    method: str = "full"
    damping: str = "lm"
    gamma: float | None = None

    @property
    def converged(self) -> bool:
        return self.status.startswith("converged")

    def to_json(self) -> dict:
        """A JSON-serializable dict (w as a list; non-finite floats as None)."""
        d = asdict(self)
        d["w"] = np.asarray(self.w, dtype=np.float64).tolist()
        d["converged"] = self.converged
        return _jsonable(d)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x


def _counters(problem) -> tuple[int, int]:
    return int(getattr(problem, "forward_passes", 0) or 0), int(getattr(problem, "ort_calls", 0)
                                                                or 0)


def _retry_factor(damping: str, i: int) -> float:
    """γ multiplier of the i-th (1-based) consecutive rejected trial."""
    if damping == "lm":
        return 2.0 ** (-(i * (i + 1)) // 2)     # Nielsen: ν = 2, 4, 8, … → 1/2, 1/8, 1/64, …
    return 4.0 ** (-i)                           # grad_norm: γ̂/4, γ̂/16, … (batched halvings)


def solve(problem, max_iter: int = 100, tol: float = 1e-10, damping: str = "lm",
          method: str = "full", subspace_dim: int | None = None, gamma0: float | None = None,
          seed: int = 0, callback: Callable[[dict], Any] | None = None,
          certified_step: Callable[[np.ndarray, np.ndarray], float] | None = None, *,
          scaling=None, linear_solver: str = "auto", step_tol: float | None = None,
          retries: int = 2, retry_candidates: int = 3, noise_floor: bool = True,
          explore: tuple[float, ...] = (1e2, 1e4)) -> Result:
    """Minimize the problem's objective (module docstring) by damped Gauss-Newton.

    ``damping``: "lm" (Levenberg–Marquardt, Nielsen's γ update) or "grad_norm" (1/γ_k =
    ‖g_k‖/γ̂_k, Semenov–Jaggi–Doikov); both accept by the 1-pass ratio test. ``method``:
    "full" (explicit J from ``problem.jacobian`` each iteration) or "subspace" (a fresh Gaussian
    p×k sketch, k = ``subspace_dim`` or min(p, 2q), through ``problem.jvp``). ``gamma0``: the
    first γ (default 1/(10⁻³ max_j‖J_:j‖²)). ``certified_step``: optional (w, g) → t, see the
    module docstring. ``callback(entry)`` runs after every iteration with its history entry;
    returning True stops the solve.

    Keyword-only: ``scaling`` None (D = I), "jac" (Moré: running max of the column norms of J,
    full method only) or a fixed positive (p,) array; ``linear_solver`` "auto"/"dual"/
    "primal"/"svd"; ``step_tol`` (default ``problem.eps``); ``retries`` batches of
    ``retry_candidates`` damping candidates after a rejected trial; ``explore``: with LM
    damping, each iteration also tries γ·f for these factors (less damping) in the same batched
    evaluation and keeps the best accepted candidate; ``noise_floor`` enables
    that stopping test."""
    t_start = time.perf_counter()
    if damping not in ("lm", "grad_norm"):
        raise ValueError(f"damping must be 'lm' or 'grad_norm', got {damping!r}")
    if method not in ("full", "subspace"):
        raise ValueError(f"method must be 'full' or 'subspace', got {method!r}")
    if not max_iter >= 0:
        raise ValueError(f"max_iter must be ≥ 0, got {max_iter}")
    _choose_form(1, 2, linear_solver)
    obj = _Objective(problem)
    p, q, lam = obj.p, obj.q, obj.lam
    step_tol = obj.eps if step_tol is None else float(step_tol)
    rng = np.random.default_rng(seed)
    fp0, oc0 = _counters(problem)
    subspace = method == "subspace"
    if subspace and scaling is not None:
        raise ValueError("scaling is only supported with method='full'")
    D_fixed = None
    if scaling is not None and not (isinstance(scaling, str) and scaling == "jac"):
        D_fixed = np.asarray(scaling, dtype=np.float64).reshape(p)
        if not (np.all(D_fixed > 0) and np.all(np.isfinite(D_fixed))):
            raise ValueError("scaling must be positive and finite")
    D_run = None
    k = min(p, int(subspace_dim) if subspace_dim else min(p, 2 * q))
    if k < 1:
        raise ValueError(f"subspace_dim must be ≥ 1, got {subspace_dim}")

    w = obj.w0.copy()
    if subspace:
        J = None
        r = np.asarray(problem.residuals(w[None]), dtype=np.float64).reshape(q)
    else:
        J, r = problem.jacobian(w)
        J = np.asarray(J, dtype=np.float64).reshape(q, p)
        r = np.asarray(r, dtype=np.float64).reshape(q)
    fresh_J = not subspace
    cost = obj.cost(r, w)
    cost0 = cost
    gamma = None if gamma0 is None else _check_gamma(gamma0)
    gamma_hat = None
    history: list[dict] = []
    status = None

    def check_converged(cost: float, r: np.ndarray) -> str | None:
        if cost <= tol * cost0:
            return "converged: relative cost <= tol"
        if noise_floor and obj.loss == "squared" and cost <= obj.floor(r) + 0.5 * lam * float(
                np.sum((w - obj.w0) ** 2)):
            return "converged: noise floor"
        return None

    def record(entry: dict) -> bool:
        fp, oc = _counters(problem)
        entry.update(forward_passes=fp - fp0, ort_calls=oc - oc0,
                     seconds=time.perf_counter() - t_start)
        history.append(entry)
        return bool(callback(entry)) if callback is not None else False

    status = check_converged(cost, r) if math.isfinite(cost) else "stalled: non-finite cost"
    it = 0
    while status is None and it < max_iter:
        it += 1
        # ---- linearize at w
        a = w - obj.w0
        if subspace:
            Om = rng.standard_normal((p, k))
            try:
                R = sla.cholesky(Om.T @ Om, lower=False, check_finite=False)
            except (np.linalg.LinAlgError, sla.LinAlgError):
                R = np.linalg.qr(Om, mode="r")
            B = np.asarray(problem.jvp(w, Om.T), dtype=np.float64).reshape(k, q).T
            Braw = sla.solve_triangular(R, B.T, trans="T", lower=False).T      # J Q
            aq = sla.solve_triangular(R, Om.T @ a, trans="T", lower=False)     # Qᵀ a

            def to_full(y, Om=Om, R=R):
                return Om @ sla.solve_triangular(R, y, lower=False)

            Jm, rm, gz = obj.model(Braw, r)
            model = _Model(Jm, rm, gz, Braw, aq, lam, None, linear_solver, to_full)
        else:
            if not fresh_J:
                J, r = problem.jacobian(w)
                J = np.asarray(J, dtype=np.float64).reshape(q, p)
                r = np.asarray(r, dtype=np.float64).reshape(q)
                cost = obj.cost(r, w)
            fresh_J = False
            Jm, rm, gz = obj.model(J, r)
            D0 = D_fixed
            if isinstance(scaling, str):
                cn = np.sqrt(np.sum(Jm * Jm, axis=0))
                D_run = cn if D_run is None else np.maximum(D_run, cn)
                D0 = np.maximum(D_run, max(float(D_run.max(initial=0.0)) * 1e-12, 1e-300))
            model = _Model(Jm, rm, gz, J, a, lam, D0, linear_solver, lambda y: y)
        gnorm = float(np.linalg.norm(model.g))
        entry: dict = {"iteration": it, "cost": cost, "step_norm": 0.0, "gamma": None,
                       "damping": None, "rho": None, "accepted": False, "step_kind": None,
                       "trials": 0, "grad_norm": gnorm}
        if not math.isfinite(gnorm):
            status = "stalled: non-finite gradient"
        elif gnorm == 0.0:
            status = "converged: stationary"
        if status is not None:
            record(entry)
            break

        # ---- damping for this iteration
        if gamma is None:
            gamma = model.gamma_init()
        if damping == "grad_norm":
            if gamma_hat is None:
                gamma_hat = gamma * gnorm
            gamma = gamma_hat / gnorm
        gmax = model.gamma_max()
        gamma = min(max(gamma, 1e-300), gmax)

        # ---- trials: γ and (lm) less-damped candidates, evaluated in the same batched call —
        # a nearly linear problem then takes the undamped GN step at once instead of spending
        # iterations (each a full Jacobian) to shrink the damping.
        cand = [gamma]
        y0, pred0 = model.direction(gamma)
        if not (pred0 > obj.cost_noise(r, gz, cost)):
            status = "converged: stationary"
            entry.update(gamma=gamma, damping=1.0 / gamma)
            record(entry)
            break
        steps = [(y0, pred0)]
        if damping == "lm":
            for f in explore:
                if gamma * f < gmax:
                    cand.append(gamma * f)
                    steps.append(model.direction(gamma * f))
        grad_point = None
        tcert = None
        if certified_step is not None:
            gfull = model.to_full(model.g)
            tcert = certified_step(w.copy(), gfull.copy())
            tcert = float(tcert) if tcert is not None else 0.0
            if tcert > 0 and math.isfinite(tcert):
                grad_point = w - tcert * gfull
            entry["certified_t"] = tcert
        chosen = None          # (cost, point, residual, kind, gamma, rho, step_norm)
        best_gn = None         # (cost, gamma, rho) of the best accepted GN candidate
        n_tried = 0
        batch = 0
        if len(cand) > 1 and grad_point is None:
            # The least-damped candidate alone first: when the model is good (ρ > 3/4, e.g. a
            # problem linear in w) that is the whole iteration, one evaluation.
            y_opt, pred_opt = steps[-1]
            w_opt = w + model.to_full(y_opt)
            r_opt = np.asarray(problem.residuals(w_opt[None]), dtype=np.float64).reshape(1, q)
            c_opt = float(obj.costs(r_opt, w_opt[None])[0])
            n_tried += 1
            rho_opt = (cost - c_opt) / pred_opt if pred_opt > 0 and math.isfinite(c_opt) \
                else -math.inf
            if rho_opt > 0.75:
                chosen = best_gn = (c_opt, w_opt, r_opt[0], "gn", cand[-1], rho_opt,
                                    float(np.linalg.norm(w_opt - w)))
            else:
                cand, steps = cand[:-1], steps[:-1]
        while chosen is None:
            pts = [w + model.to_full(y) for y, _ in steps]
            if grad_point is not None and batch == 0:
                pts.append(grad_point)
            W = np.stack(pts)
            Rb = np.asarray(problem.residuals(W), dtype=np.float64).reshape(len(pts), q)
            cs = [float(c) for c in obj.costs(Rb, W)]
            options = []
            for j, (gm, (_y, pred)) in enumerate(zip(cand, steps)):
                rho = (cost - cs[j]) / pred if pred > 0 and math.isfinite(cs[j]) else -math.inf
                n_tried += 1
                if rho > ACCEPT_RHO:
                    options.append((cs[j], W[j], Rb[j], "gn", gm, rho, float(np.linalg.norm(
                        W[j] - w))))
            if options:
                best_gn = min(options, key=lambda o: o[0])
            if grad_point is not None and batch == 0:
                entry["gradient_cost"] = float(cs[-1])
                if cs[-1] < cost:
                    options.append((cs[-1], W[-1], Rb[-1], "gradient", None, None,
                                    float(np.linalg.norm(W[-1] - w))))
            if options:
                chosen = min(options, key=lambda o: o[0])
                break
            batch += 1
            if batch > retries:
                break
            idx = range(n_tried, n_tried + retry_candidates)
            cand = [min(max(gamma * _retry_factor(damping, i), 1e-300), gmax)
                    for i in (j + 1 for j in idx)]
            steps = [model.direction(gm) for gm in cand]
        entry["trials"] = n_tried

        # ---- update
        if chosen is None:
            last = cand[-1]
            entry.update(gamma=last, damping=1.0 / last, rho=None)
            status = f"stalled: no decrease in {n_tried} trials"
            record(entry)
            break
        c_new, w_new, r_new, kind, g_used, rho, snorm = chosen
        if best_gn is not None:
            g_acc, rho_acc = best_gn[4], best_gn[5]
            if damping == "lm":
                gamma = g_acc / max(1.0 / 3.0, 1.0 - (2.0 * rho_acc - 1.0) ** 3)
            else:
                gamma_hat = 2.0 * g_acc * gnorm
                gamma = g_acc
            used = g_acc
        else:  # only the certified gradient step decreased the cost: more damping next time
            used = cand[0]
            if damping == "lm":  # as far as the skipped retries would have gone
                gamma = gamma * _retry_factor("lm", 1 + retries)
            else:
                gamma_hat = gamma_hat * _retry_factor("grad_norm", 1)
        entry.update(cost=float(c_new), step_norm=snorm, gamma=used, damping=1.0 / used,
                     rho=None if rho is None else float(rho), accepted=True, step_kind=kind)
        if damping == "grad_norm":
            entry["gamma_hat"] = used * gnorm
        wnorm = float(np.linalg.norm(w))
        w, r, cost = np.array(w_new, dtype=np.float64), np.array(r_new, dtype=np.float64), \
            float(c_new)
        status = check_converged(cost, r)
        if status is None and snorm <= step_tol * (1.0 + wnorm):
            status = "converged: small step"
        if record(entry) and status is None:
            status = "stopped by callback"
    if status is None:
        status = "max_iter"
    fp, oc = _counters(problem)
    return Result(w=w, cost=cost, cost0=cost0, iterations=len(history), status=status,
                  history=history, forward_passes=fp - fp0, ort_calls=oc - oc0,
                  seconds=time.perf_counter() - t_start, loss=obj.loss, method=method,
                  damping=damping, gamma=gamma)
