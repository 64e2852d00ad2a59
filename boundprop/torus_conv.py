"""The per-frequency Gram matrices of a stride-1 multi-channel convolution on a torus, with
their rounding-error bound, and λ_max estimates of such matrices (used by
``boundprop.conv_norms``; see its section comment for the reduction of a padded, strided,
dilated, grouped convolution to this form).

For kernels K_a (taps a, each a (p, c) matrix) on a torus of sizes N, the DFT gives
K̂(ω) = Σ_a K_a e^{−iω·a} and H(ω) = K̂(ω)ᴴK̂(ω) = Σ_δ G_δ e^{iω·δ} with the offset Grams
G_δ = Σ_b K_{b+δ}ᵀ K_b (G_{−δ} = G_δᵀ), so with δ over a half space
    H(ω) = G₀ + Σ_δ (G_δ + G_δᵀ) cos(ω·δ) + i (G_δ − G_δᵀ) sin(ω·δ).
"""

from __future__ import annotations

import math

import numpy as np

from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, gamma, round_up

Offsets = dict[tuple[int, ...], list[tuple[int, int]]]


class TorusConv:
    """The per-frequency Gram matrices H(ω) = K̂(ω)ᴴK̂(ω) of a stack of stride-1 kernels
    (G, p, c, *taps) on a torus, assembled from the offset Grams G_δ, with their error bound."""

    def __init__(self, kern: np.ndarray, torus: list[int], pmap=None) -> None:
        """``pmap(fn, items)`` maps over items (possibly in parallel threads)."""
        pmap = pmap or (lambda fn, items: list(map(fn, items)))
        g, p, c, *taps = kern.shape
        self.g, self.c, self.torus = g, c, list(torus)
        r = len(taps)
        t = int(np.prod(taps))
        kt = kern.reshape(g, p, c, t)
        pairs = _offset_pairs(kt, taps)
        half = sorted(dl for dl in pairs if dl != (0,) * r)
        self.offsets = np.array(half, dtype=np.int64).reshape(-1, r)
        self.dh = len(half)
        self.b = self._gram_rows(kt, pairs, half, pmap)
        self._error_bounds(kt)
        self._frequency_grid()

    def _gram_rows(self, kt: np.ndarray, pairs: Offsets, half: list[tuple[int, ...]],
                   pmap) -> np.ndarray:
        """B (G, 1 + 2·dh, 2c²) with H(ω) = trig(ω) @ B: rows
        [−Ĝ₀ | −(Ĝ_δ + Ĝ_δᵀ) for δ in half | −(Ĝ_δ − Ĝ_δᵀ) for δ in half], each (c, c) block
        stored interleaved (re, im) so that trig @ B writes a complex array (the zero halves
        cost flops, but every alternative layout measured slower: it needs a strided copy).
        Memory: (2·dh + 1)·16·c² bytes per group."""
        g, p, c, _ = kt.shape
        dh = len(half)
        # Ĝ_δ = Σ_b K_{b+δ}ᵀ K_b as ONE product with inner dimension n_δ·p ≤ T·p:
        # |Ĝ_δ − G_δ| ≤ γ_{Tp} M_δ, M_δ = Σ_b |K_{b+δ}|ᵀ|K_b|.
        ktt = np.ascontiguousarray(kt.transpose(0, 3, 1, 2))  # (G, T, p, c)

        def gram(delta):
            lst = pairs.get(delta, [])
            if not lst:
                return np.zeros((g, c, c))
            ia = [a for a, _ in lst]
            ib = [b for _, b in lst]
            left = ktt[:, ia].reshape(g, len(ia) * p, c)
            right = ktt[:, ib].reshape(g, len(ib) * p, c)
            return np.matmul(left.transpose(0, 2, 1), right)

        zero = (0,) * self.offsets.shape[1]
        b = np.zeros((g, 1 + 2 * dh, c, c, 2))

        def fill(i):
            if i < 0:
                b[:, 0, :, :, 0] = -gram(zero)
                return
            gd = gram(half[i])
            gt = gd.transpose(0, 2, 1)
            b[:, 1 + i, :, :, 0] = -(gd + gt)
            b[:, 1 + dh + i, :, :, 1] = -(gd - gt)

        pmap(fill, range(-1, dh))
        if not np.all(np.isfinite(b)):
            raise FloatingPointError("offset Gram matrices overflowed")
        return b.reshape(g, 1 + 2 * dh, 2 * c * c)

    def _error_bounds(self, kt: np.ndarray) -> None:
        """``kbar_f2`` ≥ ‖K̄‖_F², ``e_h`` (entrywise error of Ĥ, as a bound on ‖Ĥ − H‖₂) and
        ``e_uf`` (gradual underflow).

        Error of Ĥ = fl(trig @ B) (entrywise, real and imaginary part each), relative to
        M = Σ_δ M_δ = K̄ᵀK̄, K̄ = Σ_a |K_a|: Ĝ_δ: γ_{Tp}; fl(Ĝ ± Ĝᵀ): u; trig values: e_t
        absolute (|·| ≤ 1); the dot product over 2·dh + 1 terms: γ_{2dh+1}."""
        _, p, c, t = kt.shape
        dh = self.dh
        u = 2.0**-53
        e_g = gamma(t * p)
        e_t = ELEMENTARY_RELATIVE_ERROR + 8 * u * math.pi  # library cos/sin + argument rounding
        one = (1 + e_g) * (1 + u) * (1 + e_t)
        eps = gamma(2 * dh + 1) * one + e_t * (1 + e_g) * (1 + u) + u * (1 + e_g) + e_g
        kbar = np.abs(kt).sum(axis=3) * (1 + gamma(t))  # (G, p, c) ≥ K̄ entrywise
        kbar_f2 = float((kbar * kbar).sum(axis=(1, 2)).max()) * (1 + gamma(p * c + 1))
        self.kbar_f2 = float(round_up(kbar_f2))
        # complex entry error ≤ |Δre| + |Δim| ≤ 2ε M_ij; ‖M‖₂ = ‖K̄‖₂² ≤ ‖K̄‖_F²
        self.e_h = float(round_up(2 * eps * 1.000001 * self.kbar_f2))
        # gradual underflow: absolute 2⁻¹⁰⁷⁵ per product; generously summed over all operations
        self.e_uf = float((c + 1) * c * (t * p + 2 * dh + c + 8) * 2.0**-1060)

    def _frequency_grid(self) -> None:
        """The half grid of frequencies (H(−ω) = conj H(ω)) and the exact integer phases:
        ω·δ = 2π m / lcm(N) with m = Σ_i j_i δ_i lcm/N_i."""
        self.half_shape = self.torus[:-1] + [self.torus[-1] // 2 + 1]
        self.n_freq = int(np.prod(self.half_shape))
        lcm = 1
        for nn in self.torus:
            lcm = lcm * nn // math.gcd(lcm, nn)
        if lcm >= 2**52:  # m / lcm must be exact in float64 for the angle error bound
            raise FloatingPointError("torus sizes too large for exact frequency angles")
        self.lcm = lcm
        self.phase = (self.offsets * np.array([lcm // nn for nn in self.torus],
                                              dtype=np.int64)).T  # (r, dh)

    def freqs(self, lin: np.ndarray) -> np.ndarray:
        """Frequency multi-indices (F, r) of linear indices into the half grid."""
        return np.array(np.unravel_index(lin, self.half_shape), dtype=np.int64).T.reshape(
            len(lin), len(self.half_shape))

    def neg_gram(self, grp: int, j: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """−Ĥ(ω_j) for the frequencies j (F, r) of group ``grp``: a (F, c, c) complex array."""
        f = j.shape[0]
        m = (j @ self.phase) % self.lcm  # exact integers: ω·δ = 2π m / lcm
        m = np.where(2 * m > self.lcm, m - self.lcm, m)
        theta = (2 * math.pi) * (m / self.lcm)
        trig = np.empty((f, 1 + 2 * self.dh))
        trig[:, 0] = 1.0
        trig[:, 1:1 + self.dh] = np.cos(theta)
        trig[:, 1 + self.dh:] = np.sin(theta)
        if out is None:
            out = np.empty((f, self.c, self.c), dtype=np.complex128)
        np.matmul(trig, self.b[grp], out=out.view(np.float64).reshape(f, 2 * self.c * self.c))
        return out


def _offset_pairs(kt: np.ndarray, taps: list[int]) -> Offsets:
    """Offsets δ = a − b between nonzero taps, δ = 0 and a half space (first nonzero coordinate
    > 0), each with its tap pairs (a, b); structurally zero G_δ are skipped (exact)."""
    t = kt.shape[3]
    support = np.argwhere(np.any(kt != 0, axis=(0, 1, 2))).ravel()  # nonzero taps
    coords = np.array(np.unravel_index(np.arange(t), taps)).T  # (T, r)
    pairs: Offsets = {}
    for ia in support:
        for ib in support:
            delta = tuple(int(v) for v in coords[ia] - coords[ib])
            nz = [v for v in delta if v != 0]
            if not nz or nz[0] > 0:
                pairs.setdefault(delta, []).append((int(ia), int(ib)))
    return pairs


def top_eigenvalues(neg_h: np.ndarray) -> np.ndarray:
    """λ_max of Ĥ for a stack given as −Ĥ, by a dense eigensolver (estimates only)."""
    return -np.linalg.eigvalsh(neg_h)[:, 0]


def lanczos_top(neg_h: np.ndarray, steps: int = 32, seed: int = 1) -> np.ndarray:
    """λ_max of Ĥ for a stack given as −Ĥ, by batched Lanczos with full reorthogonalisation:
    the largest Ritz value, a Rayleigh quotient (so ≤ λ_max up to rounding). Estimates only.
    Every matrix starts from the same vector, so the result does not depend on the batch."""
    f, c, _ = neg_h.shape
    m = min(steps, c)
    rng = np.random.default_rng(seed)
    basis = np.zeros((f, m, c), dtype=np.complex128)
    alpha = np.zeros((f, m))
    beta = np.zeros((f, m))
    v0 = rng.standard_normal(c) + 1j * rng.standard_normal(c)
    v = np.repeat((v0 / np.linalg.norm(v0))[None], f, axis=0)
    for j in range(m):
        basis[:, j] = v
        w = -np.matmul(neg_h, v[:, :, None])[:, :, 0]
        alpha[:, j] = np.real(np.sum(v.conj() * w, axis=1))
        q = basis[:, :j + 1]
        for _ in range(2):  # classical Gram-Schmidt, twice
            coef = np.matmul(q.conj(), w[:, :, None])  # (f, j+1, 1)
            w -= np.matmul(q.transpose(0, 2, 1), coef)[:, :, 0]
        nb = np.linalg.norm(w, axis=1)
        scale = np.abs(alpha[:, : j + 1]).max(axis=1) + 1e-300
        dead = nb <= 1e-10 * scale  # invariant subspace found: restart with a fixed vector
        beta[:, j] = np.where(dead, 0.0, nb)
        if np.any(dead):
            fresh = np.random.default_rng(seed + 1 + j).standard_normal(c)
            r = np.repeat(fresh[None], int(dead.sum()), axis=0) + 0j
            qd = q[dead]
            for _ in range(2):
                r -= np.matmul(qd.transpose(0, 2, 1), np.matmul(qd.conj(), r[:, :, None]))[
                    :, :, 0]
            w[dead] = r
            nb = np.where(dead, np.linalg.norm(w, axis=1), nb)
        v = w / (nb[:, None] + 1e-300)
    t = np.zeros((f, m, m))
    i = np.arange(m)
    t[:, i, i] = alpha
    t[:, i[:-1], i[:-1] + 1] = beta[:, :-1]
    t[:, i[:-1] + 1, i[:-1]] = beta[:, :-1]
    return np.linalg.eigvalsh(t)[:, -1]
