"""The objective of the Gauss-Newton solver and its damped local model (the formulas are in
the docstrings of :mod:`boundprop.gn.solver` and :mod:`boundprop.gn.steps`)::

    squared:        f(w) = ½‖r(w)‖²                              + λ/2‖w − w0‖²,  r = F(w) − y
    cross_entropy:  f(w) = Σ_rows [logsumexp(z_row) − z_row[t]]  + λ/2‖w − w0‖²,  z = logits
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from boundprop.gn.steps import (
    choose_form,
    class_targets,
    cross_entropy_gradient,
    proximal_step,
    softmax_parts,
    whiten,
)

__all__ = ["LocalModel", "Objective"]

INIT_TAU = 1e-3             # initial damping 1/γ0 = τ · max diag(JdᵀJd)
GAMMA_CAP = 1e14            # γ ≤ GAMMA_CAP / ‖Jd‖²_F


class Objective:
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
            self.t = class_targets(targets, self.rows, self.C)
            self.y = None
        else:
            y = None if targets is None else np.asarray(targets, dtype=np.float64).reshape(-1)
            self.y = y if y is not None and y.size == self.q else None

    def reg(self, W: np.ndarray) -> np.ndarray:
        """(K,) ridge terms λ/2‖w − w0‖² of the points W (K, p)."""
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
        """f at one point w with residuals r."""
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
        logp, rhat = softmax_parts(r, self.t, self.C)
        return whiten(Jraw, logp), rhat, cross_entropy_gradient(logp, self.t)


class LocalModel:
    """The damped local model in n coordinates (n = p full, n = k subspace) with its cached
    factorization; ``direction(γ)`` → (y, predicted decrease)."""

    def __init__(self, Jm, rm, gz, Jraw, a, lam, D0, form, to_full):
        self.Jm, self.rm, self.a, self.lam, self.D0 = Jm, rm, a, lam, D0
        self.to_full = to_full
        self.gz = gz
        q, n = Jm.shape
        self.form = choose_form(q, n, form)
        self.g = Jraw.T @ gz + (lam * a if lam else 0.0)
        self.Jd0 = Jm if D0 is None else Jm / D0
        self.fro2 = float(np.sum(self.Jd0 * self.Jd0))
        # The scaling D' = sqrt(λγ + D0²) is c(γ)·D0 when λ = 0 or D0 = I: cache once.
        self.cacheable = lam == 0 or D0 is None
        self._cache = None

    def gamma_init(self) -> float:
        """γ0 = 1/(τ · max_j ‖(Jd)_:j‖²) (Madsen–Nielsen–Tingleff), 1 for a zero Jacobian."""
        m = float(np.max(np.sum(self.Jd0 * self.Jd0, axis=0), initial=0.0))
        return 1.0 / (INIT_TAU * m) if m > 0 and math.isfinite(m) else 1.0

    def gamma_max(self) -> float:
        """γ_max = GAMMA_CAP/‖Jd‖²_F: the damping 1/γ stays above the rounding level."""
        return min(GAMMA_CAP / max(self.fro2, 1e-300), 1e300)

    def _cached(self):
        """Jd Jdᵀ (dual), JdᵀJd (primal) or the thin SVD of Jd, computed once."""
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
        """(y, predicted decrease): the damped step of the model in its n coordinates,
        with the ridge folded into the scaling D' = √(λγ + D0²) (``boundprop.gn.steps``), and
        the decrease −(rᵀJy + ½‖Jy‖²) − λ(aᵀy + ½‖y‖²) the undamped model predicts for it."""
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
        u = proximal_step(Jd, self.rm, gamma, De, self.form, cache)
        y = u if Dp is None else u / Dp
        Jy = self.Jm @ y
        pred = -(float(self.rm @ Jy) + 0.5 * float(Jy @ Jy))
        if lam:
            pred -= lam * (float(a @ y) + 0.5 * float(y @ y))
        return y, pred
