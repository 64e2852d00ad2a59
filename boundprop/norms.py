"""Certified upper bounds on operator norms of dense matrices.

ℓ∞ (max row |·|-sum) and ℓ1 (max column |·|-sum) are computed exactly up to the γ_n rounding
bound, applied upward. ℓ2 (the spectral norm σ₁) uses Gram iteration (Delattre et al., ICML 2023)
with a floating-point error recursion that makes the bound rigorous:

For the matrix A_t held in floats, B = fl(A_tᵀA_t) satisfies ‖B − A_tᵀA_t‖₂ ≤ ‖·‖_F ≤
γ_n ‖A_t‖_F² (n = inner dimension; any summation order). Hence
    σ₁(A_t)² = ‖A_tᵀA_t‖₂ ≤ ‖B‖₂ + γ_n ‖A_t‖_F²,
and with A_{t+1} = B / s_{t+1} (s a power of two: exact),
    σ₁(A_t) ≤ sqrt(s_{t+1} σ₁(A_{t+1}) + γ_n ‖A_t‖_F²).
At the last iterate σ₁(A_T) ≤ ‖A_T‖_F. Unwinding gives σ₁(W) ≤ s₀ u₀, each step rounded up.
Power iteration gives only a *lower* bound and is used here for nothing but tightness reports.

Convolutions (``conv_spectral_norm_upper``): the layer at its real input size is a compression
of a circular convolution on a torus (polyphase rearrangement for strides, zero-expanded kernel
for dilations, max over groups), whose norm is the max over DFT frequencies of σ₁ of a small
matrix; each frequency is certified by a floating Cholesky factorisation with a proven rounding
margin (see the section comment below). Small layers can also use their explicit matrix.
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

from boundprop.rounding import ELEMENTARY_RELATIVE_ERROR, gamma, round_up

if TYPE_CHECKING:
    import scipy.sparse

    from boundprop.ops.affine import Conv

GRAM_STEPS = 6


def _pow2_scale(x: float) -> float:
    """A power of two near x (scaling by it is exact)."""
    if x <= 0 or not math.isfinite(x):
        return 1.0
    return 2.0 ** math.floor(math.log2(x))


def _frobenius_upper(a: np.ndarray) -> float:
    """‖a‖_F rounded up (sum of squares: γ_{n+1}-bounded)."""
    s = float(np.sum(a * a))
    return float(round_up(math.sqrt(s * (1 + gamma(a.size + 1))) * (1 + 2.0**-52)))


def linf_norm_upper(w: np.ndarray) -> float:
    """‖W‖_∞ = max_i Σ_j |w_ij|, rounded up."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    return float(round_up(np.abs(w).sum(axis=1).max() * (1 + gamma(w.shape[1]))))


def l1_norm_upper(w: np.ndarray) -> float:
    """‖W‖_1 = max_j Σ_i |w_ij|, rounded up."""
    return linf_norm_upper(np.atleast_2d(np.asarray(w, dtype=np.float64)).T)


