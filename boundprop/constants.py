"""Lipschitz (ℓ), smoothness (L) and boundedness (B) constants w.r.t. the network input
(or the parameters), and the constants of a loss on top: the public entry points.

The pass itself is the constants domain (:mod:`boundprop.domains.constants`): every node's op
gives a ``Rule`` (``boundprop.ops.rules``) — sympy expressions of its inputs' constants and its
own named constants, each with a certified value — evaluated (numbers, rounded up) and
substituted (the global formulas). It knows nothing about particular ops.

- ``input_set=None``: global constants, over all inputs (B is then finite only after bounded
  ops such as sigmoid or softmax).
- with an input set: local constants on that (convex) set — each op's constants are taken on
  the enclosure of its inputs (a ReLU that is stably off has slope 0, a sigmoid on [3, 5] has
  slope σ'(3)), and B also uses the enclosures.

ℓ has two methods: ``product`` (the chain rule above, layer by layer) and ``enclosure``
(the Clarke Jacobian enclosed in an interval matrix by a backward pass from the outputs,
then the norm of the enclosure: max row sum (ℓ∞), max column sum (ℓ1), or ‖ |J|max ‖₂ (ℓ2);
:mod:`boundprop.domains.jacobian`). The certified ℓ is the smaller; both are reported.

L has two methods likewise: the composition (the rules above, the symbolic form) and the
curvature method (:mod:`boundprop.domains.curvature`: the exact second-order chain rule with
per-neuron bounds of |σ''|, of the output's sensitivity to each neuron and of each neuron's
gradient, ``Constants.smoothness_curvature``; None with ``curvature_note`` where it does not
apply). The certified L is the smaller.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from boundprop.analysis import output_bounds
from boundprop.domains.constants import (
    FORMULA_LIMIT,
    Constants,
    ConstantsPass,
    LayerConstants,
    node_symbols,
)
from boundprop.domains.jacobian import jacobian_enclosure_norm
from boundprop.domains.param_ball import param_ball_intervals
from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.ops.rules import array_norm_upper, check_norm
from boundprop.rounding import round_down, round_up
from boundprop.sets import InputSet

# The public names: Constants, LayerConstants, FORMULA_LIMIT, node_symbols, param_ball_intervals
# and jacobian_enclosure_norm come from the domains (the certificate and the checker use them).
__all__ = [
    "FORMULA_LIMIT", "LOSSES", "Constants", "LayerConstants", "ObjectiveConstants",
    "constants", "jacobian_enclosure_norm", "node_symbols", "objective_constants",
    "param_ball_intervals",
]


def _check_params_request(norm: str, s: InputSet | None, param_radius: float) -> None:
    """Constants w.r.t. the parameters: ℓ2 (Frobenius) only, on data, a finite radius ≥ 0."""
    if norm != "2":
        raise BoundpropError("constants w.r.t. the parameters are in the ℓ2 (Frobenius) "
                             "norm only; use norm 2")
    if s is None:
        raise BoundpropError("constants w.r.t. the parameters need the data: give an "
                             "input set or a batch")
    if not param_radius >= 0 or not np.isfinite(param_radius):
        raise BoundpropError(f"parameter radius must be finite and ≥ 0, got {param_radius}")


def constants(net: Network, input_set: InputSet | None = None, norm: str = "2",
              intervals: str = "linear", enclosure: bool = True, symbolic: bool = True,
              layers: list[tuple[np.ndarray, np.ndarray]] | None = None, wrt: str = "input",
              param_radius: float = 0.0) -> Constants:
    """Certified ℓ, L, B of ``net`` w.r.t. its input (see the module docstring), or with
    ``wrt="params"`` w.r.t. the weights and biases of every dense/conv layer, each in a ball
    of radius ``param_radius`` (Frobenius) around its current value, for inputs in
    ``input_set`` (a data batch is a Box with lower == upper); ℓ2 only.

    ``intervals``: how the local enclosures are computed (``"linear"``: back-substitution,
    tighter, more stable neurons; ``"interval"``: IBP); ignored for global constants.
    ``layers``: precomputed enclosures (e.g. from ``output_bounds``) to reuse.
    """
    t0 = time.perf_counter()
    norm = check_norm(norm)
    if wrt not in ("input", "params"):
        raise BoundpropError(f"unknown wrt '{wrt}'; use input or params")
    params = wrt == "params"
    s = None if input_set is None else input_set.fit(net.input_shape)
    if params:
        _check_params_request(norm, s, param_radius)
        layers = param_ball_intervals(net, s, float(param_radius))
        enclosure = False
    elif s is not None and layers is None:
        layers = output_bounds(net, s, method=intervals).layers
    res = ConstantsPass(net, s, norm, layers, float(param_radius) if params else None
                        ).run().result(s, enclosure, symbolic)
    res.elapsed_s = time.perf_counter() - t0
    return res


LOSSES = ("squared", "cross_entropy")


@dataclass
class ObjectiveConstants:
    """Constants of F(θ) = loss(ψ(θ)) on the parameter ball: ℓ_F ≤ ℓ_f ℓ_ψ and
    L_F ≤ L_ψ ℓ_f + ℓ_ψ² L_f (chain rule), so gradient descent with step 1/L_F decreases F
    while it stays in the ball (descent lemma)."""

    loss: str
    reduction: str
    loss_lipschitz: float
    loss_smoothness: float
    lipschitz: float
    smoothness: float
    targets: np.ndarray | None = field(default=None, repr=False)

    @property
    def step_size(self) -> float:
        if not np.isfinite(self.smoothness):
            return 0.0  # no smoothness constant: no certified step
        return float(round_down(1.0 / self.smoothness)) if self.smoothness > 0 else float("inf")

    def to_json(self) -> dict:
        def num(x):
            return float(x) if np.isfinite(x) else "inf"
        return {"loss": self.loss, "reduction": self.reduction,
                "loss_lipschitz": num(self.loss_lipschitz),
                "loss_smoothness": num(self.loss_smoothness),
                "lipschitz": num(self.lipschitz), "smoothness": num(self.smoothness),
                "step_size": num(self.step_size),
                "targets": None if self.targets is None else
                np.asarray(self.targets, dtype=np.float64).reshape(-1).tolist()}


def _targets(targets: object, loss: str, out_shape: tuple[int, ...]) -> np.ndarray:
    """The loss targets as float64, checked: real and finite; for cross-entropy, integral
    class indices in [0, C) where C is the size of the output's last axis."""
    try:
        t = np.asarray(targets)
        if t.dtype.kind not in "biuf":
            raise TypeError
        t = t.astype(np.float64)
    except (TypeError, ValueError):
        raise BoundpropError(f"{loss} targets are not real numbers; give a numeric array") \
            from None
    if not np.all(np.isfinite(t)):
        k = int(np.argmax(~np.isfinite(t).reshape(-1)))
        raise BoundpropError(f"{loss} targets are not finite (flat index {k}: "
                             f"{t.reshape(-1)[k]}); give finite numbers")
    if loss == "cross_entropy":
        classes = out_shape[-1] if out_shape else 1
        bad = (t != np.round(t)) | (t < 0) | (t >= classes)
        if np.any(bad):
            k = int(np.argmax(bad.reshape(-1)))
            raise BoundpropError(f"cross-entropy target {t.reshape(-1)[k]:g} (flat index {k}) "
                                 f"is not a class index: the model has {classes} classes, give "
                                 f"integers 0..{classes - 1}")
    return t


