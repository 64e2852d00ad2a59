"""Running maxima of every measured quantity, with the float64 evaluation noise taken out.

The IR evaluation is float64; its rounding error per entry is taken as ``EVAL_ERR`` × the
largest magnitude M of any node value seen. That noise is subtracted from the numerator of every
ratio / difference before dividing, so each stored value stays a lower bound of the true one:
a pair ratio ‖f(x) − f(y)‖ / ‖x − y‖ ≤ ℓ; a second difference
‖f(z+h) + f(z−h) − 2f(z)‖ / ‖h‖² ≤ L and a mixed one
‖f(z+h+u) − f(z+h) − f(z+u) + f(z)‖ / (‖h‖‖u‖) ≤ L (Taylor with integral remainder).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from boundprop.audit.function import AuditedFunction
from boundprop.audit.pnorms import entries_factor, vector_norm

EVAL_ERR = 1e-10  # per-entry float64 evaluation error, relative to the largest node magnitude


class RunningMaxima:
    """Per node k: the largest ‖value‖_p (``bound``), entry ranges (``lo``, ``hi``), pair
    ratios (``lip``) and second/mixed differences (``smooth``), each with how it was found;
    for the output, the witness z (and context index) of each entry's extreme, and the best
    points for ‖f‖ and pair ratios (seeds of the ascents). ``objective`` (optional): the loss
    y ↦ F(y), whose ratios and second differences are kept too."""

    def __init__(self, fn: AuditedFunction, p: str, keep_witness: bool, objective=None):
        self.fn, self.p = fn, p
        n = len(fn.shapes)
        self.out = fn.net.output
        self.bound = np.zeros(n)
        self.bound_how = [""] * n
        self.lo = [np.full(s, np.inf) for s in fn.shapes]
        self.hi = [np.full(s, -np.inf) for s in fn.shapes]
        self.lip = np.zeros(n)
        self.lip_how = [""] * n
        self.smooth = np.zeros(n)
        self.smooth_how = [""] * n
        self.mag = 0.0
        k_out = fn.sizes[self.out]
        self.keep = keep_witness
        self.w_hi = np.zeros((k_out, fn.dim)) if keep_witness else None
        self.w_lo = np.zeros((k_out, fn.dim)) if keep_witness else None
        self.j_hi = np.zeros(k_out, int)
        self.j_lo = np.zeros(k_out, int)
        self.how_hi = [""] * k_out
        self.how_lo = [""] * k_out
        self.top_bound: list[tuple[float, Any, int]] = []  # (‖f‖, z, ctx)
        self.top_pairs: list[tuple[float, Any, int]] = []  # (ratio, midpoint z, ctx)
        self.objective = objective
        self.obj_lip, self.obj_lip_how = 0.0, ""
        self.obj_smooth, self.obj_smooth_how = 0.0, ""

    @property
    def err(self) -> float:
        """Evaluation noise per entry: EVAL_ERR × the largest magnitude seen."""
        return EVAL_ERR * self.mag

    def _flat(self, v):
        return v.reshape(v.shape[0], v.shape[1], -1)

    def add_values(self, vals, Z, how):
        """Node values ``vals`` (per node (n, n_ctx, *shape)) measured at the points Z."""
        for k, v in enumerate(vals):
            f = self._flat(v)
            if f.size:
                self.mag = max(self.mag, float(np.abs(f).max()))
            nrm = vector_norm(f, self.p)
            b = float(nrm.max(initial=0.0))
            if b > self.bound[k]:
                self.bound[k], self.bound_how[k] = b, how
            vmin, vmax = v.min(axis=(0, 1)), v.max(axis=(0, 1))
            if k == self.out:
                self._add_output(f, nrm, vmin, vmax, Z, how)
            np.minimum(self.lo[k], vmin, out=self.lo[k])
            np.maximum(self.hi[k], vmax, out=self.hi[k])

    def _add_output(self, f, nrm, vmin, vmax, Z, how):
        """Witnesses of the output entries' new extremes, and the 4 largest ‖f‖ seen."""
        k = self.out
        flat = f.reshape(-1, f.shape[-1])
        imax, imin = flat.argmax(axis=0), flat.argmin(axis=0)
        fmax, fmin = vmax.reshape(-1), vmin.reshape(-1)
        hi, lo = self.hi[k].reshape(-1), self.lo[k].reshape(-1)
        for e in np.flatnonzero(fmax > hi):
            self.how_hi[e] = how
            self.j_hi[e] = imax[e] % f.shape[1]
            if self.keep:
                self.w_hi[e] = Z[imax[e] // f.shape[1]]
        for e in np.flatnonzero(fmin < lo):
            self.how_lo[e] = how
            self.j_lo[e] = imin[e] % f.shape[1]
            if self.keep:
                self.w_lo[e] = Z[imin[e] // f.shape[1]]
        best = np.argsort(nrm.reshape(-1))[::-1][:4]
        for i in best:
            self.top_bound.append((float(nrm.reshape(-1)[i]), Z[i // f.shape[1]].copy(),
                                   int(i % f.shape[1])))
        self.top_bound = sorted(self.top_bound, key=lambda t: -t[0])[:4]

    def _ratio_update(self, num_vals, den, coef_sum, which, how, Zmid=None):
        """num_vals: per node arrays (n, n_ctx, entries) of combinations whose coefficients'
        absolute values sum to ``coef_sum``; den: (n,) > 0."""
        best = self.lip if which == "lip" else self.smooth
        hows = self.lip_how if which == "lip" else self.smooth_how
        for k, d in enumerate(num_vals):
            num = vector_norm(d, self.p)
            noise = self.err * coef_sum * entries_factor(d.shape[-1], self.p)
            r = np.maximum(num - noise, 0.0) / den[:, None]
            v = float(r.max(initial=0.0))
            if v > best[k]:
                best[k], hows[k] = v, how
            if which == "lip" and k == self.out and Zmid is not None and r.size:
                i = int(np.argmax(r.max(axis=1)))
                self.top_pairs.append((float(r[i].max()), Zmid[i].copy(), int(np.argmax(r[i]))))
                self.top_pairs = sorted(self.top_pairs, key=lambda t: -t[0])[:4]

    def _obj_values(self, vout):
        return self.objective(vout) if self.objective is not None else None

    def _z_norm(self) -> str:
        """The norm of the variable: the certificate's for inputs, ℓ2 for parameters."""
        return self.p if self.fn.wrt == "input" else "2"

    def add_pairs(self, va, vb, za, zb, how):
        """Pair ratios ‖f(a) − f(b)‖ / ‖a − b‖ of every node (and of the objective)."""
        dz = vector_norm(za - zb, self._z_norm()) * (1 + 1e-12)
        ok = dz > 0
        if not ok.any():
            return
        diffs = [self._flat(a[ok]) - self._flat(b[ok]) for a, b in zip(va, vb)]
        self._ratio_update(diffs, dz[ok], 2.0, "lip", how, 0.5 * (za[ok] + zb[ok]))
        if self.objective is not None:
            fa, fb = self._obj_values(va[self.out][ok]), self._obj_values(vb[self.out][ok])
            noise = self.err_obj(fa, fb)
            r = np.maximum(np.abs(fa - fb) - noise, 0.0) / dz[ok][:, None]
            v = float(r.max(initial=0.0))
            if v > self.obj_lip:
                self.obj_lip, self.obj_lip_how = v, how

    def err_obj(self, *fs):
        """Evaluation noise of an objective value: 4·EVAL_ERR × its magnitude × outputs."""
        scale = max(self.mag, max(float(np.abs(f).max(initial=0.0)) for f in fs))
        return 4 * EVAL_ERR * scale * max(1, self.fn.sizes[self.out])

    def add_second(self, v0, vp, vm, z0, zp, zm, how):
        """Second differences f(z+a) + f(z−b) − 2f(z), valid where a == b exactly."""
        a, b = zp - z0, z0 - zm
        ok = np.all(a == b, axis=1)
        den = vector_norm(a, self._z_norm()) ** 2 * (1 + 1e-12)
        ok &= den > 0
        if not ok.any():
            return
        diffs = [self._flat(p_[ok]) + self._flat(m_[ok]) - 2 * self._flat(c_[ok])
                 for c_, p_, m_ in zip(v0, vp, vm)]
        self._ratio_update(diffs, den[ok], 4.0, "smooth", how)
        if self.objective is not None:
            f0, fp, fm = (self._obj_values(v[self.out][ok]) for v in (v0, vp, vm))
            r = np.maximum(np.abs(fp + fm - 2 * f0) - 2 * self.err_obj(f0, fp, fm), 0.0) \
                / den[ok][:, None]
            v = float(r.max(initial=0.0))
            if v > self.obj_smooth:
                self.obj_smooth, self.obj_smooth_how = v, how

    def add_mixed(self, v0, v1, v2, v3, z0, z1, z2, z3, how):
        """f(z+h+u) − f(z+h) − f(z+u) + f(z) ≤ L‖h‖‖u‖, valid where z3 − z1 == z2 − z0."""
        h, u = z1 - z0, z2 - z0
        ok = np.all(z3 - z1 == u, axis=1)
        q = self._z_norm()
        den = vector_norm(h, q) * vector_norm(u, q) * (1 + 1e-12)
        ok &= den > 0
        if not ok.any():
            return
        diffs = [self._flat(d_[ok]) - self._flat(b_[ok]) - self._flat(c_[ok]) + self._flat(a_[ok])
                 for a_, b_, c_, d_ in zip(v0, v1, v2, v3)]
        self._ratio_update(diffs, den[ok], 4.0, "smooth", how)
