"""Projected-gradient attack (PGD) on the safety margin of a VNN-LIB box, with exact gradients.

The unsafe region is a union of conjunctions ∪_j {y : A_j y ≤ b_j}; with its rows stacked
(``unsafe.a``, ``unsafe.b``, ``unsafe.starts`` as the verifier's ``_Unsafe`` holds them) the
margin of conjunction j at y is m_j(y) = max_k (A_jk·y − b_jk) (≤ 0 iff y meets it) and the
safety score is s(y) = min_j m_j(y) (≤ 0 iff y is unsafe). A restart minimises the loss
L(x) = s(net(x)), or, as a targeted (CW-style) restart, L(x) = m_t(net(x)) for one conjunction
t — an upper bound of s, so L ≤ 0 is a counterexample as well — over the box [lo, hi].

Gradients are exact: a subgradient of the min-of-max picks the active conjunction j* and its
active row k*, so ∇L(x) = A_{j*k*}·J(x), one row per point pulled back through the IR by the ops'
reverse rules (:func:`boundprop.audit.function.reverse_pass`, the pass the audit's Jacobians use;
an op without one raises :class:`~boundprop.audit.function.NoJacobian`).

The steps are APGD's (Croce & Hein, ICML 2020), per restart r, all restarts as one stack:
z = P(x_k − η_r·w∘sign ∇L(x_k)), x_{k+1} = P(x_k + α(z − x_k) + (1 − α)(x_k − x_{k−1})) with
w = hi − lo, P the projection (clip) onto the box, α = 0.75 (1 at the first step) and
η_r = 1 at the start (2ε for an ℓ∞ ball of radius ε). At checkpoints (after 22% of the steps,
then at intervals shrinking by 3% of the steps, at least 6%) η_r halves and the restart returns
to its best point when fewer than 75% of the steps since the last checkpoint decreased L, or
when η_r was not halved last time and the best L did not improve since. The attack does not stop
at L = 0: it runs PUSH_STEPS more steps once some restart is below 0, so that the point is
pushed past the boundary and survives the float32 rounding of its confirmation.

Smoothed directions (:func:`smoothed_network`): where the exact gradient sees only the few
neurons active at x (a ReLU at z < 0 passes no gradient, however close to turning on), the step
may follow the gradient of the ReLU-family activations s·z + (1 − s)·τ·log(1 + e^{z/τ})
instead: the reverse rule of σ(z) = max(z, s·z) uses s + (1 − s)·logistic(z/τ) for
σ'(z) = s + (1 − s)·1[z > 0], with τ = SMOOTHING · mean_i |z_i| of the layer at that point.
Only the direction changes; the loss, the best points and the stopping rule stay exact.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from boundprop.audit.function import NoJacobian, reverse_pass
from boundprop.ir import Network
from boundprop.ops.piecewise import KinkAtOrigin

__all__ = ["NoJacobian", "PGDResult", "checkpoints", "loss_and_gradient", "margin_losses",
           "pgd", "smoothed_network", "targets_for"]

PGD_STEPS = 100  # gradient steps per restart
MOMENTUM = 0.75  # APGD's α
FIRST_STEP = 1.0  # η at the start, as a fraction of the box width per coordinate
FIRST_CHECKPOINT = 0.22  # APGD's checkpoints: fractions of the steps
CHECKPOINT_DECREASE, CHECKPOINT_MIN = 0.03, 0.06
DECREASING_FRACTION = 0.75  # APGD's ρ
PUSH_STEPS = 8  # steps after the first L < 0, to move the point past the boundary
TARGETED_MAX_CONJUNCTIONS = 16  # above this, every restart minimises the score itself
WHOLE_SCORE = -1  # target of a restart minimising the score s = min_j m_j
SMOOTHING = 0.01  # τ of the smoothed directions, as a fraction of the layer's mean |z|


@dataclass
class PGDResult:
    """Each restart's best point ``x`` (R, n_in), its loss ``loss`` (R,), its target
    (``WHOLE_SCORE`` or a conjunction index) and the gradient steps taken."""

    x: np.ndarray
    loss: np.ndarray
    targets: np.ndarray
    steps: int


def targets_for(n_restarts: int, n_conjunctions: int) -> np.ndarray:
    """The loss each restart minimises: with few conjunctions (≤ TARGETED_MAX_CONJUNCTIONS,
    more than one) restarts cycle through the whole score and each conjunction as a target;
    otherwise all minimise the score."""
    if n_conjunctions <= 1 or n_conjunctions > TARGETED_MAX_CONJUNCTIONS:
        return np.full(n_restarts, WHOLE_SCORE)
    return np.arange(n_restarts) % (n_conjunctions + 1) - 1


def margin_losses(y: np.ndarray, unsafe, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For flat outputs y (S, n_out): each point's loss (the score min_j m_j(y) for target
    ``WHOLE_SCORE``, else m_t(y) of its target t; NaN counts as +∞) and the index of its active
    row in the stack (the row k* whose A_k·y − b_k the loss equals)."""
    per_row = y @ unsafe.a.T - unsafe.b  # (S, rows)
    per_row = np.where(np.isnan(per_row), np.inf, per_row)
    conj = np.maximum.reduceat(per_row, unsafe.starts, axis=1)  # (S, J)
    chosen = np.where(targets < 0, np.argmin(conj, axis=1), targets)
    ends = np.append(unsafe.starts[1:], per_row.shape[1])
    rows = np.arange(per_row.shape[1])
    in_chosen = ((rows[None, :] >= unsafe.starts[chosen][:, None])
                 & (rows[None, :] < ends[chosen][:, None]))
    active = np.argmax(np.where(in_chosen, per_row, -np.inf), axis=1)
    return per_row[np.arange(len(y)), active], active