def spectral_norm_upper(w: np.ndarray, steps: int = GRAM_STEPS) -> float:
    """A certified upper bound on σ₁(W) by Gram iteration with rigorous rounding."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    if not np.all(np.isfinite(w)):
        raise ValueError("matrix has non-finite entries")
    if w.shape[0] < w.shape[1]:
        w = w.T  # σ₁(W) = σ₁(Wᵀ); iterate on the smaller Gram matrix
    if not np.any(w):
        return 0.0
    s0 = _pow2_scale(float(np.abs(w).max()))
    a = w / s0
    scales, frob, inner = [], [], []
    for _ in range(steps):
        fa = _frobenius_upper(a)
        b = a.T @ a
        s = _pow2_scale(float(np.abs(b).max()))
        scales.append(s)
        frob.append(fa)
        inner.append(a.shape[0])
        a = b / s
        if not np.any(a):
            break
    u = _frobenius_upper(a)
    for s, fa, n in zip(reversed(scales), reversed(frob), reversed(inner)):
        u = math.sqrt(round_up(s * u + gamma(n) * fa * fa) * (1 + 2.0**-52))
        u = float(round_up(u * (1 + 2.0**-52)))
    return float(round_up(s0 * u))


def spectral_norm_lower(w: np.ndarray, iterations: int = 100, seed: int = 0) -> float:
    """Power iteration: a *lower* bound estimate of σ₁(W) (for tightness reports only)."""
    w = np.atleast_2d(np.asarray(w, dtype=np.float64))
    v = np.random.default_rng(seed).standard_normal(w.shape[1])
    sigma = 0.0
    for _ in range(iterations):
        u = w @ v
        nu = np.linalg.norm(u)
        if nu == 0:
            return 0.0
        v = w.T @ (u / nu)
        sigma = float(np.linalg.norm(v))
        v /= sigma
    return sigma


# =============================================================================================
# Convolutions: the ℓ2 operator norm of a zero-padded N-d convolution at its real input size.
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
    """LAPACK xPOTRF of an already loaded OpenBLAS (the scipy-openblas builds shipped in the
    NumPy/SciPy wheels: ILP64 ``scipy_zpotrf_64_`` or LP64 ``scipy_zpotrf_``), called through
    ctypes, which releases the GIL so that one thread per core can factor. Used only after a
    self-test against known factors and a known failure position; otherwise None."""
    if _FAST_POTRF:
        return _FAST_POTRF[0]
    found = None
    try:
        import ctypes
        from pathlib import Path

        paths: set[str] = set()
        try:
            from threadpoolctl import threadpool_info

            paths |= {i["filepath"] for i in threadpool_info()
                      if i.get("internal_api") == "openblas"}
        except ImportError:  # pragma: no cover - optional
            pass
        paths |= {str(p) for p in (Path(np.__file__).resolve().parent.parent / "numpy.libs")
                  .glob("libscipy_openblas*.so*")}
        for path in sorted(paths):
            lib = ctypes.CDLL(path)
            for suffix, itype in (("64_", ctypes.c_int64), ("", ctypes.c_int32)):
                try:
                    fz, fd = (getattr(lib, f"scipy_{p}potrf_{suffix}") for p in "zd")
                except AttributeError:
                    continue
                cand = tuple(_wrap_potrf(f, itype, dt) for f, dt in
                             ((fz, np.complex128), (fd, np.float64)))
                if _potrf_self_test(*cand):
                    found = cand
                    break
            if found:
                break
    except Exception:  # pragma: no cover - any loading problem: use SciPy's wrappers
        found = None
    _FAST_POTRF[:] = [found]
    return found


def _wrap_potrf(f, itype, dtype):
    import ctypes

    f.restype = None
    f.argtypes = [ctypes.c_char_p, ctypes.POINTER(itype), ctypes.c_void_p,
                  ctypes.POINTER(itype), ctypes.POINTER(itype), ctypes.c_size_t]

    def potrf(a: np.ndarray) -> int:
        """UPLO = 'L' on the Fortran view of the C-contiguous square ``a``, in place."""
        if a.dtype != dtype or not a.flags.c_contiguous or a.shape[0] != a.shape[1]:
            raise TypeError("potrf needs a C-contiguous square matrix of its dtype")
        n, info = itype(a.shape[0]), itype(0)
        f(b"L", ctypes.byref(n), a.ctypes.data, ctypes.byref(n), ctypes.byref(info), 1)
        return int(info.value)

    return potrf


def _potrf_self_test(zpotrf, dpotrf) -> bool:
    rng = np.random.default_rng(0)
    for potrf, cplx in ((zpotrf, True), (dpotrf, False)):
        x = rng.standard_normal((7, 7)) + (1j * rng.standard_normal((7, 7)) if cplx else 0)
        h = x @ x.conj().T + np.eye(7)
        fac = h.copy()  # C-contiguous copy: the factorisation is in place
        if potrf(fac) != 0:
            return False
        ref = np.linalg.cholesky(h).conj().T  # the upper triangle of the C array holds Lᴴ
        if not np.allclose(np.triu(fac), ref, rtol=1e-12, atol=1e-12):
            return False
        bad = h.copy()
        bad[4, 4] = -50.0  # the leading 4×4 block is PD, the 5×5 one is not
        if potrf(bad) != 5:
            return False
    return True


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
    if n <= 8:
        try:
            from numpy.linalg import _umath_linalg

            with np.errstate(invalid="ignore", over="ignore", divide="ignore", under="ignore"):
                fac = _umath_linalg.cholesky_lo(a, signature="D->D" if np.iscomplexobj(a)
                                                else "d->d")
            piv = fac[:, idx, idx].real
            return np.all(np.isfinite(piv) & (piv > 0), axis=1)
        except (ImportError, AttributeError):  # pragma: no cover - other NumPy layouts
            pass
    fast = _probe_fast_potrf()
    info = np.empty(a.shape[0], dtype=np.int64)
    if fast is not None:
        potrf = fast[0] if np.iscomplexobj(a) else fast[1]
        for i in range(a.shape[0]):
            info[i] = potrf(a[i])
    else:  # pragma: no cover - wheels without the scipy-openblas symbols
        from scipy.linalg import lapack

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


class _TorusConv:
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
        support = np.argwhere(np.any(kt != 0, axis=(0, 1, 2))).ravel()  # nonzero taps
        coords = np.array(np.unravel_index(np.arange(t), taps)).T  # (T, r)
        # offsets δ = a − b between nonzero taps, split into δ = 0 and a half space (first
        # nonzero coordinate > 0); structurally zero G_δ are skipped (exact).
        pairs: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for ia in support:
            for ib in support:
                delta = tuple(int(v) for v in coords[ia] - coords[ib])
                nz = [v for v in delta if v != 0]
                if not nz or nz[0] > 0:
                    pairs.setdefault(delta, []).append((int(ia), int(ib)))
        zero = (0,) * r
        half = sorted(dl for dl in pairs if dl != zero)
        self.offsets = np.array(half, dtype=np.int64).reshape(-1, r)
        dh = len(half)
        self.dh = dh
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

        # B rows: [−Ĝ₀ | −(Ĝ_δ + Ĝ_δᵀ) for δ in half | −(Ĝ_δ − Ĝ_δᵀ) for δ in half], each
        # (c, c) block stored interleaved (re, im) so that trig @ B writes a complex array
        # (the zero halves cost flops, but every alternative layout measured slower: it needs
        # a strided copy). Memory: (2·dh + 1)·16·c² bytes per group.
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
        self.b = b.reshape(g, 1 + 2 * dh, 2 * c * c)
        # Error of Ĥ = fl(trig @ B) (entrywise, real and imaginary part each), relative to
        # M = Σ_δ M_δ = K̄ᵀK̄, K̄ = Σ_a |K_a|:
        #   Ĝ_δ: γ_{Tp};  fl(Ĝ ± Ĝᵀ): u;  trig values: e_t absolute (|·| ≤ 1);
        #   the dot product over 2·dh + 1 terms: γ_{2dh+1}.
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


def _top_eig(neg_h: np.ndarray) -> np.ndarray:
    """λ_max of Ĥ for a stack given as −Ĥ, by a dense eigensolver (estimates only)."""
    return -np.linalg.eigvalsh(neg_h)[:, 0]


def _lanczos_top(neg_h: np.ndarray, steps: int = 32, seed: int = 1) -> np.ndarray:
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


class _Certifier:
    """Certifies λ_max(H(ω)) ≤ level + E at every frequency with a common, growing level.

    Chunks are processed in a fixed order and every estimate is a deterministic function of its
    matrix, so the result does not depend on timing; the work inside a chunk (assembly,
    Cholesky, ‖R̂‖_F²) is split over ``workers`` threads running single-threaded BLAS.
    """

    def __init__(self, tc: _TorusConv, rel_tol: float, pool: ThreadPoolExecutor | None,
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
            est = _top_eig
        else:
            est = functools.partial(_lanczos_top, steps=32 * (1 + effort))
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
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:  # pragma: no cover - optional
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
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        yield
        return
    with threadpool_limits(limits=1):
        yield


def _fourier_prepare(w, n, s, pb, pe, d, k, g, pmap=None) -> _TorusConv | None:
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
    return _TorusConv(np.ascontiguousarray(kern), torus, pmap)


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
    import scipy.sparse as sp

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
    import scipy.sparse.linalg as sla

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
