"""What the Gauss-Newton solver is for: input reconstruction, fitting the last layer(s), a
certified safeguard step, and the counterexample search on a VNN-LIB conjunction.

The certified step (:func:`certified_step`) comes from the constants interpreter: on the ball
of radius ρ around the current point, with ℓ, L of the network (w.r.t. the input, or w.r.t. the
dense/conv parameters) and the loss constants, the objective F is L_F-smooth, so the gradient
step ``w − t g`` with ``t = min(1/L_F, ρ/‖g‖)`` stays in the ball and decreases F by at least
``t‖g‖²/2`` (the descent lemma). The solver takes it whenever it beats the GN step.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from boundprop.constants import constants, objective_constants
from boundprop.errors import BoundpropError
from boundprop.gn.layers import LAYER_OPS, last_layer_names, parameter_initializers
from boundprop.gn.oracle import Problem
from boundprop.gn.solver import solve
from boundprop.importer import load
from boundprop.rounding import round_down, round_up
from boundprop.sets import Box, L2Ball


def _network_with(model: Path, names: list[str], w: np.ndarray):
    """The IR of ``model`` with the initializers ``names`` set to the flat values ``w``."""
    m = onnx.load(str(model))
    inits = {i.name: i for i in m.graph.initializer}
    k = 0
    for name in names:
        old = numpy_helper.to_array(inits[name])
        new = np.asarray(w[k:k + old.size], dtype=old.dtype).reshape(old.shape)
        inits[name].CopyFrom(numpy_helper.from_array(new, name))
        k += old.size
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / model.name
        onnx.save(m, str(path))
        return load(path)


def certified_step(problem, radius: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """A function ``(w, g) ↦ t`` giving a certified gradient step at w (see the module
    docstring), for the squared or cross-entropy loss (sum over rows) plus the problem's ridge
    term λ/2‖w − w0‖² (which adds λ to L_F).

    The constants are computed on a ball of radius ``radius`` around an *anchor* (first the
    start point; again around w when w has left the ball): L_F holds on that ball, and the step
    ``t = min(1/L_F, (ρ − ‖w − anchor‖)/‖g‖)`` keeps the segment inside it. Input variables:
    local constants on the ℓ2 ball. Parameter variables: constants w.r.t. the dense/conv
    parameters on balls of radius ρ around each layer's anchor weights (the problem's variables
    must be such weights or biases; a joint move of norm ≤ ρ moves each layer by ≤ ρ).
    Returns 0 where no finite smoothness constant exists (e.g. a reachable ReLU kink)."""
    if not radius > 0:
        raise BoundpropError(f"the certified step needs a ball radius > 0, got {radius}")
    model = Path(problem.model)
    variables = problem.variables
    if variables != "input":
        allowed = parameter_initializers(model)
        bad = [v for v in variables if v not in allowed]
        if bad:
            raise BoundpropError(f"no certified step for '{bad[0]}': the parameter constants "
                                 f"cover weights and biases of {'/'.join(LAYER_OPS)} layers "
                                 "only")
    net = load(model)
    lam = float(problem.regularization)
    state: dict = {"anchor": None, "smooth": None}

    def smoothness_at(anchor: np.ndarray) -> float:
        """L_F + λ on the ball of radius ρ around ``anchor``, rounded up."""
        if variables == "input":
            x = np.asarray(anchor, dtype=np.float64).reshape(net.input_shape)
            c = constants(net, L2Ball(x, radius), norm="2", enclosure=False, symbolic=False)
        else:
            net_w = _network_with(model, list(variables), anchor)
            x = np.asarray(problem.inputs, dtype=np.float64).reshape(net_w.input_shape)
            c = constants(net_w, Box(x, x), norm="2", wrt="params", param_radius=radius,
                          symbolic=False)
        if problem.loss == "squared":
            t = np.asarray(problem.targets, dtype=np.float64).reshape(c.output_box[0].shape)
        else:
            t = np.asarray(problem.targets)
        obj = objective_constants(c, problem.loss, t, reduction="sum")
        return float(round_up(obj.smoothness + lam))

    def step(w: np.ndarray, g: np.ndarray) -> float:
        """t = min(1/L_F, room/‖g‖) rounded down; re-anchors when w is past half the ball."""
        w = np.asarray(w, dtype=np.float64)
        gnorm = float(np.linalg.norm(g))
        if gnorm == 0.0 or not np.isfinite(gnorm):
            return 0.0
        a = state["anchor"]
        room = radius - float(np.linalg.norm(w - a)) * (1 + 1e-12) if a is not None else -1.0
        if room <= 0.5 * radius:  # re-anchor: constants on the ball around w
            state["anchor"], state["smooth"] = w.copy(), smoothness_at(w)
            room = radius
        smooth = state["smooth"]
        if not np.isfinite(smooth) or smooth <= 0:
            return 0.0
        return float(round_down(min(1.0 / smooth, room / gnorm)))

    step.state = state  # type: ignore[attr-defined]
    return step


def reconstruct_input(model: str | os.PathLike, target, x0=None, **solve_options):
    """Find x with f(x) ≈ target (squared loss) by regularized GN through onnxruntime.
    Returns the solver's Result (``result.x`` is the flattened input)."""
    problem = Problem(model, variables="input", targets=target, x0=x0)
    return solve(problem, **solve_options)