def objective_constants(c: Constants, loss: str, targets: np.ndarray,
                        reduction: str = "mean") -> ObjectiveConstants:
    """Loss constants on the certified output enclosure, composed with the network's.

    squared: f(y) = ½‖y − t‖² (sum over entries; ``mean`` divides by the batch size n):
    ∇f = y − t, so ℓ_f = sup‖y − t‖₂ over the enclosure, L_f = 1.
    cross_entropy (softmax over the last axis, ``targets`` the class of each row): per row
    ∇ = p − e_y with ‖p − e_y‖₂² ≤ 2 and Hessian diag(p) − ppᵀ with norm ≤ 1/2, so ℓ_f ≤
    sqrt(2·rows), L_f ≤ 1/2 (block diagonal). Both divided by n for ``mean``."""
    if loss not in LOSSES:
        raise BoundpropError(f"unknown loss '{loss}'; use {' or '.join(LOSSES)}")
    if reduction not in ("mean", "sum"):
        raise BoundpropError(f"unknown reduction '{reduction}'; use mean or sum")
    if c.output_box is None:
        raise BoundpropError("loss constants need the output enclosure (an input set)")
    lo, hi = c.output_box
    n = lo.shape[0] if lo.ndim > 1 else 1
    div = float(n) if reduction == "mean" else 1.0
    t = _targets(targets, loss, lo.shape)
    if loss == "squared":
        if t.shape != lo.shape:
            raise BoundpropError(f"targets of shape {t.shape} do not match the output "
                                 f"shape {lo.shape}")
        lf = array_norm_upper(np.maximum(np.abs(hi - t), np.abs(lo - t)), "2")
        Lf = 1.0
    else:
        rows = int(np.prod(lo.shape[:-1])) if lo.ndim > 1 else 1
        if t.size != rows:
            raise BoundpropError(f"cross-entropy targets need one class per output row "
                                 f"({rows}), got {t.size}")
        lf = float(round_up(np.sqrt(2.0 * rows)))
        Lf = 0.5
    lf, Lf = float(round_up(lf / div)), float(round_up(Lf / div))
    lip = float(round_up(lf * c.lipschitz))
    smooth = float(round_up(round_up(c.smoothness * lf) + round_up(round_up(c.lipschitz**2) * Lf)))
    return ObjectiveConstants(loss, reduction, lf, Lf, lip, smooth, t)
