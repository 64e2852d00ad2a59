"""The GIL-free LAPACK Cholesky (xPOTRF) of the OpenBLAS already loaded by NumPy/SciPy, called
through ctypes so that one thread per core can factor (``boundprop.conv_norms``)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

try:  # optional: finds the OpenBLAS libraries loaded in this process
    from threadpoolctl import threadpool_info
except ImportError:  # pragma: no cover - optional
    threadpool_info = None


def probe_fast_potrf():
    """LAPACK xPOTRF of an already loaded OpenBLAS (the scipy-openblas builds shipped in the
    NumPy/SciPy wheels: ILP64 ``scipy_zpotrf_64_`` or LP64 ``scipy_zpotrf_``), called through
    ctypes, which releases the GIL: the pair (zpotrf, dpotrf), each potrf(a) -> info on a
    C-contiguous square matrix, in place. Returned only after a self-test against known
    factors and a known failure position; otherwise None."""
    try:
        for path in sorted(_openblas_paths()):
            lib = ctypes.CDLL(path)
            for suffix, itype in (("64_", ctypes.c_int64), ("", ctypes.c_int32)):
                try:
                    fz, fd = (getattr(lib, f"scipy_{p}potrf_{suffix}") for p in "zd")
                except AttributeError:
                    continue
                cand = tuple(_wrap_potrf(f, itype, dt) for f, dt in
                             ((fz, np.complex128), (fd, np.float64)))
                if _potrf_self_test(*cand):
                    return cand
    except Exception:  # pragma: no cover - any loading problem: use SciPy's wrappers
        return None
    return None


def _openblas_paths() -> set[str]:
    """The OpenBLAS libraries threadpoolctl sees loaded, and those in NumPy's wheel folder."""
    paths: set[str] = set()
    if threadpool_info is not None:
        paths |= {i["filepath"] for i in threadpool_info()
                  if i.get("internal_api") == "openblas"}
    paths |= {str(p) for p in (Path(np.__file__).resolve().parent.parent / "numpy.libs")
              .glob("libscipy_openblas*.so*")}
    return paths


def _wrap_potrf(f, itype, dtype):
    """``f`` (a ctypes LAPACK xPOTRF of integer type ``itype``) as potrf(a) -> info."""
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
    """Both routines reproduce numpy's Cholesky factor of a positive definite matrix and
    report the failure position (info = 5) of one whose leading 5×5 block is indefinite."""
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
