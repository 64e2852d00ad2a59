"""Global ℓ2 Lipschitz constant of an MLP chain below the layer product: a LipSDP-Neuron
certificate with closed-form multipliers (no SDP solver), verified in floating point.

**The chain.** f(x) = W_L σ_{L−1}(W_{L−1} ⋯ σ_1(W_1 x + b_1) ⋯) + b_L: consecutive affine
nodes composed into one matrix, elementwise activations between them (an identity matrix
inserted between two activations, before a leading one and after a trailing one), neuron i of
layer l slope-restricted in [α_li, β_li] (the op's ``slope_restriction``; a positive α is
replaced by 0 — a weaker, still true restriction — because the multipliers below are chosen for
α = 0; the tiny negative α of the derivative ranges' rounding margins stays; a real α < 0 —
GELU, HardSwish — gets its own α-aware search of one multiplier per layer, ``alpha_candidates``).
Biases do not matter. Any other op (pooling, joins, normalisation…): no chain, no value.

**The certificate** (LipSDP-Neuron, Fazlyab et al. 2019): for multipliers t_l ≥ 0 and ρ, if
ρ‖Δz_0‖² − ‖W_L Δz_{L−1}‖² − 2 Σ_l Σ_i t_li (Δz_li − α_iΔv_li)(β_iΔv_li − Δz_li) is a
positive semidefinite form, then ‖f(x) − f(x')‖₂ ≤ √ρ ‖x − x'‖₂. The checker kernel's
:func:`boundprop.checker.kernel.neuron_lmi_holds` assembles its block-tridiagonal matrix and
shows it positive definite (shifted Cholesky with a rounding proof). Whatever the prover
computes below is only a candidate until that test passes.

**The multipliers** (ECLipsE-Fast, Xu & Sivaranjani, NeurIPS 2024, in this normalisation;
α taken as 0 in the choice, the test uses the true α): with W'_l = diag(β_l) W_l, eliminate the
blocks from the input: X_0 = I, A_l = W'_l X_{l−1}^{-1} W'_lᵀ, T_l = (c_l/λ_max(A_l)) I,
X_l = 2T_l − T_l A_l T_l (≻ 0 for 0 < c_l < 2; c_l = 1 is ECLipsE-Fast); then
ρ = λ_max(W_L X_{L−1}^{-1} W_Lᵀ), and the certificate's multipliers are ρ T_l (the
constraint t Δz(βΔv − Δz) reads the same in both coordinates). With c_l = 1, X_l ⪰ T_l
gives by induction ρ ≤ ∏_l max β_l² ‖W_l‖²: never above the product. The c_l are then
improved by a coordinate search, and then every neuron's multiplier separately (L-BFGS and
fixed-step descent on log ρ, reverse mode through the elimination); where α ≠ 0 matters,
an α-aware elimination is searched too. Each is a candidate; only the final one is
verified. The searches live in :mod:`boundprop.domains.lipsdp_search`.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from boundprop.checker.kernel import neuron_lmi_holds
from boundprop.domains.lipsdp_search import (
    DEADLINE,
    QUICK_ITERATIONS,
    Chain,
    alpha_candidates,
    closed_form_candidates,
)
from boundprop.ir import Network
from boundprop.ops.activation import Activation
from boundprop.ops.base import AffinePrimitive
from boundprop.rounding import gamma, round_up

# Largest LMI (sum of the input and hidden widths) certified by a dense factorisation.
LMI_SIZE_LIMIT = 4000
# Relative enlargements of √ρ tried, smallest first, until the verified test passes.
HEADROOMS = (1e-9, 1e-7, 1e-5, 1e-3, 1e-2)
# many entries or no first-layer neuron has α > 0 (then the input block needs no factorisation:
# mnist-net_256x2 ε=0.03, ℓ2 34.1 → 13.8 at the root in 2 s). With α > 0 on a 784-wide input
# (mlp_784_100_100_10, 17 stable active ReLUs) it cost 2 s and lost to the closed form.
ALPHA_SEARCH_SIZE = 300
# Verified bounds kept by lipschitz_lmi_cached, keyed by the chain's content.
CACHE_SIZE = 16


@dataclass
class LmiBound:
    """A verified global ℓ2 bound ``value`` and its multipliers (one vector per hidden
    layer), or no value and the reason."""

    value: float | None
    multipliers: list[np.ndarray] | None
    note: str | None = None


_CACHE: OrderedDict[str, LmiBound] = OrderedDict()  # lipschitz_lmi_cached's results


def _compose(outer: tuple[np.ndarray, np.ndarray], inner: tuple[np.ndarray, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray]:
    """(fl(BA), bound on |fl(BA) − B'A'|) for |B' − b| ≤ e_b, |A' − a| ≤ e_a:
    γ_{k+2}|b||a| + e_b|a| + |b|e_a + e_b e_a, enlarged for its own rounding."""
    (b, eb), (a, ea) = outer, inner
    k = a.shape[0]
    ab, aa = np.abs(b), np.abs(a)
    err = gamma(k + 2) * (ab @ aa) + eb @ aa + ab @ ea + eb @ ea
    return b @ a, round_up(err * (1 + 2 * gamma(k + 2)))


def _affine_matrix(op: AffinePrimitive) -> tuple[np.ndarray, np.ndarray] | None:
    """The op's matrix (materialised: at most one rounding per entry) and its error bound."""
    m = op.materialize()
    if m is None:
        return None
    return m, round_up(np.abs(m) * 2.0**-52)


