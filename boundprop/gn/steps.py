"""The regularized Gauss-Newton step and its cross-entropy (GGN) form: dense numpy/scipy
linear algebra on an explicit Jacobian (``../shared/refs/gn.md``, sections 0 and 3). The
solver (:mod:`boundprop.gn.solver`) calls these once per trial damping.

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
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.linalg as sla
from scipy.special import logsumexp

__all__ = ["check_gamma", "choose_form", "class_targets", "cross_entropy_gradient",
           "ggn_direction", "gn_direction", "gn_directions_svd", "proximal_step",
           "softmax_parts", "whiten"]

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
    """K + value·I (a copy)."""
    M = K.copy()
    M.flat[:: M.shape[0] + 1] += value
    return M


def choose_form(q: int, p: int, method: str) -> str:
    """The linear system to solve for a (q, p) Jacobian: "auto" is the q×q dual when q < p,
    else the p×p primal; "dual", "primal" or "svd" as asked."""
    if method == "auto":
        return "dual" if q < p else "primal"
    if method not in ("dual", "primal", "svd"):
        raise ValueError(f"method must be 'auto', 'dual', 'primal' or 'svd', got {method!r}")
    return method


def proximal_step(Jd: np.ndarray, r: np.ndarray, gamma: float, De: np.ndarray | None, form: str,
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


def check_gamma(gamma: float) -> float:
    """γ as a float, refused unless positive and finite."""
    gamma = float(gamma)
    if not (gamma > 0 and math.isfinite(gamma)):
        raise ValueError(f"gamma must be positive and finite, got {gamma}")
    return gamma


def _prepare(J, r, e, scaling):
    """(J, r, D, Jd = J D⁻¹, De = D e) as float64 arrays, shapes and scaling checked."""
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
    gamma = check_gamma(gamma)
    J, r, D, Jd, De = _prepare(J, r, e, scaling)
    form = choose_form(*J.shape, method)
    u = proximal_step(Jd, r, gamma, De, form)
    return u if D is None else u / D


def gn_directions_svd(J, r, gammas, e=None, scaling=None) -> list[np.ndarray]:
    """The steps of :func:`gn_direction` for several γ from ONE thin SVD of J D⁻¹."""
    gammas = [check_gamma(g) for g in np.atleast_1d(gammas)]
    J, r, D, Jd, De = _prepare(J, r, e, scaling)
    svd = np.linalg.svd(Jd, full_matrices=False)
    out = []
    for g in gammas:
        u = proximal_step(Jd, r, g, De, "svd", svd)
        out.append(u if D is None else u / D)
    return out



# --------------------------------------------------------------------------------------------
# cross-entropy (GGN)


def softmax_parts(z: np.ndarray, t: np.ndarray, C: int):
    """log π (rows, C) and the whitened residual r̂ = g/√π (rows·C,) with g = π − onehot(t)."""
    Z = np.asarray(z, dtype=np.float64).reshape(-1, C)
    logp = Z - logsumexp(Z, axis=1, keepdims=True)
    rows = np.arange(Z.shape[0])
    rhat = np.exp(0.5 * logp)                               # c ≠ t: π_c/√π_c = √π_c
    lt = np.maximum(logp[rows, t], LOGPI_CLIP)
    rhat[rows, t] = np.expm1(lt) * np.exp(-0.5 * lt)        # (π_t − 1)/√π_t
    return logp, rhat.reshape(-1)


def whiten(J: np.ndarray, logp: np.ndarray) -> np.ndarray:
    """Ĵ = AᵀJ per row: √π ⊙ (J_row − πᵀJ_row), with J (rows·C, n)."""
    rows, C = logp.shape
    pi = np.exp(logp)
    Jb = J.reshape(rows, C, -1)
    mean = np.einsum("rc,rcn->rn", pi, Jb)
    return (np.exp(0.5 * logp)[:, :, None] * (Jb - mean[:, None, :])).reshape(J.shape)


def cross_entropy_gradient(logp: np.ndarray, t: np.ndarray) -> np.ndarray:
    """g = π − onehot(t), flattened (rows·C,): the gradient of the summed cross-entropy in z."""
    g = np.exp(logp)
    g[np.arange(g.shape[0]), t] -= 1.0
    return g.reshape(-1)


def class_targets(targets, rows: int, C: int) -> np.ndarray:
    """The targets as one int64 class in [0, C) per row, or ValueError."""
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
    gamma = check_gamma(gamma)
    J = np.asarray(J, dtype=np.float64)
    z = np.asarray(logits, dtype=np.float64)
    t0 = np.asarray(targets).reshape(-1)
    rows = t0.size
    if rows == 0 or J.shape[0] % rows or z.size != J.shape[0]:
        raise ValueError("logits, targets and J do not agree in size")
    C = J.shape[0] // rows
    t = class_targets(t0, rows, C)
    logp, rhat = softmax_parts(z, t, C)
    if method != "pushthrough":
        return gn_direction(whiten(J, logp), rhat, gamma, e, scaling, method)
    q, p = J.shape
    D2 = np.ones(p) if scaling is None else np.asarray(scaling, dtype=np.float64) ** 2
    pi = np.exp(logp)

    def hmul(U: np.ndarray) -> np.ndarray:          # H U, blockwise, U (q, m)
        Ub = U.reshape(rows, C, -1)
        return (pi[:, :, None] * (Ub - np.einsum("rc,rcm->rm", pi, Ub)[:, None, :])
                ).reshape(U.shape)

    g = cross_entropy_gradient(logp, t)
    rhs = g if e is None else g - hmul((J @ np.asarray(e, dtype=np.float64))[:, None])[:, 0]
    K = (J / D2) @ J.T
    v = sla.solve(np.eye(q) + gamma * hmul(K), rhs)
    d = -gamma * (J.T @ v) / D2
    return d if e is None else d - np.asarray(e, dtype=np.float64)