def fit_layers(model: str | os.PathLike, inputs, targets, names: list[str] | None = None,
               loss: str = "squared", **solve_options):
    """Fit the given initializers (default: the last layer's weight and bias) so that the
    model maps ``inputs`` (one data batch, the model's input shape) to ``targets``."""
    problem = Problem(model, variables=names or last_layer_names(model), inputs=inputs,
                      targets=targets, loss=loss)
    return solve(problem, **solve_options)


class MarginProblem:
    """The counterexample search as a least-squares problem for :func:`solve`: over the box
    [lo, hi], reach one unsafe conjunction ``A y ≤ b`` with slack δ > 0 by minimising
    ½ Σ_k max(0, A_k y(x) − b_k + δ)², with x = c + h·sin(u) (u free, x always in the box).
    Evaluations use boundprop's float64 IR (batched); J by central differences in one batch.
    Candidates it finds are confirmed by onnxruntime by the caller, as every search result."""

    loss = "squared"
    regularization = 0.0
    eps = float(np.finfo(np.float64).eps)

    def __init__(self, net, lower: np.ndarray, upper: np.ndarray, a: np.ndarray,
                 b: np.ndarray, x0: np.ndarray, slack: float = 1e-6) -> None:
        self.net, self.a, self.b = net, np.asarray(a, float), np.asarray(b, float)
        lo, hi = np.asarray(lower, float).reshape(-1), np.asarray(upper, float).reshape(-1)
        self.c, self.h = 0.5 * (lo + hi), 0.5 * (hi - lo)
        self.slack = float(slack)
        self.p, self.q = lo.size, len(self.b)
        self.output_shape = (self.q,)
        self.targets = np.zeros(self.q)
        ratio = np.divide(np.asarray(x0, float).reshape(-1) - self.c, self.h,
                          out=np.zeros(self.p), where=self.h > 0)
        self.w0 = np.arcsin(np.clip(ratio, -1.0, 1.0))
        self.forward_passes = 0
        self.ort_calls = 0

    def point(self, u: np.ndarray) -> np.ndarray:
        """x = c + h·sin(u), always in the box."""
        return self.c + self.h * np.sin(u)

    def residuals(self, U: np.ndarray) -> np.ndarray:
        """(K, q): max(0, A y(x) − b + δ) at the points x(u) of the rows of U."""
        U = np.atleast_2d(np.asarray(U, dtype=np.float64))
        xs = self.point(U)
        self.forward_passes += len(xs)
        y = self.net(xs.reshape(len(xs), *self.net.input_shape)).reshape(len(xs), -1)
        return np.maximum(0.0, y @ self.a.T - self.b + self.slack)

    def jacobian(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(J, r) at w: coordinate central differences with steps ε^(1/3)(1 + |w_j|), one batch."""
        w = np.asarray(w, dtype=np.float64)
        step = self.eps ** (1 / 3) * (1.0 + np.abs(w))
        pts = np.vstack([w[None], w + np.diag(step), w - np.diag(step)])
        r = self.residuals(pts)
        jac = (r[1:1 + self.p] - r[1 + self.p:]).T / (2 * step)
        return jac, r[0]

    def jvp(self, w: np.ndarray, V: np.ndarray) -> np.ndarray:
        """(k, q) central differences along the rows of V, h = ε^(1/3)(1 + ‖w‖)/‖v‖."""
        w = np.asarray(w, dtype=np.float64)
        V = np.atleast_2d(V)
        norms = np.maximum(np.linalg.norm(V, axis=1), 1e-300)
        h = self.eps ** (1 / 3) * (1.0 + np.linalg.norm(w)) / norms
        r = self.residuals(np.vstack([w + h[:, None] * V, w - h[:, None] * V]))
        k = len(V)
        return (r[:k] - r[k:]) / (2 * h[:, None])


def margin_search(net, lower, upper, a, b, x0, max_iter: int = 12,
                  subspace_dim: int | None = None):
    """Run GN on :class:`MarginProblem` from x0; returns (x, result). ``subspace_dim``: random
    subspace GN (for large inputs, where a full central-difference Jacobian costs 2n + 1
    evaluations per iteration)."""

    problem = MarginProblem(net, lower, upper, a, b, x0)
    method = "subspace" if subspace_dim else "full"
    result = solve(problem, max_iter=max_iter, tol=1e-30, method=method,
                   subspace_dim=subspace_dim)
    return problem.point(result.w), result