class _SmoothedKink:
    """A ReLU-family op (σ(z) = z for z ≥ 0, s·z below) whose reverse rule uses the smoothed
    derivative s + (1 − s)·logistic(z/τ), τ = ``fraction`` · mean |z| of each point's input;
    every other attribute is the op's own."""

    def __init__(self, op: KinkAtOrigin, fraction: float) -> None:
        self.op, self.fraction = op, fraction

    def __getattr__(self, name: str):
        return getattr(self.op, name)

    def vjp(self, cot: np.ndarray, inputs: list[np.ndarray], rows: int) -> list[np.ndarray]:
        z = inputs[0]
        axes = tuple(range(1, z.ndim))
        tau = self.fraction * np.mean(np.abs(z), axis=axes, keepdims=True) + 1e-12
        s = self.op.negative_slope()
        with np.errstate(over="ignore"):
            d = s + (1 - s) / (1 + np.exp(-z / tau))
        return [cot * np.repeat(d, rows, axis=0)]


def smoothed_network(net: Network, fraction: float = SMOOTHING) -> Network:
    """``net`` with the reverse rule of every ReLU-family activation smoothed (module
    docstring; :class:`_SmoothedKink`): evaluates like ``net``, steers like a softplus net."""
    nodes = [dataclasses.replace(n, op=_SmoothedKink(n.op, fraction))
             if isinstance(n.op, KinkAtOrigin) else n for n in net.nodes]
    return dataclasses.replace(net, nodes=nodes)


