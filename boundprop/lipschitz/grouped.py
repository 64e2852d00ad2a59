"""Row bounds of the gate-free relaxed problem by input groups and their vertices (ℓ∞ only).

For a chain network J(D) = W_L·D_{L−1}·…·D_1·W_1 (Dense maps and elementwise activations,
each gate D_j diagonal with entries in its σ' range on a domain's enclosures, as in
:mod:`boundprop.domains.jacobian_linear`) and output k, let

    F_k(s) = sup_D e_kᵀ J(D) s.

F_k is a supremum of linear functions of s, hence sublinear: F_k(u + v) ≤ F_k(u) + F_k(v).
Cut the input coordinates into groups G_1, …, G_m; every s of the unit ℓ∞ cube is Σ_g s_g with
s_g supported on G_g, and F_k is convex, so

    sup_{s∈cube} F_k(s) ≤ Σ_g max_{v ∈ {−1, 1}^{G_g}} F_k(v),

every vertex v of a group's cube being enumerated (2^|G| of them). F_k(v) for one direction v is
bounded by forward interval arithmetic on the tangent t = J(D)·v (centre–radius, rounded
outward): a Dense map W takes [c ± r] to [Wc ± (|W|r + rounding)], a gate takes it to the
interval product with [d_lo, d_hi] (:func:`~boundprop.ops.rules.interval_times`); F_k(v) ≤
c_k + r_k at the output. Gate entries with max |d| ≤ :data:`NEGLIGIBLE` (dead ReLUs: [−tiny,
tiny]) are dropped from the chain and what they could add is bounded once, over the whole
cube (:func:`reduce_chain`).

Why: the chord relaxation treats the gates independently and sums ρ_e·a_e with a_e = the sup of
|t_e| over the whole cube; here a gate's sign is exact for each vertex direction, and only the
split of s into groups loses (the sup over each group is taken separately). On
mnist-net_256x2, prop_0 ε=0.03, layer-1 phases fixed to the worst pattern: chord 236.1, this
bound 201.7 with groups of 6 (the default: 0.07 s a domain), 199.6 with 8 (0.2 s), and the
relaxed problem's own value is ≥ 197.4 (:mod:`boundprop.lipschitz.ceiling`). The bound is for
the ℓ∞ input norm only (the vertices of the cube).
"""

from __future__ import annotations

import itertools

import numpy as np

from boundprop.ir import Network
from boundprop.lipschitz.ceiling import chain
from boundprop.ops.rules import interval_times
from boundprop.rounding import gamma, round_up

GROUP = 6
NEGLIGIBLE = 1e-200
# vertices × (sum of the widths' products) above which the bound is not attempted
MAX_WORK = 2**35
# vertex rows pushed through the chain at once
CHUNK_ROWS = 2**11


def _vertices(g: int) -> np.ndarray:
    return np.array(list(itertools.product((-1.0, 1.0), repeat=g)))


