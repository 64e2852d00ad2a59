"""Certified upper bounds on the ℓ2 operator norm of zero-padded N-d convolutions
(``conv_spectral_norm_upper``): the layer at its real input size is a compression of a circular
convolution on a torus (polyphase rearrangement for strides, zero-expanded kernel for
dilations, max over groups), whose norm is the max over DFT frequencies of σ₁ of a small
matrix (``boundprop.torus_conv``); each frequency is certified by a floating Cholesky
factorisation with a proven rounding margin (see the section comment below). Small layers can
also use their explicit matrix; sqrt(‖A‖₁‖A‖_∞) is the cheap sound fallback.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from boundprop.lapack_potrf import probe_fast_potrf
from boundprop.rounding import gamma, round_up
from boundprop.torus_conv import TorusConv, lanczos_top, top_eigenvalues

try:  # optional: one BLAS thread per worker while the workers factor in parallel
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None

try:  # NumPy's stacked Cholesky gufunc (a private module: absent in other NumPy layouts)
    from numpy.linalg import _umath_linalg
except ImportError:  # pragma: no cover - other NumPy layouts
    _umath_linalg = None

if TYPE_CHECKING:
    import scipy.sparse

    from boundprop.ops.conv import Conv

# =============================================================================================
# The ℓ2 operator norm of a zero-padded N-d convolution at its real input size.
#
# Reductions (each exact, or an upper bound on the norm):
#   * groups: the operator is block diagonal over groups → max over groups;
#   * dilation d: the kernel with d−1 zeros between taps (size d(k−1)+1) is the same operator;
#   * stride s (polyphase / space-to-depth): with z_r[m] = x_pad[s·m + r] (a re-indexing of the
#     padded input), y[o] = Σ_a Σ_r K[:, :, s·a + r] z_r[o + a]: a stride-1 "valid" correlation
#     with ceil(k/s) taps and c_in·s channels per axis (taps beyond k are zero);
#   * zero padding: the valid correlation reads z only at m ≤ H_out + k' − 2, so on a torus of
#     size N = H_out + k' − 1 per axis no kept output wraps around. The layer is R·C_N·Π with Π
#     a coordinate selection (‖Π‖ ≤ 1) and R a restriction, hence ‖conv‖ ≤ ‖C_N‖;
#   * the DFT block-diagonalises C_N: ‖C_N‖ = max over ω ∈ (2π/N)ℤ^r of σ₁(K̂(ω)),
#     K̂(ω) = Σ_a K_a e^{−iω·a}, and K̂(−ω) = conj K̂(ω) (real kernel): half the frequencies.
# Per frequency, λ_max(H(ω)) with H = K̂ᴴK̂ = Σ_δ G_δ e^{iω·δ}, G_δ = Σ_b K_{b+δ}ᵀ K_b
# (G_{−δ} = G_δᵀ), is certified ≤ L by a floating Cholesky factorisation of L·I − Ĥ(ω):
#   if it completes, R̂ᴴR̂ = Â + ΔA with |ΔA| ≤ γ|R̂ᴴ||R̂| (Higham, Thm 10.3; any summation
#   order; for complex arithmetic we use the generous γ = gamma(4c+8)), so
#   λ_min(Â) ≥ −γ‖R̂‖_F², where ‖R̂‖_F² = Σ_i (R̂ᴴR̂)_ii ≤ tr(Â)/(1 − γ) (diagonal of the same
#   bound). With ‖Â − (L·I − H)‖₂ ≤ E_H + E_diag (forming Ĥ: entrywise ≤ 2ε·(K̄ᵀK̄), so
#   E_H = 2ε‖K̄‖_F²; the subtraction on the diagonal: E_diag = u·max_i|L − Ĥ_ii|, doubled):
#       λ_max(H(ω)) ≤ L + γ·tr(Â)/(1 − γ) + E_H + E_diag (+ a generous underflow term),
#   each sum rounded up. The bound is the max of this over all frequencies.
# =============================================================================================

_CHUNK_BYTES = 512 * 2**20


def _complex_cholesky_gamma(n: int) -> float:
    """Backward-error constant of Cholesky of an n×n Hermitian matrix in complex arithmetic.

    Real: |ΔA| ≤ γ_{n+1}|R̂ᵀ||R̂| (Higham, Thm 10.3). A complex product is accurate to
    √2·γ₂ and a complex inner product of n terms to about γ_{2n+2}·√2 (Higham §3.6); blocked
    LAPACK/BLAS orders only regroup the same sums. gamma(4n+8) covers all of this generously.
    """
    return gamma(4 * n + 8)


_FAST_POTRF: list = []  # [] = not probed yet; [None] or [(zpotrf, dpotrf)]


def _probe_fast_potrf():
    """The GIL-free LAPACK xPOTRF pair (``lapack_potrf.probe_fast_potrf``), probed once."""
    if not _FAST_POTRF:
        _FAST_POTRF[:] = [probe_fast_potrf()]
    return _FAST_POTRF[0]


def _cholesky_in_place(a: np.ndarray) -> np.ndarray:
    """Cholesky-factor each Hermitian matrix of the C-contiguous stack ``a`` (LAPACK xPOTRF;
    ``a`` is overwritten); returns which factorisations completed (info = 0, finite positive
    pivots). Large matrices: xPOTRF with UPLO = 'L' on the Fortran view aᵀ, in place, so it
    reads the upper triangle (row ≤ column) of a[i], i.e. factors conj(A), which has the same
    eigenvalues and the same rounding analysis. Small ones (n ≤ 8): NumPy's stacked gufunc
    (the same LAPACK routine on a copy, NaN on failure), which has less per-call overhead.
    Either way the factored matrix is the Hermitian matrix defined by one triangle of a[i]."""
    n = a.shape[1]
    idx = np.arange(n)
    if n <= 8 and _umath_linalg is not None:
        try:
            with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
                fac = _umath_linalg.cholesky_lo(a, signature="D->D" if np.iscomplexobj(a)
                                                else "d->d")
            piv = fac[:, idx, idx].real
            return np.all(np.isfinite(piv) & (piv > 0), axis=1)
        except AttributeError:  # pragma: no cover - other NumPy layouts
            pass
    fast = _probe_fast_potrf()
    info = np.empty(a.shape[0], dtype=np.int64)
    if fast is not None:
        potrf = fast[0] if np.iscomplexobj(a) else fast[1]
        for i in range(a.shape[0]):
            info[i] = potrf(a[i])
    else:  # pragma: no cover - wheels without the scipy-openblas symbols
        from scipy.linalg import lapack  # lazy: scipy is heavy, and this path is a fallback

        potrf = lapack.zpotrf if np.iscomplexobj(a) else lapack.dpotrf
        for i in range(a.shape[0]):
            info[i] = potrf(a[i].T, lower=1, overwrite_a=1, clean=0)[1]
    piv = a[:, idx, idx].real
    return (info == 0) & np.all(np.isfinite(piv) & (piv > 0), axis=1)


def _frob2_bound(diag: np.ndarray, g_chol: float) -> np.ndarray:
    """‖R̂‖_F² ≤ tr(A)/(1 − γ) for each completed factorisation of a stack with diagonals
    ``diag`` (F, n): (R̂ᴴR̂)_ii = A_ii + ΔA_ii with |ΔA_ii| ≤ γ(|R̂|ᴴ|R̂|)_ii = γ(R̂ᴴR̂)_ii."""
    tr = np.abs(diag).sum(axis=1) * (1 + gamma(diag.shape[1]))
    return tr / (1 - g_chol) * (1 + 2.0**-50) + 2.0**-1000


def _pow2_normalise(w: np.ndarray) -> tuple[np.ndarray, int]:
    """w·2⁻ᵉ with max |entry| in [1/2, 1) and e, when this scaling is exact; else (w, 0)."""
    m = float(np.abs(w).max())
    e = math.frexp(m)[1]
    ws = np.ldexp(w, -e)
    if np.array_equal(np.ldexp(ws, e), w):  # no entry lost bits to the subnormal range
        return ws, e
    return w, 0


def _scale_up(u: float, e: int) -> float:
    """u·2ᵉ rounded up (exact unless the result is subnormal or overflows)."""
    return float(round_up(math.ldexp(u, e))) if u > 0 else 0.0


def _check_conv_args(weight: np.ndarray, in_spatial, strides, pads_begin, pads_end, dilations,
                     group: int) -> tuple[np.ndarray, list[int], list[int], list[int],
                                          list[int], list[int], list[int], int]:
    w = np.asarray(weight, dtype=np.float64)
    r = w.ndim - 2
    if r < 1:
        raise ValueError("a convolution kernel has shape (M, C/group, *kernel)")
    args = [list(map(int, a)) for a in (in_spatial, strides, pads_begin, pads_end, dilations)]
    if any(len(a) != r for a in args):
        raise ValueError(f"a {r}-d kernel needs {r} sizes, strides, pads and dilations")
    n, s, pb, pe, d = args
    if min(s) < 1 or min(d) < 1 or min(pb) < 0 or min(pe) < 0 or min(n) < 1:
        raise ValueError("strides, dilations and sizes must be positive, pads non-negative")
    if group < 1 or w.shape[0] % group:
        raise ValueError(f"{w.shape[0]} output channels do not split into {group} groups")
    if not np.all(np.isfinite(w)):
        raise ValueError("kernel has non-finite entries")
    k = list(w.shape[2:])
    ke = [di * (ki - 1) + 1 for di, ki in zip(d, k)]
    if any(ni + b + e < kk for ni, b, e, kk in zip(n, pb, pe, ke)):
        raise ValueError("kernel larger than padded input")
    return w, n, s, pb, pe, d, k, int(group)


def _conv_out_sizes(n, s, pb, pe, d, k) -> list[int]:
    return [(ni + b + e - (di * (ki - 1) + 1)) // si + 1
            for ni, si, b, e, di, ki in zip(n, s, pb, pe, d, k)]


def conv_norm1inf_upper(weight: np.ndarray, in_spatial: Sequence[int], strides: Sequence[int],
                        pads_begin: Sequence[int], pads_end: Sequence[int],
                        dilations: Sequence[int], group: int) -> float:
    """sqrt(‖A‖₁‖A‖_∞) ≥ ‖A‖₂ for the conv operator A, rounded up (a cheap sound fallback).

    ‖A‖_∞ (max row |·|-sum) ≤ max_o Σ_{c,a} |W[o,c,a]| (boundary rows have fewer terms).
    ‖A‖₁ (max column |·|-sum): input position x of channel c is met by tap a of output o only
    when d·a ≡ x + p_begin (mod s) per axis, so a column sum is ≤ max over residues ρ of
    Σ_{o in c's group} Σ_{a : d·a ≡ ρ (mod s)} |W[o,c,a]|. Sums of non-negative terms:
    relative error ≤ γ_n.
    """
    w, n, s, pb, pe, d, k, g = _check_conv_args(weight, in_spatial, strides, pads_begin,
                                                pads_end, dilations, group)
    ws, e = _pow2_normalise(w) if np.any(w) else (w, 0)
    a = np.abs(ws)
    m, cg = a.shape[:2]
    # sums of non-negative terms (exact 0/1 selections below): no underflow error, γ_n each
    rows = round_up(a.reshape(m, -1).sum(axis=1).max() * (1 + gamma(a[0].size)))
    cols = a.reshape(g, m // g, cg, *k).sum(axis=1)  # (G, cg, *k)
    for i, (ki, si, di) in enumerate(zip(k, s, d)):
        onehot = np.zeros((ki, si))
        onehot[np.arange(ki), (di * np.arange(ki)) % si] = 1.0  # exact 0/1 selection
        cols = np.moveaxis(np.tensordot(cols, onehot, axes=([2 + i], [0])), -1, 2 + i)
    colmax = round_up(cols.max() * (1 + gamma((m // g) * (int(np.prod(k)) + 1) + sum(k))))
    # each single operation rounded up (valid in the subnormal range too)
    u = float(round_up(round_up(math.sqrt(rows)) * round_up(math.sqrt(colmax))))
    return _scale_up(u, e)


# --------------------------------------------------------------------------------------------
# The Fourier (torus) route


def _polyphase_kernels(w: np.ndarray, s, d, group: int) -> np.ndarray:
    """Per group, the stride-1 kernel equivalent to the dilated, strided one: (G, M/G, C', *k').

    Dilation inserts zeros; then each axis of length ke is zero-extended to s·ceil(ke/s) and
    split as t = s·a + r, the phase r joining the channel axis (K'[o,(c,r),a] = K[o,c,s·a+r]).
    """
    m, cg, *k = w.shape
    r = len(k)
    ke = [di * (ki - 1) + 1 for di, ki in zip(d, k)]
    kp = [-(-e // si) for e, si in zip(ke, s)]
    ex = np.zeros((m, cg, *[p * si for p, si in zip(kp, s)]))
    ex[(slice(None), slice(None), *[slice(0, e, di) for e, di in zip(ke, d)])] = w
    ex = ex.reshape(m, cg, *[v for p, si in zip(kp, s) for v in (p, si)])
    # axes: 0 m, 1 c, then (a_i, r_i) pairs at 2+2i, 3+2i → (m, c, r_1..r_r, a_1..a_r)
    order = [0, 1] + [3 + 2 * i for i in range(r)] + [2 + 2 * i for i in range(r)]
    ex = ex.transpose(order).reshape(m, cg * int(np.prod(s)), *kp)
    return ex.reshape(group, m // group, *ex.shape[1:])


class _Certifier:
    """Certifies λ_max(H(ω)) ≤ level + E at every frequency with a common, growing level.

    Chunks are processed in a fixed order and every estimate is a deterministic function of its
    matrix, so the result does not depend on timing; the work inside a chunk (assembly,
    Cholesky, ‖R̂‖_F²) is split over ``workers`` threads running single-threaded BLAS.
    """

    def __init__(self, tc: TorusConv, rel_tol: float, pool: ThreadPoolExecutor | None,
                 workers: int) -> None:
        self.tc, self.tol = tc, max(rel_tol, 1e-12)
        self.pool, self.workers = pool, workers
        c = tc.c
        self.g_chol = _complex_cholesky_gamma(c)
        self.kappa = 64 * tc.e_h + 2.0**-1000  # keeps the level clear of rounding noise
        self.level = 0.0
        self.bound = 0.0  # max over certified frequencies of level + E
        self.dense_eig = c <= 48  # small blocks: exact batched eigvalsh is cheap
        self.stats = {"cholesky": 0, "estimates": 0, "failures": 0, "rounds": 0,
                      "t_estimate": 0.0, "t_assemble": 0.0, "t_cholesky": 0.0}

    def _map(self, fn, n: int) -> list:
        """fn(slice) over ``workers`` contiguous parts of range(n), in parallel."""
        parts = min(self.workers, n)
        cuts = [n * i // parts for i in range(parts + 1)]
        sl = [slice(cuts[i], cuts[i + 1]) for i in range(parts)]
        if self.pool is None or parts == 1:
            return [fn(x) for x in sl]
        return list(self.pool.map(fn, sl))

    def estimate(self, neg_h: np.ndarray, effort: int = 0) -> np.ndarray:
        """λ_max estimates: Lanczos (32 steps, then 64), then a dense eigensolver."""
        t = time.perf_counter()
        if effort >= 2 or self.dense_eig:
            est = top_eigenvalues
        else:
            est = functools.partial(lanczos_top, steps=32 * (1 + effort))
        lam = np.concatenate(self._map(lambda sl: est(neg_h[sl]), neg_h.shape[0]))
        self.stats["t_estimate"] += time.perf_counter() - t
        self.stats["estimates"] += neg_h.shape[0]
        return lam

    def _raise_level(self, lam: float) -> None:
        target = float(round_up(lam * (1 + self.tol) + self.kappa))
        self.level = max(self.level, target)

    def assemble(self, grp: int, j: np.ndarray) -> np.ndarray:
        """−Ĥ at the frequencies j, the matrix product split over the workers."""
        tc = self.tc
        out = np.empty((j.shape[0], tc.c, tc.c), dtype=np.complex128)
        self._map(lambda sl: tc.neg_gram(grp, j[sl], out[sl]), j.shape[0])
        return out

    def initial_estimate(self) -> None:
        """λ_max at a coarse grid of frequencies (ω = 0 included), then a local hill climb on the
        torus grid from the best point: only sets the starting level (speed, not soundness)."""
        tc = self.tc
        r = len(tc.half_shape)
        budget = int(min(256, max(8, tc.n_freq // 20)))  # ≈ 5 % of the Cholesky work
        per_axis = max(2, int(round(budget ** (1.0 / r))))
        axes = [np.unique(np.linspace(0, h - 1, min(h, per_axis)).round().astype(np.int64))
                for h in tc.half_shape]
        grid = np.array(np.meshgrid(*axes, indexing="ij")).reshape(r, -1).T
        best_lam, best = -1.0, (0, grid[0])
        for grp in range(tc.g):
            lam = self.estimate(self.assemble(grp, grid))
            i = int(np.argmax(lam))
            if lam[i] > best_lam:
                best_lam, best = float(lam[i]), (grp, grid[i])
        grp, j = best
        for _ in range(4):
            cand = []
            for ax in range(r):
                for sgn in (-1, 1):
                    q = j.copy()
                    q[ax] = (q[ax] + sgn) % tc.torus[ax]
                    if q[-1] > tc.torus[-1] // 2:  # H(−ω) = conj H(ω): fold into the half grid
                        q = (-q) % np.array(tc.torus)
                    cand.append(q)
            cand = np.array(cand)
            lam = self.estimate(self.assemble(grp, cand))
            i = int(np.argmax(lam))
            if lam[i] <= best_lam:
                break
            best_lam, j = float(lam[i]), cand[i]
        self._raise_level(max(best_lam, 0.0))

    def certify_chunk(self, grp: int, lin: np.ndarray) -> None:
        tc, c = self.tc, self.tc.c
        j = tc.freqs(lin)
        idx = np.arange(c)
        rounds = 0
        while j.shape[0]:
            rounds += 1
            t = time.perf_counter()
            a = self.assemble(grp, j)  # −Ĥ (recomputed for retries: factoring is in place)
            self.stats["t_assemble"] += time.perf_counter() - t
            hdiag = a.real[:, idx, idx].copy()  # −Ĥ_ii (real part: zpotrf reads only that)
            level = self.level
            a[:, idx, idx] = level + hdiag  # fl(level − Ĥ_ii), imaginary part 0
            diag = level + hdiag  # the same values as just stored (one rounding each)
            t = time.perf_counter()
            ok = np.concatenate(self._map(lambda sl, a=a: _cholesky_in_place(a[sl]), len(j)))
            self.stats["t_cholesky"] += time.perf_counter() - t
            self.stats["cholesky"] += len(j)
            self.stats["rounds"] += 1
            if np.any(ok):
                nf = float(_frob2_bound(diag[ok], self.g_chol).max())
                hmax = float(np.abs(hdiag[ok]).max())
                e = (self.g_chol * nf + tc.e_h + 2 * 2.0**-53 * (level + hmax)
                     + tc.e_uf) * (1 + 1e-9)
                self.bound = max(self.bound, float(round_up(round_up(level + e) * (1 + 2.0**-52))))
            j = j[~ok]
            if not j.shape[0]:
                break
            self.stats["failures"] += j.shape[0]
            if rounds > 40:  # pathological: escalate geometrically (λ ≤ ‖K̄‖_F² bounds it)
                self.level = float(round_up(max(2 * self.level, self.kappa)))
            else:
                # repeated failures of the same frequencies: estimate them harder
                lam = self.estimate(self.assemble(grp, j), effort=rounds - 1)
                self._raise_level(float(lam.max()))
                if rounds > 3:  # rounding trouble: widen the margin geometrically
                    self.level = float(round_up(self.level * (1 + self.tol * 2.0**rounds)))
            if self.level <= level:  # the estimates were low: a small step, estimate harder
                self.level = float(round_up(level * (1 + self.tol / 4) + self.kappa))
            if rounds > 200:
                raise FloatingPointError("Cholesky certification did not complete")

    def run(self) -> float:
        tc = self.tc
        self.initial_estimate()
        chunk = max(1, int(_CHUNK_BYTES // (48 * tc.c * tc.c)))
        for grp in range(tc.g):
            for start in range(0, tc.n_freq, chunk):
                self.certify_chunk(grp, np.arange(start, min(tc.n_freq, start + chunk)))
        return self.bound


def _workers() -> int:
    """Threads for the per-frequency work: one per core (at most 4), but only when BLAS can be
    limited to one thread each (threadpoolctl) and the factorisation releases the GIL."""
    if threadpool_limits is None:  # pragma: no cover - optional
        return 1
    if _probe_fast_potrf() is None:  # pragma: no cover
        return 1
    try:
        return max(1, min(4, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def _single_threaded_blas():
    """Single-threaded BLAS/LAPACK inside (we run one Cholesky stack per core instead: many
    small factorisations parallelise better that way, and do not spin-wait under load)."""
    if threadpool_limits is None:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _fourier_prepare(w, n, s, pb, pe, d, k, g, pmap=None) -> TorusConv | None:
    kern = _polyphase_kernels(w, s, d, g)  # (G, mg, C', *k')
    keep_in = np.any(kern != 0, axis=tuple(i for i in range(kern.ndim) if i != 2))
    keep_out = np.any(kern != 0, axis=tuple(i for i in range(kern.ndim) if i != 1))
    kern = kern[:, keep_out][:, :, keep_in]  # zero rows/columns do not change σ₁
    if kern.size == 0:
        return None
    if kern.shape[1] < kern.shape[2]:
        kern = kern.swapaxes(1, 2)  # σ₁(K̂) = σ₁(K̂ᵀ): work with the smaller Gram
    kp = list(kern.shape[3:])
    hout = _conv_out_sizes(n, s, pb, pe, d, k)
    torus = [h + q - 1 for h, q in zip(hout, kp)]
    return TorusConv(np.ascontiguousarray(kern), torus, pmap)


def _fourier_upper(w, n, s, pb, pe, d, k, g, rel_tol: float) -> tuple[float, dict]:
    ws, e = _pow2_normalise(w)
    workers = _workers()
    with contextlib.ExitStack() as stack:
        pool = None
        if workers > 1:
            stack.enter_context(_single_threaded_blas())
            pool = stack.enter_context(ThreadPoolExecutor(workers))
        t_prep = time.perf_counter()
        tc = _fourier_prepare(ws, n, s, pb, pe, d, k, g,
                              None if pool is None else lambda fn, it: list(pool.map(fn, it)))
        t_prep = time.perf_counter() - t_prep
        if tc is None:
            return 0.0, {}
        cert = _Certifier(tc, rel_tol, pool, workers)
        u2 = cert.run()
    info = dict(cert.stats, t_prepare=t_prep, torus=tc.torus, channels=tc.c, groups=tc.g,
                frequencies=tc.n_freq)
    return _scale_up(float(round_up(math.sqrt(u2))), e), info


# --------------------------------------------------------------------------------------------
# The dense route (small layers): the explicit matrix at the real input size.


def conv_matrix(weight: np.ndarray, in_spatial: Sequence[int], strides: Sequence[int],
                pads_begin: Sequence[int], pads_end: Sequence[int], dilations: Sequence[int],
                group: int) -> scipy.sparse.csr_matrix:
    """The conv operator as a scipy.sparse CSR matrix (rows (m, *out), columns (c, *in));
    every entry is a copy of a kernel entry (no arithmetic)."""
    import scipy.sparse as sp  # lazy: scipy is heavy

    w, n, s, pb, pe, d, k, g = _check_conv_args(weight, in_spatial, strides, pads_begin,
                                                pads_end, dilations, group)
    m, cg = w.shape[:2]
    mg = m // g
    hout = _conv_out_sizes(n, s, pb, pe, d, k)
    r = len(n)
    rows, cols, vals = [], [], []
    out_idx = np.array(np.unravel_index(np.arange(int(np.prod(hout))), hout))  # (r, P)
    n_out_sp, n_in_sp = int(np.prod(hout)), int(np.prod(n))
    for tap in np.ndindex(*k):
        pos = [s[i] * out_idx[i] + d[i] * tap[i] - pb[i] for i in range(r)]
        valid = np.all([(p >= 0) & (p < n[i]) for i, p in enumerate(pos)], axis=0)
        if not np.any(valid):
            continue
        o_sp = np.nonzero(valid)[0]
        i_sp = np.ravel_multi_index([p[valid] for p in pos], n)
        wt = w[(slice(None), slice(None), *tap)]  # (M, cg)
        mm, cc = np.nonzero(wt)
        chan_in = (mm // mg) * cg + cc
        rows.append((mm[:, None] * n_out_sp + o_sp[None, :]).ravel())
        cols.append((chan_in[:, None] * n_in_sp + i_sp[None, :]).ravel())
        vals.append(np.repeat(wt[mm, cc], o_sp.size))
    shape = (m * n_out_sp, cg * g * n_in_sp)
    if not rows:
        return sp.csr_matrix(shape)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=shape)


def _dense_upper(w, n, s, pb, pe, d, k, g, rel_tol: float) -> float:
    """λ_max(AᵀA) ≤ L certified by a real Cholesky of fl(L·I − fl(AᵀA)) (as above, real γ)."""
    import scipy.sparse.linalg as sla  # lazy: scipy is heavy

    ws, e = _pow2_normalise(w)
    a = conv_matrix(ws, n, s, pb, pe, d, g)  # (tap positions never collide: exact)
    if a.shape[0] < a.shape[1]:
        a = a.T.tocsr()
    if a.nnz == 0:
        return 0.0
    inner = a.shape[0]
    h = (a.T @ a).toarray()  # |Ĥ − H| ≤ γ_inner |A|ᵀ|A| (sums in any order)
    nn = h.shape[0]
    absa = abs(a)
    l1 = float(np.asarray(absa.sum(axis=0)).max()) * (1 + gamma(inner))
    linf = float(np.asarray(absa.sum(axis=1)).max()) * (1 + gamma(nn))
    fro2 = float(absa.multiply(absa).sum()) * (1 + gamma(a.nnz + 1))
    e_h = gamma(inner) * min(l1 * linf, fro2) * 1.000001  # ‖|A|ᵀ|A|‖₂ ≤ ‖|A|‖₁‖|A|‖_∞
    if nn <= 64:
        lam = float(np.linalg.eigvalsh(h)[-1])
    else:
        v0 = np.random.default_rng(0).standard_normal(nn)  # deterministic start
        lam = float(sla.eigsh(h, k=1, which="LA", tol=1e-8, v0=v0,
                              return_eigenvectors=False)[0])
    g_chol = gamma(nn + 1)
    level = float(round_up(max(lam, 0.0) * (1 + max(rel_tol, 1e-12)) + 64 * e_h + 2.0**-1000))
    idx = np.arange(nn)
    hdiag = h[idx, idx].copy()
    np.negative(h, out=h)
    h = np.ascontiguousarray(h)
    for _ in range(100):
        h[idx, idx] = level - hdiag
        diag = h[idx, idx].copy()
        if _cholesky_in_place(h[None])[0]:
            nf = float(_frob2_bound(diag[None], g_chol)[0])
            e_uf = (nn + 1) * nn * (inner + nn + 8) * 2.0**-1060
            err = (g_chol * nf + e_h + 2 * 2.0**-53 * (level + float(np.abs(hdiag).max()))
                   + e_uf) * (1 + 1e-9)
            u2 = float(round_up(round_up(level + err) * (1 + 2.0**-52)))
            return _scale_up(float(round_up(math.sqrt(u2))), e)
        level = float(round_up(level * (1 + 4 * max(rel_tol, 1e-6)) + 64 * e_h))
        h = -(a.T @ a).toarray()  # factoring was in place
    raise FloatingPointError("dense Cholesky certification did not complete")


_DENSE_MAX = 2048  # the dense route (auto) when the smaller side of the matrix is at most this


def conv_spectral_norm_upper(weight: np.ndarray, in_spatial: Sequence[int],
                             strides: Sequence[int], pads_begin: Sequence[int],
                             pads_end: Sequence[int], dilations: Sequence[int], group: int, *,
                             rel_tol: float = 1e-3, method: str = "auto") -> float:
    """A certified upper bound on the ℓ2 operator norm of a zero-padded N-d convolution
    (ONNX Conv semantics: cross-correlation; kernel (M, C/group, *k)) at input size
    ``in_spatial``, with asymmetric pads, strides, dilations and groups.

    method:
      * ``"fourier"``: the torus route (see the section comment): ‖conv‖ ≤ max_ω σ₁(K̂(ω)) on
        the polyphase kernel, each frequency certified by Cholesky of L·I − Ĥ(ω) with
        L ≈ max_ω λ_max(H(ω))·(1 + rel_tol); the result is that circular norm times
        (1 + rel_tol)^{1/2} (a little more if the eigenvalue estimates needed several rounds)
        plus rounding margins (relative ~1e-10);
      * ``"dense"``: the explicit matrix A, λ_max(AᵀA) certified by one Cholesky (small
        layers only; tight to rel_tol);
      * ``"norm1inf"``: sqrt(‖A‖₁‖A‖_∞);
      * ``"auto"`` (default): the minimum of the Fourier bound, sqrt(‖A‖₁‖A‖_∞) and, when the
        smaller side of A is ≤ 2048, the dense bound. Each is an upper bound, so is the min.
    The kernel is scaled by a power of two first (exact) so no product under- or overflows
    harmfully; an all-zero kernel gives 0.0.
    """
    w, n, s, pb, pe, d, k, g = _check_conv_args(weight, in_spatial, strides, pads_begin,
                                                pads_end, dilations, group)
    if not np.any(w):
        return 0.0
    if method == "norm1inf":
        return conv_norm1inf_upper(w, n, s, pb, pe, d, g)
    if method == "fourier":
        return _fourier_upper(w, n, s, pb, pe, d, k, g, rel_tol)[0]
    if method == "dense":
        return _dense_upper(w, n, s, pb, pe, d, k, g, rel_tol)
    if method != "auto":
        raise ValueError(f"unknown method {method!r}")
    bounds = [conv_norm1inf_upper(w, n, s, pb, pe, d, g)]
    try:
        bounds.append(_fourier_upper(w, n, s, pb, pe, d, k, g, rel_tol)[0])
    except FloatingPointError:
        pass  # the 1-∞ bound stands
    hout = _conv_out_sizes(n, s, pb, pe, d, k)
    side = min(w.shape[0] * int(np.prod(hout)), w.shape[1] * g * int(np.prod(n)))
    if side <= _DENSE_MAX:
        try:
            bounds.append(_dense_upper(w, n, s, pb, pe, d, k, g, rel_tol))
        except FloatingPointError:
            pass
    return min(bounds)


def conv_spectral_norm_lower(conv: Conv, iterations: int = 50, seed: int = 0) -> float:
    """Power iteration on AᵀA through ``conv.linear`` / ``conv.adjoint`` (bias ignored):
    ‖A x‖/‖x‖ for the final iterate x, a *lower* bound on σ₁(A) (tightness reports only)."""
    shape = (1, *conv.in_shapes[0])
    x = np.random.default_rng(seed).standard_normal(shape)
    x /= np.linalg.norm(x)
    for _ in range(iterations):
        y = conv.adjoint(conv.linear(x))
        ny = float(np.linalg.norm(y))
        if ny == 0:
            return 0.0
        x = y / ny
    return float(np.linalg.norm(conv.linear(x)) / np.linalg.norm(x))