def loss_and_gradient(net: Network, unsafe, xs: np.ndarray, targets: np.ndarray,
                      reverse_net: Network | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loss (:func:`margin_losses`) and its exact (sub)gradient A_{k*}·J(x) at the flat points
    xs (S, n_in), by one float64 forward pass and one reverse pass of one row per point
    (through the reverse rules of ``reverse_net`` if given: a :func:`smoothed_network`).
    Raises NoJacobian when an op on the path has no reverse rule."""
    n = len(xs)
    vals = net.evaluate_all(xs.reshape(n, *net.input_shape))
    y = vals[net.output].reshape(n, -1)
    loss, active = margin_losses(y, unsafe, targets)
    cot = unsafe.a[active].reshape(n, *net.output_shape)
    g, _ = reverse_pass(reverse_net or net, vals, cot, n, ())
    if g is None:  # the output does not depend on the input
        return loss, np.zeros_like(xs)
    return loss, np.nan_to_num(g.reshape(n, -1))


def checkpoints(steps: int) -> list[int]:
    """APGD's checkpoint iterations for a run of ``steps``: the first after 22% of them, then
    intervals shrinking by 3% of the steps each time, never below 6%."""
    out, w = [], max(int(FIRST_CHECKPOINT * steps), 1)
    gap = w
    decrease, smallest = max(int(CHECKPOINT_DECREASE * steps), 1), max(int(CHECKPOINT_MIN *
                                                                            steps), 1)
    while w < steps:
        out.append(w)
        gap = max(gap - decrease, smallest)
        w += gap
    return out


class _Restarts:
    """The state of R restarts of APGD: the current and previous points, step sizes, and each
    one's best point, loss and gradient there."""

    def __init__(self, starts: np.ndarray) -> None:
        r = len(starts)
        self.x, self.x_prev = starts.copy(), starts.copy()
        self.eta = np.full(r, FIRST_STEP)
        self.best_x, self.best_loss = starts.copy(), np.full(r, np.inf)
        self.best_grad = np.zeros_like(starts)
        self.losses: list[np.ndarray] = []  # L(x_k) per step, since the last checkpoint
        self.best_at_checkpoint = np.full(r, np.inf)
        self.halved_at_checkpoint = np.zeros(r, bool)

    def record(self, loss: np.ndarray, grad: np.ndarray) -> None:
        better = loss < self.best_loss
        self.best_x[better], self.best_grad[better] = self.x[better], grad[better]
        self.best_loss = np.where(better, loss, self.best_loss)
        self.losses.append(loss)

    def checkpoint(self, grad: np.ndarray) -> None:
        """Halve η and go back to the best point where the loss oscillates (fewer than ρ of
        the steps since the last checkpoint decreased it) or stalls (η kept, no progress)."""
        ls = np.array(self.losses)
        decreasing = (ls[1:] < ls[:-1]).sum(axis=0) if len(ls) > 1 else np.zeros(len(self.eta))
        oscillates = decreasing < DECREASING_FRACTION * max(len(ls) - 1, 1)
        stalls = ~self.halved_at_checkpoint & (self.best_loss >= self.best_at_checkpoint)
        halve = oscillates | stalls
        self.eta[halve] /= 2
        self.x[halve] = self.x_prev[halve] = self.best_x[halve]
        grad[halve] = self.best_grad[halve]
        self.halved_at_checkpoint, self.best_at_checkpoint = halve, self.best_loss.copy()
        self.losses = [ls[-1]] if len(ls) else []

    def step(self, grad: np.ndarray, lo: np.ndarray, hi: np.ndarray, alpha: float) -> None:
        """x ← P(x + α(z − x) + (1 − α)(x − x_prev)), z = P(x − η·(hi − lo)∘sign ∇L)."""
        z = np.clip(self.x - self.eta[:, None] * (hi - lo) * np.sign(grad), lo, hi)
        nxt = np.clip(self.x + alpha * (z - self.x) + (1 - alpha) * (self.x - self.x_prev), lo,
                      hi)
        self.x_prev, self.x = self.x, nxt


def pgd(net: Network, unsafe, lo: np.ndarray, hi: np.ndarray, starts: np.ndarray,
        targets: np.ndarray, steps: int = PGD_STEPS, deadline: float = np.inf,
        batch: int = 256, reverse_net: Network | None = None) -> PGDResult:
    """APGD (module docstring) from each flat start point (R, n_in) in [lo, hi], restart r
    minimising the loss of ``targets[r]``; all restarts evaluated as one stack (in chunks of
    ``batch`` points). Stops after ``steps`` steps, PUSH_STEPS steps after some restart's loss
    first went below 0, or at the deadline. Step directions from the reverse rules of
    ``reverse_net`` (default ``net``; a :func:`smoothed_network`). Raises NoJacobian at an op
    without reverse rule."""
    state = _Restarts(np.clip(starts, lo, hi))
    marks = set(checkpoints(steps))
    below_since = None
    k = 0
    for k in range(steps):
        if time.perf_counter() > deadline:
            break
        loss, grad = _chunked(net, unsafe, state.x, targets, batch, reverse_net)
        state.record(loss, grad)
        if below_since is None and state.best_loss.min() < 0:
            below_since = k
        if below_since is not None and k - below_since >= PUSH_STEPS:
            break
        if k in marks:
            state.checkpoint(grad)
        state.step(grad, lo, hi, MOMENTUM if k else 1.0)
    return PGDResult(state.best_x, state.best_loss, targets, k + 1)


def _chunked(net: Network, unsafe, xs: np.ndarray, targets: np.ndarray, batch: int,
             reverse_net: Network | None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`loss_and_gradient` over xs in chunks of ``batch`` points."""
    parts = [loss_and_gradient(net, unsafe, xs[i:i + batch], targets[i:i + batch], reverse_net)
             for i in range(0, len(xs), batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
