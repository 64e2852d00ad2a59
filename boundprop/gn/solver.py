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

The step formulas (dual, primal, SVD, the folded ridge term, the cross-entropy GGN whitening)
are in :mod:`boundprop.gn.steps`; the result in :mod:`boundprop.gn.result`.

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

Stopping (``Result.message``; ``Result.status`` is its scipy-style int code, see
:class:`boundprop.gn.result.Result`): ``converged: relative cost <= tol`` (cost ≤ tol·cost0);
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
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg as sla

from boundprop.gn.model import LocalModel, Objective
from boundprop.gn.result import Result
from boundprop.gn.steps import check_gamma, choose_form

__all__ = ["solve"]

ACCEPT_RHO = 1e-4           # ratio-test threshold


# --------------------------------------------------------------------------------------------
# the solver


def _counters(problem) -> tuple[int, int]:
    """The problem's (forward_passes, ort_calls) counters, 0 where it has none."""
    return int(getattr(problem, "forward_passes", 0) or 0), int(getattr(problem, "ort_calls", 0)
                                                                or 0)


def _retry_factor(damping: str, i: int) -> float:
    """γ multiplier of the i-th (1-based) consecutive rejected trial."""
    if damping == "lm":
        return 2.0 ** (-(i * (i + 1)) // 2)     # Nielsen: ν = 2, 4, 8, … → 1/2, 1/8, 1/64, …
    return 4.0 ** (-i)                           # grad_norm: γ̂/4, γ̂/16, … (batched halvings)


@dataclass
class _Options:
    """The checked settings of one :func:`solve` call (documented there)."""

    max_iter: int
    tol: float
    damping: str
    method: str
    subspace_dim: int                  # k, the sketch size of the subspace method
    fixed_scaling: np.ndarray | None   # D of a given (p,) ``scaling``
    jac_scaling: bool                  # scaling="jac": D = running max of J's column norms
    linear_solver: str
    step_tol: float
    retries: int
    retry_candidates: int
    noise_floor: bool
    explore: tuple[float, ...]
    callback: Callable[[dict], Any] | None
    certified_step: Callable[[np.ndarray, np.ndarray], float] | None

    @property
    def subspace(self) -> bool:
        return self.method == "subspace"


def _checked_options(obj: Objective, settings: dict) -> _Options:
    """The settings of :func:`solve` checked (ValueError on a bad one) and completed."""
    scaling = settings.pop("scaling")
    subspace_dim = settings.pop("subspace_dim")
    step_tol = settings.pop("step_tol")
    step_tol = obj.eps if step_tol is None else float(step_tol)
    if settings["method"] == "subspace" and scaling is not None:
        raise ValueError("scaling is only supported with method='full'")
    fixed = None
    if scaling is not None and not (isinstance(scaling, str) and scaling == "jac"):
        fixed = np.asarray(scaling, dtype=np.float64).reshape(obj.p)
        if not (np.all(fixed > 0) and np.all(np.isfinite(fixed))):
            raise ValueError("scaling must be positive and finite")
    p, q = obj.p, obj.q
    k = min(p, int(subspace_dim) if subspace_dim else min(p, 2 * q))
    if k < 1:
        raise ValueError(f"subspace_dim must be ≥ 1, got {subspace_dim}")
    return _Options(subspace_dim=k, fixed_scaling=fixed, jac_scaling=isinstance(scaling, str),
                    step_tol=step_tol, **settings)


@dataclass
class _State:
    """What changes from one iteration to the next."""

    w: np.ndarray
    r: np.ndarray
    cost: float
    jacobian: np.ndarray | None       # J at w (full method), computed with r
    jacobian_is_fresh: bool           # J is the start's: iteration 1 reuses it
    gamma: float | None               # the next iteration's γ (None: from the first model)
    gamma_hat: float | None = None    # grad_norm damping's γ̂
    column_norms: np.ndarray | None = None  # scaling="jac": running max of J's column norms
    history: list[dict] = field(default_factory=list)
    message: str | None = None        # why the solve stopped (None while it runs)


class _Accepted(NamedTuple):
    """A trial point that passed the test (a GN step by ρ, the gradient step by a decrease)."""

    cost: float
    point: np.ndarray
    residual: np.ndarray
    kind: str                 # "gn" or "gradient"
    gamma: float | None       # the GN step's γ
    rho: float | None         # its ratio actual/predicted decrease
    step_norm: float


class _Solve:
    """One run of :func:`solve`: the start, then iterations — linearize, set the damping, try
    candidate steps in batched residual calls, take the best accepted one — until a stop."""

    def __init__(self, problem, obj: Objective, options: _Options, rng, t_start: float):
        self.problem, self.obj, self.opt, self.rng = problem, obj, options, rng
        self.t_start = t_start
        self.fp0, self.oc0 = _counters(problem)

    def residuals(self, W: np.ndarray) -> np.ndarray:
        """(K, q) residual rows of the points W (K, p), in one problem call."""
        R = self.problem.residuals(W)
        return np.asarray(R, dtype=np.float64).reshape(W.shape[0], self.obj.q)

    def jacobian(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(J (q, p), r (q,)) at w from the problem."""
        J, r = self.problem.jacobian(w)
        q, p = self.obj.q, self.obj.p
        return (np.asarray(J, dtype=np.float64).reshape(q, p),
                np.asarray(r, dtype=np.float64).reshape(q))

    def start(self, gamma0: float | None) -> _State:
        """The state at w0: residuals (subspace) or Jacobian and residuals (full)."""
        w = self.obj.w0.copy()
        if self.opt.subspace:
            J, r = None, self.residuals(w[None])[0]
        else:
            J, r = self.jacobian(w)
        gamma = None if gamma0 is None else check_gamma(gamma0)
        return _State(w=w, r=r, cost=self.obj.cost(r, w), jacobian=J,
                      jacobian_is_fresh=not self.opt.subspace, gamma=gamma)

    def convergence(self, st: _State, cost0: float) -> str | None:
        """The cost tests of the stopping rules (module docstring), or None."""
        obj = self.obj
        if st.cost <= self.opt.tol * cost0:
            return "converged: relative cost <= tol"
        if self.opt.noise_floor and obj.loss == "squared" and st.cost <= obj.floor(
                st.r) + 0.5 * obj.lam * float(np.sum((st.w - obj.w0) ** 2)):
            return "converged: noise floor"
        return None

    def record(self, st: _State, entry: dict) -> bool:
        """Append the iteration's history entry (with the counters and the time so far); the
        callback's verdict: True asks to stop."""
        fp, oc = _counters(self.problem)
        entry.update(forward_passes=fp - self.fp0, ort_calls=oc - self.oc0,
                     seconds=time.perf_counter() - self.t_start)
        st.history.append(entry)
        return bool(self.opt.callback(entry)) if self.opt.callback is not None else False

    # ---- linearize at w
    def subspace_model(self, st: _State, a: np.ndarray) -> LocalModel:
        """The model in the orthonormal basis Q = ΩR⁻¹ of a fresh Gaussian sketch Ω (p×k):
        JQ from k directional derivatives, Qᵀa for the ridge offset."""
        p, q, k = self.obj.p, self.obj.q, self.opt.subspace_dim
        Om = self.rng.standard_normal((p, k))
        try:
            R = sla.cholesky(Om.T @ Om, lower=False, check_finite=False)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            R = np.linalg.qr(Om, mode="r")
        B = np.asarray(self.problem.jvp(st.w, Om.T), dtype=np.float64).reshape(k, q).T
        Braw = sla.solve_triangular(R, B.T, trans="T", lower=False).T      # J Q
        aq = sla.solve_triangular(R, Om.T @ a, trans="T", lower=False)     # Qᵀ a

        def to_full(y, Om=Om, R=R):
            return Om @ sla.solve_triangular(R, y, lower=False)

        Jm, rm, gz = self.obj.model(Braw, st.r)
        return LocalModel(Jm, rm, gz, Braw, aq, self.obj.lam, None, self.opt.linear_solver, to_full)

    def full_model(self, st: _State, a: np.ndarray) -> LocalModel:
        """The model on the full Jacobian at w (the start's, or a new one with fresh residuals
        and cost), with the scaling D of the options."""
        if not st.jacobian_is_fresh:
            st.jacobian, st.r = self.jacobian(st.w)
            st.cost = self.obj.cost(st.r, st.w)
        st.jacobian_is_fresh = False
        Jm, rm, gz = self.obj.model(st.jacobian, st.r)
        D0 = self.opt.fixed_scaling
        if self.opt.jac_scaling:
            cn = np.sqrt(np.sum(Jm * Jm, axis=0))
            st.column_norms = cn if st.column_norms is None else np.maximum(st.column_norms, cn)
            top = float(st.column_norms.max(initial=0.0))
            D0 = np.maximum(st.column_norms, max(top * 1e-12, 1e-300))
        return LocalModel(Jm, rm, gz, st.jacobian, a, self.obj.lam, D0, self.opt.linear_solver,
                      lambda y: y)

    # ---- damping and candidates
    def damping(self, st: _State, model: LocalModel, gnorm: float) -> tuple[float, float]:
        """(γ, γ_max) of this iteration: the first from the model's scale, grad_norm's
        γ̂/‖g‖, clamped to (0, γ_max]; γ is stored in the state."""
        gamma = model.gamma_init() if st.gamma is None else st.gamma
        if self.opt.damping == "grad_norm":
            if st.gamma_hat is None:
                st.gamma_hat = gamma * gnorm
            gamma = st.gamma_hat / gnorm
        gmax = model.gamma_max()
        st.gamma = min(max(gamma, 1e-300), gmax)
        return st.gamma, gmax

    def explored(self, model: LocalModel, gamma: float, gmax: float, first) -> tuple[list, list]:
        """(γs, steps): γ with its step ``first`` and, with LM damping, the less-damped γ·f
        for f in ``explore`` below γ_max — all evaluated in the same batched call, so a nearly
        linear problem takes the undamped GN step at once instead of spending iterations
        (each a full Jacobian) to shrink the damping."""
        gammas, steps = [gamma], [first]
        if self.opt.damping == "lm":
            for f in self.opt.explore:
                if gamma * f < gmax:
                    gammas.append(gamma * f)
                    steps.append(model.direction(gamma * f))
        return gammas, steps

    def gradient_point(self, st: _State, model: LocalModel, entry: dict) -> np.ndarray | None:
        """w − t g with the certified t (module docstring); None without a positive t."""
        if self.opt.certified_step is None:
            return None
        gfull = model.to_full(model.g)
        t = self.opt.certified_step(st.w.copy(), gfull.copy())
        t = float(t) if t is not None else 0.0
        entry["certified_t"] = t
        return st.w - t * gfull if t > 0 and math.isfinite(t) else None

    # ---- trials
    @staticmethod
    def rho(cost: float, new_cost: float, predicted: float) -> float:
        """ρ = actual / predicted decrease (−∞ for a non-finite cost or no predicted one)."""
        if predicted > 0 and math.isfinite(new_cost):
            return (cost - new_cost) / predicted
        return -math.inf

    def probe(self, st: _State, model: LocalModel, gamma: float, step) -> _Accepted | None:
        """The least-damped candidate alone, one evaluation: when the model is good (ρ > 3/4,
        e.g. a problem linear in w) that is the whole iteration."""
        y, predicted = step
        w_new = st.w + model.to_full(y)
        r_new = self.residuals(w_new[None])
        c_new = float(self.obj.costs(r_new, w_new[None])[0])
        rho = self.rho(st.cost, c_new, predicted)
        if rho > 0.75:
            return _Accepted(c_new, w_new, r_new[0], "gn", gamma, rho,
                             float(np.linalg.norm(w_new - st.w)))
        return None

    def batch(self, st: _State, model: LocalModel, gammas: list, steps: list,
              gradient_point: np.ndarray | None, entry: dict):
        """One batched residual call on the GN candidates (and the gradient point): (the
        accepted GN candidates, every accepted point including the gradient point)."""
        pts = [st.w + model.to_full(y) for y, _ in steps]
        if gradient_point is not None:
            pts.append(gradient_point)
        W = np.stack(pts)
        R = self.residuals(W)
        cs = [float(c) for c in self.obj.costs(R, W)]
        accepted = []
        for j, (gm, (_y, predicted)) in enumerate(zip(gammas, steps)):
            rho = self.rho(st.cost, cs[j], predicted)
            if rho > ACCEPT_RHO:
                accepted.append(_Accepted(cs[j], W[j], R[j], "gn", gm, rho,
                                          float(np.linalg.norm(W[j] - st.w))))
        options = list(accepted)
        if gradient_point is not None:
            entry["gradient_cost"] = float(cs[-1])
            if cs[-1] < st.cost:
                options.append(_Accepted(cs[-1], W[-1], R[-1], "gradient", None, None,
                                         float(np.linalg.norm(W[-1] - st.w))))
        return accepted, options

    def search(self, st: _State, model: LocalModel, gammas: list, steps: list, gmax: float,
               gradient_point: np.ndarray | None, entry: dict):
        """Try the candidates, then up to ``retries`` batches of more damped ones, until one
        is accepted: (the chosen point or None, the best accepted GN point or None, the last
        batch's γs, the number of GN trials)."""
        opt = self.opt
        chosen = best_gn = None
        trials = 0
        if len(gammas) > 1 and gradient_point is None:
            chosen = best_gn = self.probe(st, model, gammas[-1], steps[-1])
            trials += 1
            if chosen is None:
                gammas, steps = gammas[:-1], steps[:-1]
        batch = 0
        while chosen is None:
            accepted, options = self.batch(st, model, gammas, steps,
                                           gradient_point if batch == 0 else None, entry)
            trials += len(gammas)
            if accepted:
                best_gn = min(accepted, key=lambda o: o.cost)
            if options:
                chosen = min(options, key=lambda o: o.cost)
                break
            batch += 1
            if batch > opt.retries:
                break
            gammas = [min(max(st.gamma * _retry_factor(opt.damping, i + 1), 1e-300), gmax)
                      for i in range(trials, trials + opt.retry_candidates)]
            steps = [model.direction(gm) for gm in gammas]
        return chosen, best_gn, gammas, trials

    # ---- update
    def take(self, st: _State, entry: dict, chosen: _Accepted, best_gn: _Accepted | None,
             gammas: list, gnorm: float, cost0: float) -> None:
        """Move to the chosen point, update the damping (Nielsen / γ̂ doubling from the best
        accepted GN step; more damping when only the gradient step decreased), record."""
        opt = self.opt
        if best_gn is not None:
            if opt.damping == "lm":
                st.gamma = best_gn.gamma / max(1.0 / 3.0, 1.0 - (2.0 * best_gn.rho - 1.0) ** 3)
            else:
                st.gamma_hat = 2.0 * best_gn.gamma * gnorm
                st.gamma = best_gn.gamma
            used = best_gn.gamma
        else:  # only the certified gradient step decreased the cost: more damping next time
            used = gammas[0]
            if opt.damping == "lm":  # as far as the skipped retries would have gone
                st.gamma = st.gamma * _retry_factor("lm", 1 + opt.retries)
            else:
                st.gamma_hat = st.gamma_hat * _retry_factor("grad_norm", 1)
        entry.update(cost=float(chosen.cost), step_norm=chosen.step_norm, gamma=used,
                     damping=1.0 / used, rho=None if chosen.rho is None else float(chosen.rho),
                     accepted=True, step_kind=chosen.kind)
        if opt.damping == "grad_norm":
            entry["gamma_hat"] = used * gnorm
        wnorm = float(np.linalg.norm(st.w))
        st.w = np.array(chosen.point, dtype=np.float64)
        st.r = np.array(chosen.residual, dtype=np.float64)
        st.cost = float(chosen.cost)
        st.message = self.convergence(st, cost0)
        if st.message is None and chosen.step_norm <= opt.step_tol * (1.0 + wnorm):
            st.message = "converged: small step"
        if self.record(st, entry) and st.message is None:
            st.message = "stopped by callback"

    def iterate(self, st: _State, iteration: int, cost0: float) -> None:
        """One iteration; sets ``st.message`` when the solve stops."""
        a = st.w - self.obj.w0
        model = self.subspace_model(st, a) if self.opt.subspace else self.full_model(st, a)
        gnorm = float(np.linalg.norm(model.g))
        entry: dict = {"iteration": iteration, "cost": st.cost, "step_norm": 0.0,
                       "gamma": None, "damping": None, "rho": None, "accepted": False,
                       "step_kind": None, "trials": 0, "grad_norm": gnorm}
        if not math.isfinite(gnorm):
            st.message = "stalled: non-finite gradient"
        elif gnorm == 0.0:
            st.message = "converged: stationary"
        if st.message is not None:
            self.record(st, entry)
            return
        gamma, gmax = self.damping(st, model, gnorm)
        first = model.direction(gamma)
        if not (first[1] > self.obj.cost_noise(st.r, model.gz, st.cost)):
            st.message = "converged: stationary"
            entry.update(gamma=gamma, damping=1.0 / gamma)
            self.record(st, entry)
            return
        gammas, steps = self.explored(model, gamma, gmax, first)
        gradient_point = self.gradient_point(st, model, entry)
        chosen, best_gn, gammas, trials = self.search(st, model, gammas, steps, gmax,
                                                      gradient_point, entry)
        entry["trials"] = trials
        if chosen is None:
            entry.update(gamma=gammas[-1], damping=1.0 / gammas[-1], rho=None)
            st.message = f"stalled: no decrease in {trials} trials"
            self.record(st, entry)
            return
        self.take(st, entry, chosen, best_gn, gammas, gnorm, cost0)

    def run(self, gamma0: float | None) -> Result:
        """The solve from w0 until a stopping rule (module docstring) or ``max_iter``."""
        st = self.start(gamma0)
        cost0 = st.cost
        if math.isfinite(st.cost):
            st.message = self.convergence(st, cost0)
        else:
            st.message = "stalled: non-finite cost"
        iteration = 0
        while st.message is None and iteration < self.opt.max_iter:
            iteration += 1
            self.iterate(st, iteration, cost0)
        fp, oc = _counters(self.problem)
        return Result(x=st.w, cost=st.cost, cost0=cost0, nit=len(st.history),
                      message=st.message or "max_iter", history=st.history,
                      nfev=fp - self.fp0, ort_calls=oc - self.oc0,
                      seconds=time.perf_counter() - self.t_start, loss=self.obj.loss,
                      method=self.opt.method, damping=self.opt.damping, gamma=st.gamma)


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
    choose_form(1, 2, linear_solver)
    obj = Objective(problem)
    rng = np.random.default_rng(seed)
    options = _checked_options(obj, dict(
        max_iter=max_iter, tol=tol, damping=damping, method=method, subspace_dim=subspace_dim,
        scaling=scaling, linear_solver=linear_solver, step_tol=step_tol, retries=retries,
        retry_candidates=retry_candidates, noise_floor=noise_floor, explore=explore,
        callback=callback, certified_step=certified_step))
    return _Solve(problem, obj, options, rng, t_start).run(gamma0)
