"""Local Lipschitz constants by bound propagation through the Jacobian graph, with branching.

``local_lipschitz(net, S, norm)`` certifies an upper bound of sup_{x∈S} ‖J(x)‖ (the operator
norm induced by ``norm`` on inputs and outputs: ℓ∞ → max_i ‖∇f_i‖₁, ℓ2 → the largest
singular value), the Lipschitz constant of f on the convex set S in that norm, and reports
the best lower bound it met (‖J(x)‖ at points of S) and their ratio. With ``time_budget``
> 0 it branches (:mod:`boundprop.lipschitz.branching`) and the upper bound only decreases
with time (``history``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from boundprop.analysis import output_bounds
from boundprop.audit.jacobian_search import jacobian_norm_lower
from boundprop.constants import constants
from boundprop.domains.jacobian_linear import (
    NORMS,
    JacobianBounds,
    JacobianRuleMissing,
    domain_norm_upper,
)
from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.lipschitz.branching import INPUT_SPLIT_MAX, LipschitzSearch
from boundprop.lipschitz.grouped import grouped_rows
from boundprop.lipschitz.points import LOWER_FACTOR, best_point
from boundprop.sets import InputSet

__all__ = ["LocalLipschitz", "local_lipschitz", "JacobianRuleMissing"]

ROOT_SAMPLES = 256


@dataclass
class LocalLipschitz:
    """A certified upper bound of the local Lipschitz constant and the evidence beside it.

    ``upper``: certified sup_{x∈S} ‖J(x)‖ (norm ``norm``); ``lower``: the largest ‖J(x)‖ found
    at points x of S (not certified: an empirical lower bound); ``ratio`` = upper / lower;
    with a time budget, a quarter of it (or ``search_budget`` seconds) goes to the search of
    :func:`~boundprop.audit.jacobian_search.jacobian_norm_lower`;
    ``per_output`` (ℓ∞ only): the root bound of each sup ‖∇f_i‖₁; ``domains``: domains bounded
    (1 without branching); ``history``: (seconds, upper) after each branching round;
    ``jacobian_bound`` (Jacobian bound propagation, branched) and ``layer_product`` (the
    constants domain's composition of layer constants): ``upper`` is the smaller."""

    upper: float
    lower: float
    norm: str
    elapsed_s: float
    domains: int
    mode: str | None
    per_output: np.ndarray | None = None
    witness: np.ndarray | None = field(default=None, repr=False)
    history: list[tuple[float, float]] = field(default_factory=list, repr=False)
    bound_method: str = "linear"
    layer_product: float = float("inf")
    jacobian_bound: float = float("inf")

    @property
    def ratio(self) -> float:
        return self.upper / self.lower if self.lower > 0 else float("inf")

    def to_json(self) -> dict:
        def num(x):
            return x if np.isfinite(x) else "inf"
        return {"norm": self.norm, "upper": num(self.upper), "lower": self.lower,
                "ratio": num(self.ratio), "elapsed_s": round(self.elapsed_s, 4),
                "domains": self.domains, "branching": self.mode,
                "bound_method": self.bound_method,
                "jacobian_bound": num(self.jacobian_bound),
                "layer_product": num(self.layer_product),
                "per_output": None if self.per_output is None else
                [num(float(v)) for v in self.per_output],
                "history": [[round(t, 4), num(u)] for t, u in self.history]}


def _kinks(net: Network) -> dict[int, tuple[float, ...]]:
    """Gated node → kink points of its piecewise-linear consumers (where a phase split makes
    the gate exact)."""
    out: dict[int, tuple[float, ...]] = {}
    for node in net.nodes[1:]:
        points = node.op.branch_points()
        if points and len(node.inputs) == 1 and node.inputs[0] != 0:
            out[node.inputs[0]] = tuple(points)
    return out


def _mode(net: Network, kinks: dict) -> str | None:
    if int(np.prod(net.input_shape)) <= INPUT_SPLIT_MAX:
        return "input"
    return "activation" if kinks else None


def local_lipschitz(net: Network, input_set: InputSet, norm: str = "inf",
                    time_budget: float = 0.0, method: str = "linear",
                    target_ratio: float = 1.0, seed: int = 0,
                    progress: Callable[[dict], None] | None = None,
                    max_domains: int | None = None,
                    search_budget: float | None = None,
                    vertex_groups: bool = True) -> LocalLipschitz:
    """Certified local Lipschitz constant of ``net`` on ``input_set`` in ``norm`` ("inf" or
    "2"), by Jacobian bound propagation on the enclosures of ``method`` ("linear" or
    "alpha"); with ``time_budget`` seconds, branching until the budget ends or upper ≤
    ``target_ratio``·lower (or ``max_domains`` domains are bounded: a result independent of
    the machine's speed, up to the last round's batch). ``vertex_groups`` (ℓ∞, chain MLPs):
    also bound every row by input groups and their vertices
    (:func:`~boundprop.lipschitz.grouped.grouped_rows`), at the root and in each domain.
    Raises :class:`JacobianRuleMissing` for a network with an op lacking a Jacobian rule."""
    if norm not in NORMS:
        raise BoundpropError(f"local Lipschitz: norm '{norm}' not supported; use inf or 2")
    t0 = time.perf_counter()
    input_set = input_set.fit(net.input_shape)
    ob = output_bounds(net, input_set, method=method)
    root = [(np.asarray(lo), np.asarray(hi)) for lo, hi in ob.layers]
    rb = JacobianBounds(net, [(lo[None], hi[None]) for lo, hi in root], norm).output_rows()
    grouped = grouped_rows(net, root) if norm == "inf" and vertex_groups else None
    if grouped is not None:  # ℓ∞: each row's smaller bound (both certified)
        rb.value = np.fmin(rb.value, grouped)
    upper = float(domain_norm_upper(rb, 1, norm)[0])
    product = constants(net, input_set, norm=norm, symbolic=False,
                        layers=root).lipschitz
    rng = np.random.default_rng(seed)
    xs = np.concatenate([input_set.sample(ROOT_SAMPLES, rng),
                         (0.5 * (root[0][0] + root[0][1]))[None]])
    found = {"lower": 0.0, "x": None}

    def points(ps: np.ndarray) -> None:
        v, x = best_point(net, ps, norm)
        if v > found["lower"]:
            found["lower"], found["x"] = v, x

    points(xs)
    seconds = 0.25 * time_budget if search_budget is None else search_budget
    if seconds > 0:  # by default a quarter of the budget on the lower bound's search
        v, x, _ = jacobian_norm_lower(net, input_set, norm, time_budget=seconds, seed=seed)
        if v * LOWER_FACTOR > found["lower"]:  # v is ‖J(x)‖ already: no second Jacobian
            found["lower"], found["x"] = float(v * LOWER_FACTOR), np.asarray(x)
    kinks = _kinks(net)
    mode = _mode(net, kinks)
    domains, history = 1, []
    if time_budget > 0 and mode is not None and np.isfinite(upper) and all(
            np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) for lo, hi in root):
        search = LipschitzSearch(net, root, norm, mode, kinks, grouped=grouped is not None)
        lo, hi = root[0]
        bounds, _, scores = search.bound(lo[None], hi[None], [()])
        search.push(lo, hi, (), min(float(bounds[0]), upper), scores[0])
        search.run(t0 + time_budget, lambda: found["lower"], points, target_ratio, progress,
                   t0, max_domains)
        upper = min(upper, search.upper())
        domains, history = search.bounded + 1, search.history
    per_output = rb.value if norm == "inf" else None
    return LocalLipschitz(upper=min(upper, product), lower=found["lower"], norm=norm,
                          elapsed_s=time.perf_counter() - t0, domains=domains, mode=mode
                          if domains > 1 else None, per_output=per_output,
                          witness=found["x"], history=history, bound_method=method,
                          layer_product=product, jacobian_bound=upper)
