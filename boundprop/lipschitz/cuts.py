"""Second-layer enclosures under phase constraints, by Lagrange multipliers (β-CROWN style).

Take a network that starts x → z1 = W1 x + b1 → ReLU → z2 = W2 ReLU(z1) + b2 (a Reshape of
the input first is allowed), and a domain of the branching whose first-layer phases are all
fixed: each z1_i has lo ≥ 0 (then ReLU(z1_i) = z1_i) or hi ≤ 0 (then 0) on the domain's
enclosure. There z2 = W2[:, A] z1_A + b2 exactly (A: the entries with lo ≥ 0), affine in x, and
every split of the domain is an affine constraint g_m(x) = a_m·z1 + b_m ≥ 0 (z1_u ≥ 0, −z1_u ≥
0, σ·z2_j ≥ 0). For β ≥ 0 and every x of the domain,

    ±z2_e ≥ ±z2_e − Σ_m β_m g_m(x) = μ·z1 + c,
    μ = ±W2[e, A] − Σ_m β_m a_m,  c = ±b2_e − Σ_m β_m b_m,

and μ·z1 = (μ W1)·x + μ·b1 is minimised over the box in closed form: a lower (upper) bound of
z2_e on the domain for any β (weak duality; the best β gives the LP value of the box with the
constraints). β is chosen by projected subgradient ascent in float; the bound at the chosen β
is then evaluated with every rounding error bounded (:func:`_certified_min`). The interval
bounds of the branching see the constraints only by clipping; on mnist-net_256x2, prop_0
ε=0.03, all 6 unstable first-layer phases active, these bounds leave 54 of 83 uncertain
second-layer gates (as exact LPs do) and lower the relaxed problem's value from 197 to 125.
"""

from __future__ import annotations

import numpy as np

from boundprop.ir import Network
from boundprop.ops.affine import Dense
from boundprop.ops.piecewise import Relu
from boundprop.ops.shape import Reshape
from boundprop.rounding import gamma, round_down, round_up

STEPS = 40


def first_layers(net: Network) -> tuple[int, int, int] | None:
    """(k1, a1, k2): the nodes of z1, its ReLU and z2, or None if the network does not start
    that way."""
    nodes = net.nodes
    k = 1
    if len(nodes) > k and isinstance(nodes[k].op, Reshape) and list(nodes[k].inputs) == [0]:
        k += 1
    if len(nodes) < k + 3:
        return None
    ok = (isinstance(nodes[k].op, Dense) and type(nodes[k + 1].op) is Relu  # exactly max(z, 0)
          and isinstance(nodes[k + 2].op, Dense)
          and list(nodes[k].inputs) == [k - 1] and list(nodes[k + 1].inputs) == [k]
          and list(nodes[k + 2].inputs) == [k + 1])
    for i in (k, k + 2):
        op = nodes[i].op
        ok = ok and op.axis == -1 and int(np.prod(nodes[i].shape)) == op.matrix.shape[0]
    return (k, k + 1, k + 2) if ok else None


def _certified_min(mu: np.ndarray, c: np.ndarray, w1: np.ndarray, b1: np.ndarray,
                   x_lo: np.ndarray, x_hi: np.ndarray, z1_abs: np.ndarray,
                   mu_err: np.ndarray) -> np.ndarray:
    """Lower bounds of μ_r·z1(x) + c_r over the box (rows r), z1 = W1 x + b1 on the entries
    of μ's columns, with |μ_true − μ| ≤ mu_err entrywise (the cost mu_err·max|z1|)."""
    n = w1.shape[1]
    g = mu @ w1
    cen, rad = 0.5 * (x_lo + x_hi), 0.5 * (x_hi - x_lo)
    rad = np.nextafter(np.maximum(x_hi - cen, cen - x_lo), np.inf)
    val = g @ cen - np.abs(g) @ rad + mu @ b1 + c
    size = np.abs(mu) @ np.abs(w1) @ (np.abs(cen) + rad) + np.abs(mu) @ np.abs(b1) + np.abs(c)
    err = 4 * gamma(n + mu.shape[1] + 4) * size + round_up(mu_err @ z1_abs)
    return round_down(val - round_up(err * (1 + 2 * gamma(4))))