def mlp_chain(net: Network, layers: list | None = None) -> tuple[Chain | None, str | None]:
    """The network as an MLP chain (see the module docstring), or (None, why not). With
    ``layers`` (per node an enclosure (lo, hi) of its values over an input set S), each
    neuron's slope restriction is local: σ's derivative range over its input's enclosure
    (:meth:`~boundprop.ops.activation.Activation.derivative_range`; for x, x' ∈ S both
    pre-activations lie in it, so the difference quotient, an average of σ' between them,
    does too), and the certificate bounds the Lipschitz constant of f on S only."""
    nodes = net.nodes
    if net.output != len(nodes) - 1 or any(n.inputs != (i,) for i, n in
                                           enumerate(nodes[1:])):
        return None, "not a chain of nodes"
    weights, slopes, pending = [], [], None
    for node in nodes[1:]:
        op = node.op
        if isinstance(op, AffinePrimitive):
            m = _affine_matrix(op)
            if m is None:
                return None, f"node {node.name}: matrix too large"
            pending = m if pending is None else _compose(m, pending)
        elif isinstance(op, Activation) and op.has("slope_restriction"):
            if pending is None:  # activation first or after another: the identity between
                n = int(np.prod(op.in_shapes[0]))
                pending = (np.eye(n), np.zeros((n, n)))
            a, b = (np.asarray(x, dtype=np.float64).reshape(-1) for x in (
                op.slope_restriction() if layers is None else
                op.derivative_range(*layers[node.inputs[0]])))
            weights.append(pending)
            # global: [α, β] ⊂ [min(α, 0), β], the checker's chain; local: the true range
            slopes.append((a, b) if layers is not None else (np.minimum(a, 0.0), b))
            pending = None
        else:
            return None, f"node {node.name} ({op.kind}) is neither affine nor an activation"
    if not slopes:
        return None, "no activation: the layer product is exact"
    if pending is None:
        n = weights[-1][0].shape[0]
        pending = (np.eye(n), np.zeros((n, n)))
    weights.append(pending)
    return Chain(weights, slopes), None


def _alpha_zeroed(chain: Chain) -> Chain:
    """The chain with every positive α replaced by 0: [α, β] ⊂ [0, β], a weaker restriction
    that still holds, for the closed form (which is chosen for α = 0)."""
    return Chain(chain.weights, [(np.minimum(a, 0.0), b) for a, b in chain.slopes])


def candidates(chain: Chain, quick: bool = False
               ) -> list[tuple[float, list[np.ndarray], Chain]]:
    """(ρ, multipliers, the chain they are for) to try, smallest ρ first (all unverified):
    where some α < 0, or some α > 0 and the input block is cheap (:data:`ALPHA_SEARCH_SIZE`), the
    α-aware search on the true slopes (:func:`alpha_candidates`; a positive α — a set-local
    range where σ' > 0 — makes the neuron nearly linear, which the closed form cannot use);
    where no α < 0, the closed form on the chain with α⁺ zeroed
    (:func:`closed_form_candidates`)."""
    out = []
    negative = any(np.any(a < -1e-9) for a, _ in chain.slopes)
    # chosen with the rounding margins' tiny α set to 0 (αβ = 0 exactly: no input-block
    # factorisation when no first-layer neuron has α > 0), verified with the true ones
    snapped = Chain(chain.weights, [(np.where(np.abs(a) <= 1e-9, 0.0, a), b)
                                    for a, b in chain.slopes])
    cheap = (chain.weights[0][0].shape[1] <= ALPHA_SEARCH_SIZE
             or not np.any(snapped.slopes[0][0] * snapped.slopes[0][1]))
    if negative or (cheap and any(np.any(a > 1e-9) for a, _ in chain.slopes)):
        out += [(rho, ts, chain) for rho, ts in alpha_candidates(
            snapped, QUICK_ITERATIONS if quick else None)]
    if not negative:
        zeroed = _alpha_zeroed(chain)
        out += [(rho, ts, zeroed) for rho, ts in closed_form_candidates(zeroed, quick)]
    return sorted(out, key=lambda c: c[0])