def _dense(w: np.ndarray, absw: np.ndarray, c: np.ndarray, r: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """[c ± r] (V, n) through t ↦ W t, rounded outward: centre W c (float), radius
    (|W| r + 2γ_{n+2}|W|(|c| + r))(1 + 2γ_{n+2})."""
    g = gamma(w.shape[1] + 2)
    radius = r @ absw.T + 2 * g * ((np.abs(c) + r) @ absw.T)
    return c @ w.T, round_up(radius * (1 + 2 * g))


def reduce_chain(factors: list) -> tuple[list, np.ndarray]:
    """The chain restricted to live gate entries (max |d| > :data:`NEGLIGIBLE`) and, per
    output, a bound on what the dropped entries add to |e_kᵀ J(D) s| for every s of the cube
    and gate choice: forward, u_j ≥ sup |t_j| (|W| u, then max|d|·u) and e_j ≥ sup |t_j − t'_j|
    (t' the tangent of the reduced chain: |W| e, then max|d|·e on live and max|d|·u on
    dropped entries), rounded up."""
    n_in = factors[0][1].shape[1]
    u, e = np.ones(n_in), np.zeros(n_in)
    keep = np.arange(n_in)
    out: list = []
    pending = None  # a Dense whose output rows wait for the next gate's live set
    for f in factors:
        if f[0] == "W":
            a = np.abs(f[1])
            g = 1 + 2 * gamma(a.shape[1] + 2)
            u, e = round_up(a @ u * g), round_up(a @ e * g)
            pending = f[1][:, keep]
        else:
            big = np.maximum(np.abs(f[1]), np.abs(f[2]))
            live = big > NEGLIGIBLE
            e = round_up(np.where(live, big * e, big * u) * (1 + 2.0**-52))
            u = round_up(big * u * (1 + 2.0**-52))
            keep = np.nonzero(live)[0]
            out += [("W", pending[keep]), ("D", f[1][keep], f[2][keep])]
            pending = None
    out.append(("W", pending))
    return out, e


def _forward(factors: list, absw: list, v: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Upper bounds (m, V, K) of e_kᵀ J(D) v over every gate choice, for m groups at once:
    v (V, g) the vertices, ``cols`` (m, g) each group's input coordinates."""
    w0 = np.concatenate([factors[0][1], np.zeros((factors[0][1].shape[0], 1))], axis=1)
    w0 = np.transpose(w0[:, cols], (1, 2, 0))  # (m, g, n1); column n_in is the zero column
    g = gamma(cols.shape[1] + 2)
    c = v @ w0
    r = round_up(2 * g * (np.abs(v) @ np.abs(w0)) * (1 + 2 * g))
    m, nv = c.shape[:2]
    c, r = c.reshape(m * nv, -1), r.reshape(m * nv, -1)
    for f, aw in zip(factors[1:], absw[1:]):
        if f[0] == "W":
            c, r = _dense(f[1], aw, c, r)
        else:
            c, r = interval_times(c, r, f[1], f[2])
    return round_up(c + r).reshape(m, nv, -1)


def grouped_rows(net: Network, layers: list[tuple[np.ndarray, np.ndarray]],
                 group: int = GROUP, order: np.ndarray | None = None) -> np.ndarray | None:
    """Per output k, a certified upper bound of sup ‖∇f_k(x)‖₁ = sup_{s∈cube} F_k(s) over
    one domain (``layers``: per node (lo, hi), no domain axis), by groups of ``group``
    consecutive input coordinates in ``order`` (default: 0, 1, …). None if the network is
    not a chain of Dense/Reshape/elementwise activations ending in a Dense, or too large."""
    factors = chain(net, layers)
    if factors is None or len(factors) % 2 == 0 or any(
            f[0] != ("W" if i % 2 == 0 else "D") for i, f in enumerate(factors)):
        return None  # not W, D, W, …, D, W
    n_in = factors[0][1].shape[1]
    widths = sum(f[1].size for f in factors if f[0] == "W")
    if 2**group * widths * -(-n_in // group) > MAX_WORK:
        return None
    factors, dropped = reduce_chain(factors)
    absw = [np.abs(f[1]) if f[0] == "W" else None for f in factors]
    if order is None:  # a fixed shuffle: neighbouring inputs tend to share weight signs
        order = np.random.default_rng(0).permutation(n_in)
    order = np.asarray(order)
    total = np.zeros(factors[-1][1].shape[0])
    count = -(-n_in // group)
    pad = count * group - n_in  # the last group is completed by a zero column (index n_in)
    cols = np.concatenate([order, np.full(pad, n_in)]).reshape(count, group)
    v = _vertices(group)
    per_chunk = max(1, CHUNK_ROWS // (2**group))
    for a in range(0, count, per_chunk):
        best = _forward(factors, absw, v, cols[a:a + per_chunk]).max(axis=1)
        for row in best:
            total = round_up(total + row)
    total = round_up(round_up(total * (1 + gamma(count + 2))) + dropped)
    return np.where(np.isnan(total), np.inf, total)
