"""Local Lipschitz constants by bound propagation through the Jacobian graph, with branching.

``local_lipschitz(net, S, norm)`` certifies an upper bound of sup_{x∈S} ‖J(x)‖ (the operator
norm induced by ``norm`` on inputs and outputs: ℓ∞ → max_i ‖∇f_i‖₁, ℓ2 → the largest
singular value), the Lipschitz constant of f on the convex set S in that norm, and reports
the best lower bound it met (‖J(x)‖ at points of S) and their ratio. With ``time_budget``
> 0 it branches (:mod:`boundprop.lipschitz.branching`) and the upper bound only decreases
with time (``history``).

For ``norm="2"`` the upper bound is also capped by the verified global ℓ2 bound of the
LipSDP-Neuron certificate (:func:`boundprop.domains.lipsdp.lipschitz_lmi`, shown positive
definite by the checker kernel's :func:`~boundprop.checker.kernel.neuron_lmi_holds`; the
value a ``constants(net, None, "2")`` certificate carries as ``lipschitz_lmi``): a bound of
‖f(x) − f(x')‖₂/‖x − x'‖₂ over all x, x' holds on S, and it bounds ‖W_L D_{L−1}⋯D_1 W_1‖₂
for every diagonal D_l within the slope restrictions, so every chain-rule J(x) too. And by
the same certificate with local slope restrictions (each neuron's derivative range over its
enclosure on S, :func:`boundprop.domains.lipsdp.mlp_chain` with ``layers``), a bound of the
Lipschitz constant on S only (``lipschitz_lmi_local``), also kernel-verified.
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
from boundprop.domains.lipsdp import lipschitz_lmi_cached, lmi_size
from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.lipschitz.branching import INPUT_SPLIT_MAX, LipschitzSearch
from boundprop.lipschitz.grouped import grouped_rows
from boundprop.lipschitz.points import LOWER_FACTOR, best_point
from boundprop.ops.activation import Activation
from boundprop.sets import InputSet

__all__ = ["LocalLipschitz", "local_lipschitz", "JacobianRuleMissing"]

ROOT_SAMPLES = 256
# lmi=None (default): the LipSDP-Neuron caps only up to this matrix size (every shipped MLP and
# the 6×200 ERAN net, size 1984: both certificates 2.9 s with one BLAS thread).
LMI_AUTO_SIZE = 2000
# Below this size both LMIs take < 0.1 s: always tried in auto mode. Above, only the set-local
# one, which takes about LMI_SECONDS·(size/1000)³ (measured with one BLAS thread: 0.26 s at 984
# rows, mlp_784_100_100_10; 1.3–1.6 s at 1296 and 1984; doubled for a loaded machine), and only
# when that fits in half the time budget.
LMI_CHEAP_SIZE = 300
LMI_SECONDS = 0.7
# ... and its multipliers' search stops after this share of the budget (mnist-net_256x2 ε=0.05:
# the search alone took 2 s of a 10 s budget, the branching without it reached a lower bound).
LMI_SHARE = 0.25
# Up to this size the search also bounds every domain by its set-local LMI (~20 ms at 72 rows).
LMI_DOMAIN_SIZE = 300


@dataclass
class LocalLipschitz:
    """A certified upper bound of the local Lipschitz constant and the evidence beside it.

    ``upper``: certified sup_{x∈S} ‖J(x)‖ (norm ``norm``); ``lower``: the largest ‖J(x)‖ found
    at points x of S (not certified: an empirical lower bound); ``ratio`` = upper / lower;
    with a time budget, a quarter of it (or ``search_budget`` seconds) goes to the search of
    :func:`~boundprop.audit.jacobian_search.jacobian_norm_lower`;
    ``per_output`` (ℓ∞ only): the root bound of each sup ‖∇f_i‖₁; ``domains``: domains bounded
    (1 without branching); ``history``: (seconds, Jacobian bound) after each branching
    round; ``jacobian_bound`` (Jacobian bound propagation, branched), ``layer_product`` (the
    constants domain's composition of layer constants) and, for ℓ2, ``lipschitz_lmi`` (the
    verified global LipSDP-Neuron bound, None when there is none: ``lmi_note`` says why;
    ``lipschitz_lmi_local``, the same with slopes local to S): ``upper`` is the smallest,
    ``upper_source`` names it. ``domain_lmi``: the branching bounded each domain by the
    smaller of its Jacobian bound and its own set-local LipSDP-Neuron bound (ℓ2, small
    chains), so ``jacobian_bound`` is that branched value."""

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
    lipschitz_lmi: float | None = None
    lmi_note: str | None = None
    lipschitz_lmi_local: float | None = None
    domain_lmi: bool = False

    @property
    def upper_source(self) -> str:
        """Which bound gave ``upper``: "jacobian_bound", "layer_product", "lipschitz_lmi"
        or "lipschitz_lmi_local" (the first of these in that order on a tie)."""
        for name in ("jacobian_bound", "layer_product", "lipschitz_lmi"):
            if self.upper == getattr(self, name):
                return name
        return "lipschitz_lmi_local"

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
                "lipschitz_lmi": None if self.lipschitz_lmi is None else
                num(self.lipschitz_lmi), "lmi_note": self.lmi_note,
                "lipschitz_lmi_local": None if self.lipschitz_lmi_local is None else
                num(self.lipschitz_lmi_local),
                "upper_source": self.upper_source, "domain_lmi": self.domain_lmi,
                "per_output": None if self.per_output is None else
                [num(float(v)) for v in self.per_output],
                "history": [[round(t, 4), num(u)] for t, u in self.history]}


def _kinks(net: Network) -> dict[int, tuple[float, ...]]:
    """Gated node → kink points of its piecewise-linear consumers (where a phase split makes
    the gate exact), or () for a smooth activation's input (split at the midpoint of the
    domain's interval, GenBaB-style: each half narrows σ' there)."""
    out: dict[int, tuple[float, ...]] = {}
    for node in net.nodes[1:]:
        if len(node.inputs) != 1 or node.inputs[0] == 0:
            continue
        points = node.op.branch_points()
        if points:
            out[node.inputs[0]] = tuple(points)
        elif isinstance(node.op, Activation) and node.op.pieces() is not None:
            out[node.inputs[0]] = ()
    return out


def _mode(net: Network, kinks: dict) -> str | None:
    if int(np.prod(net.input_shape)) <= INPUT_SPLIT_MAX:
        return "input"
    return "activation" if kinks else None


def _lmi(net: Network, norm: str, use: bool | None, layers: list, time_budget: float
         ) -> tuple[float | None, str | None, float | None]:
    """For ``norm`` "2" when ``use`` (None: if the LMI is small, or its estimated cost fits in
    half of ``time_budget``): (the verified global ℓ2 bound or None, why not, the verified
    bound with slopes local to the set whose node enclosures are ``layers``). In auto mode
    above :data:`LMI_CHEAP_SIZE` rows only the set-local one: its slopes lie within the
    global ones, and on mnist-net_256x2 the global one took 1.5 s of a 10 s budget for 350
    where the local gave 14."""
    if norm != "2" or use is False:
        return None, None, None
    size = lmi_size(net)
    if use is None and size > LMI_AUTO_SIZE:
        return None, (f"LMI of size {size} > {LMI_AUTO_SIZE}: not tried unless "
                      "asked (lmi=True, --lmi on)"), None
    cost = LMI_SECONDS * (size / 1000) ** 3
    if use is None and size > LMI_CHEAP_SIZE:
        if cost > 0.5 * time_budget:
            return None, (f"LMI of size {size} needs about {cost:.1f} s: not tried within a "
                          f"{time_budget:g} s budget (give ≥ {2 * cost:.1f} s, or lmi=True, "
                          "--lmi on)"), None
        return None, (f"global LMI of size {size} not tried in auto mode (the set-local one "
                      "is; lmi=True, --lmi on for both)"), \
            lipschitz_lmi_cached(net, layers, seconds=LMI_SHARE * time_budget).value
    glob, local = lipschitz_lmi_cached(net), lipschitz_lmi_cached(net, layers)
    return glob.value, glob.note, local.value


def local_lipschitz(net: Network, input_set: InputSet, norm: str = "inf",
                    time_budget: float = 0.0, method: str = "linear",
                    target_ratio: float = 1.0, seed: int = 0,
                    progress: Callable[[dict], None] | None = None,
                    max_domains: int | None = None,
                    search_budget: float | None = None,
                    lmi: bool | None = None,
                    vertex_groups: bool = True) -> LocalLipschitz:
    """Certified local Lipschitz constant of ``net`` on ``input_set`` in ``norm`` ("inf" or
    "2"), by Jacobian bound propagation on the enclosures of ``method`` ("linear" or
    "alpha"); with ``time_budget`` seconds, branching until the budget ends or upper ≤
    ``target_ratio``·lower (or ``max_domains`` domains are bounded: a result independent of
    the machine's speed, up to the last round's batch). For ℓ2 with ``lmi`` (None: when
    the LMI is small or fits in the budget), the upper bound is at most the verified
    LipSDP-Neuron bounds (module docstring; their time counts in the budget).
    ``vertex_groups`` (ℓ∞, chain MLPs): also bound every row by input groups and their
    vertices (:func:`~boundprop.lipschitz.grouped.grouped_rows`), at the root and in each
    domain. Raises :class:`JacobianRuleMissing` for a network with an op lacking a Jacobian
    rule."""
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
    l_lmi, lmi_note, l_local = _lmi(net, norm, lmi, root, time_budget)
    cap = min([product] + [v for v in (l_lmi, l_local) if v is not None])
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
    domains, history, domain_lmi = 1, [], False
    if time_budget > 0 and mode is not None and np.isfinite(upper) and all(
            np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) for lo, hi in root):
        domain_lmi = l_local is not None and lmi_size(net) <= LMI_DOMAIN_SIZE
        search = LipschitzSearch(net, root, norm, mode, kinks, grouped=grouped is not None,
                                 lmi=domain_lmi)
        lo, hi = root[0]
        bounds, _, scores = search.bound(lo[None], hi[None], [()])
        search.push(lo, hi, (), min(float(bounds[0]), upper), scores[0])
        search.run(t0 + time_budget, lambda: found["lower"], points, target_ratio, progress,
                   t0, max_domains, cap)
        upper = min(upper, search.upper())
        domains = search.bounded + 1
        history = [(t, min(u, cap)) for t, u in search.history]  # what upper was then
    per_output = rb.value if norm == "inf" else None
    return LocalLipschitz(upper=min(upper, cap), lower=found["lower"], norm=norm,
                          elapsed_s=time.perf_counter() - t0, domains=domains, mode=mode
                          if domains > 1 else None, per_output=per_output,
                          witness=found["x"], history=history, bound_method=method,
                          layer_product=product, jacobian_bound=upper,
                          lipschitz_lmi=l_lmi, lmi_note=lmi_note,
                          lipschitz_lmi_local=l_local, domain_lmi=domain_lmi)