def lmi_size(net: Network) -> int:
    """The size of the net's LipSDP-Neuron matrix if it is a chain (inputs + activations),
    from the shapes alone."""
    return int(np.prod(net.input_shape)) + sum(
        int(np.prod(n.shape)) for n in net.nodes[1:] if isinstance(n.op, Activation))


def _chain_of(net: Network, layers: list | None = None) -> tuple[Chain | None, str | None]:
    """:func:`mlp_chain` after the size check (from the shapes, before any matrix is
    materialised)."""
    size = lmi_size(net)
    if size > LMI_SIZE_LIMIT:
        return None, f"LMI of size {size} > {LMI_SIZE_LIMIT}"
    return mlp_chain(net, layers)


def lipschitz_lmi(net: Network) -> LmiBound:
    """A verified global ℓ2 Lipschitz bound of ``net`` by the LipSDP-Neuron certificate, or
    no value (with the reason) when the net is not an MLP chain, its LMI is larger than
    LMI_SIZE_LIMIT (checked from the shapes, before any matrix is materialised), a numerical
    step fails, or no candidate passes the verified test."""
    chain, why = _chain_of(net)
    if chain is None:
        return LmiBound(None, None, why)
    return _chain_lmi(chain)


def _digest(chain: Chain) -> str:
    """A hash of everything the certificate depends on: the matrices, their error bounds and
    the slope restrictions (shapes and float64 bytes)."""
    h = hashlib.sha256()
    for arr in [a for pair in chain.weights + chain.slopes for a in pair]:
        a = np.ascontiguousarray(arr, dtype=np.float64)
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def lipschitz_lmi_cached(net: Network, layers: list | None = None,
                         seconds: float | None = None, quick: bool = False) -> LmiBound:
    """:func:`lipschitz_lmi`, memoised on the content of the chain (:func:`_digest`: a net
    whose weights change gets a new certificate, never a stale one); the last
    :data:`CACHE_SIZE` results are kept. The returned object is shared: do not modify it.
    With ``layers`` (enclosures of every node over an input set S), the slope restrictions
    are local (:func:`mlp_chain`): a verified ℓ2 Lipschitz bound of f on S only. With
    ``seconds``, the multipliers' search stops at that deadline with its best point so far
    (the verified test then runs as usual); ``quick``: :data:`QUICK_ITERATIONS` steps of each
    search (a memoised result may come from such a shorter search)."""
    chain, why = _chain_of(net, layers)
    if chain is None:
        return LmiBound(None, None, why)
    key = _digest(chain)
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    token = DEADLINE.set(None if seconds is None else time.perf_counter() + seconds)
    try:
        res = _CACHE[key] = _chain_lmi(chain, quick)
    finally:
        DEADLINE.reset(token)
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return res


def _chain_lmi(chain: Chain, quick: bool = False) -> LmiBound:
    """The verified bound of an MLP chain: the first candidate (and headroom) that passes
    :func:`~boundprop.checker.kernel.neuron_lmi_holds`."""
    # BLAS threads on these small matrices only add synchronisation: 0.26 s single-threaded
    # against 0.72 s with two threads for both LMIs of mlp_784_100_100_10, and up to 5× slower
    # when another process holds a core.
    with threadpool_limits(1, user_api="blas"):
        return _chain_lmi_serial(chain, quick)


def _chain_lmi_serial(chain: Chain, quick: bool) -> LmiBound:
    try:
        found = candidates(chain, quick)
    except (np.linalg.LinAlgError, ValueError, FloatingPointError) as e:
        return LmiBound(None, None, f"numerical failure choosing multipliers ({e})")
    for rho, ts, verified in found:
        for h in HEADROOMS:
            u = float(round_up(np.sqrt(rho) * (1 + h)))
            if neuron_lmi_holds(verified.weights, verified.slopes, ts, u)[0]:
                return LmiBound(u, ts, None)
    return LmiBound(None, None, "no candidate passed the verified positive-definiteness test")