def tighten(net: Network, nodes: tuple[int, int, int], layers: list, splits: tuple,
            entries: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounds (lo, hi) of z2 (flat) on one domain (``layers``: per node (lo, hi), no domain
    axis; ``splits``: its constraints) on ``entries`` (a mask; default all; −∞/+∞ elsewhere),
    None when a first-layer phase is not fixed."""
    k1, _, k2 = nodes
    lo1, hi1 = (np.asarray(a).reshape(-1) for a in layers[k1])
    if np.any((lo1 < 0) & (hi1 > 0)):
        return None
    act = np.nonzero(lo1 >= 0)[0]
    cons = [s for s in splits if s.node in (k1, k2) and s.point == 0.0]
    used = np.union1d(act, [s.index for s in cons if s.node == k1]).astype(int)
    if used.size == 0:
        return None
    w1 = np.asarray(net.nodes[k1].op.matrix)[used]
    b1 = np.asarray(net.nodes[k1].op.offset, dtype=np.float64).reshape(-1)[used]
    w2 = np.asarray(net.nodes[k2].op.matrix)[:, used] * np.isin(used, act)[None]
    b2 = np.asarray(net.nodes[k2].op.offset, dtype=np.float64).reshape(-1)
    pos = {int(u): i for i, u in enumerate(used)}
    a = np.zeros((len(cons), used.size))
    b = np.zeros(len(cons))
    for m, s in enumerate(cons):
        if s.node == k1:
            a[m, pos[s.index]] = s.side
        else:
            a[m], b[m] = s.side * w2[s.index], s.side * b2[s.index]
    x_lo, x_hi = (np.asarray(v, dtype=np.float64).reshape(-1) for v in layers[0])
    n2 = w2.shape[0]
    sel = np.arange(n2) if entries is None else np.nonzero(entries)[0]
    rows = np.concatenate([w2[sel], -w2[sel]])
    consts = np.concatenate([b2[sel], -b2[sel]])
    beta = _ascent(rows, consts, a, b, w1, b1, x_lo, x_hi)
    mu = rows - beta @ a
    c = consts - beta @ b
    z1_abs = np.maximum(np.abs(lo1[used]), np.abs(hi1[used]))
    mu_err = 2 * gamma(len(cons) + 2) * (np.abs(rows) + beta @ np.abs(a))
    c_err = 2 * gamma(len(cons) + 2) * (np.abs(consts) + beta @ np.abs(b))
    low = _certified_min(mu, c, w1, b1, x_lo, x_hi, z1_abs, mu_err)
    low = round_down(low - round_up(c_err))
    lo, hi = np.full(n2, -np.inf), np.full(n2, np.inf)
    lo[sel], hi[sel] = low[:sel.size], -low[sel.size:]
    return lo, hi


def _ascent(rows, consts, a, b, w1, b1, x_lo, x_hi) -> np.ndarray:
    """β (R, M) ≥ 0 raising min over the box of (rows − βa)·z1 + consts − βb, by projected
    subgradient steps (float; the best iterate per row)."""
    beta = np.zeros((rows.shape[0], a.shape[0]))
    if a.shape[0] == 0:
        return beta
    best, best_val = beta.copy(), np.full(rows.shape[0], -np.inf)
    z_a = a @ w1  # (M, n): constraint m as a function of x, plus a @ b1 + b
    z_c = a @ b1 + b
    scale = np.abs(rows).sum(axis=1, keepdims=True) / (np.abs(a).sum(axis=1)[None] + 1e-300)
    for t in range(STEPS):
        g = (rows - beta @ a) @ w1
        x = np.where(g > 0, x_lo, x_hi)
        val = (g * x).sum(axis=1) + (rows - beta @ a) @ b1 + consts - beta @ b
        better = val > best_val
        best[better], best_val[better] = beta[better], val[better]
        grad = -(x @ z_a.T + z_c)  # d val / d β
        beta = np.maximum(0.0, beta + scale * grad / (np.abs(grad).max(axis=1, keepdims=True)
                                                      + 1e-300) * 0.5 / (1 + t))
    return best
