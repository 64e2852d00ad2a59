"""The searches of an audit: every phase that measures points of the certified set.

Each phase proposes points z (uniform samples, box corners, pairs and triples at many scales,
gradient ascents on output coordinates and on ‖f‖, Gauss-Newton towards an output bound, a
random-search ascent on ‖J‖ and on ‖J(z+h) − J(z)‖/‖h‖) and measures the function there;
:class:`~boundprop.audit.stats.RunningMaxima` keeps what was seen. Jacobians only choose the
points: every kept value is a function value (or a ratio / difference of them) at a point
checked to lie in the set.
"""

from __future__ import annotations

import math

import numpy as np

from boundprop.audit.function import AuditedFunction, NoJacobian
from boundprop.audit.objective import objective_function
from boundprop.audit.pnorms import operator_norm, operator_norm_direction, vector_norm
from boundprop.audit.regions import BallProductRegion, BoxRegion, input_region
from boundprop.audit.stats import RunningMaxima
from boundprop.errors import BoundpropError
from boundprop.gn.uses import margin_search

MAX_ASCENT_DIRECTIONS = 16
GN_OUTPUT_SEARCHES = 4  # output bounds also searched by Gauss-Newton (the loosest ones)
CHUNK_ENTRIES = 4_000_000  # floats of node values per evaluated chunk


class Auditor:
    """The searches over one certificate ``doc`` of the network ``net`` (the model at
    ``model_path``): ``samples`` random points, ``steps`` iterations per ascent, random
    generator seeded with ``seed`` (the draw order is part of the result); ``bar``: an
    optional tqdm progress bar."""

    def __init__(self, doc, net, model_path, samples, steps, seed, bar):
        self.doc, self.net, self.model_path = doc, net, model_path
        self.samples, self.steps = max(int(samples), 8), max(int(steps), 0)
        self.rng = np.random.default_rng(seed)
        self.bar = bar
        self.p = str(doc.get("norm", "2"))
        if self.p not in ("2", "inf", "1"):
            raise BoundpropError(f"certificate norm '{self.p}' is not 2, inf or 1")
        self.wrt = doc.get("wrt", "input")
        self.notes: list[str] = []
        self.ort_points: list = []
        self.lip_points = None  # (z, ctx, J) of the largest ‖J‖ found by phase_lipschitz
        self._setup()

    def _setup(self):
        """The variable z and its region (input set, or the parameter balls around 0 for
        ``wrt="params"``, with up to 8 inputs of the set as context), the running maxima,
        and the evaluation budget (chunk size, sample and triple counts)."""
        xregion, self.input_set, note = input_region(self.doc, self.net)
        if note:
            self.notes.append(note)
        self.xregion = xregion
        net = self.net
        objective = None
        if self.wrt == "params":
            rho = float(self.doc.get("param_radius") or 0.0)
            pnodes = [k for k, n in enumerate(net.nodes) if n.op.has("parametric")]
            ctx = [xregion.center()]
            if xregion.scale > 0:
                ctx.append(xregion.sample(7, self.rng))
            ctx = np.concatenate(ctx).reshape(-1, *net.input_shape)
            self.fn = AuditedFunction(net, "params", ctx, pnodes)
            self.region = BallProductRegion(np.zeros(self.fn.dim),
                                            [(a, b, rho) for a, b in self.fn.blocks()])
            objective, note = objective_function(self.doc, self.net.output_shape)
            if note:
                self.notes.append(note)
            self.p_z = "2"
        else:
            self.fn = AuditedFunction(net, "input")
            self.region = xregion
            self.p_z = self.p
        k_out = self.fn.sizes[net.output]
        self.row_sel = np.arange(k_out) if k_out <= 64 else np.sort(
            self.rng.choice(k_out, 64, replace=False))
        keep = k_out * self.fn.dim <= 20_000_000
        self.stats = RunningMaxima(self.fn, self.p, keep, objective)
        per_point = sum(self.fn.sizes) * self.fn.n_ctx + self.fn.dim
        self.chunk = int(max(1, min(1024, CHUNK_ENTRIES // max(per_point, 1))))
        if self.wrt == "params":
            self.chunk = min(self.chunk, 64)
        self.n_samples = self.samples if self.wrt == "input" else max(16, self.samples // 4)
        self.n_triples = max(4, self.samples // (4 if self.wrt == "input" else 16))
        if self.bar is not None:
            self.bar.total = (-(-self.n_samples // self.chunk) + -(-3 * self.n_triples
                                                                  // self.chunk)
                              + 4 * self.steps + 1)

    def search(self) -> None:
        """Every phase, in order (the order fixes the random draws)."""
        self.phase_samples()
        self.phase_triples()
        self.phase_output_ascent()
        self.phase_output_gauss_newton()
        self.phase_bound_ascent()
        self.phase_lipschitz()
        self.phase_smoothness()
        self._tick("onnxruntime")

    # ---------------------------------------------------------------- helpers
    def _tick(self, phase=None, n=1):
        if self.bar is not None:
            if phase:
                self.bar.set_description(f"audit: {phase}")
            self.bar.update(n)

    def _eval(self, Z, how):
        vals = self.fn.values(Z)
        self.stats.add_values(vals, Z, how)
        return vals

    def _chunks(self, n):
        done = 0
        while done < n:
            m = min(self.chunk, n - done)
            yield m
            done += m

    # ---------------------------------------------------------------- phases
    def phase_samples(self):
        r = self.region
        corners = r.corners() if self.wrt == "input" else None
        if corners is not None:
            for a in range(0, len(corners), self.chunk):
                self._eval(corners[a:a + self.chunk], "corners")
        self._eval(r.center(), "samples")
        for m in self._chunks(self.n_samples):
            m += m % 2
            Z = r.sample(m, self.rng)
            vals = self._eval(Z, "samples")
            if len(self.ort_points) < 256 and self.wrt == "input":
                self.ort_points.extend(Z[:256 - len(self.ort_points)])
            self.stats.add_pairs([v[0::2] for v in vals], [v[1::2] for v in vals],
                                 Z[0::2], Z[1::2], "random pairs")
            self._tick("samples")

    def phase_triples(self):
        """Base points z and z ± h at scales 5e-4 … 0.5 of the set: near pairs and second
        differences."""
        r = self.region
        if r.scale == 0:
            return
        for m in self._chunks(3 * self.n_triples):
            m = max(1, m // 3)
            Z0 = r.sample(m, self.rng)
            s = 10 ** self.rng.uniform(-3.3, -0.3, m)
            self._triples(Z0, r.directions(m, self.rng) * s[:, None], "near pairs",
                          "second differences")
            self._tick("pairs")

    def _place(self, Z0, offsets):
        """Fit z + o for every offset o into the set, and round z and the offsets to a common
        dyadic grid so that every sum z + Σ o is exact in float64 (second and mixed
        differences need the very same h on both sides)."""
        r = self.region
        Z0, offs = r.fit(Z0, offsets)
        big = float(np.abs(Z0).max(initial=0.0)) + sum(float(np.abs(o).max(initial=0.0))
                                                        for o in offs)
        if not big > 0:
            return Z0, offs
        q = 2.0 ** (math.ceil(math.log2(big)) - 50)
        offs = [np.round(o / q) * q for o in offs]
        free = r.free
        Z0 = np.where(free, np.round(Z0 / q) * q, Z0)
        if isinstance(r, BoxRegion):
            omin = np.minimum(0.0, np.min(offs, axis=0))
            omax = np.maximum(0.0, np.max(offs, axis=0))
            lo_g, hi_g = np.ceil((r.lo - omin) / q) * q, np.floor((r.hi - omax) / q) * q
            Z0 = np.where(free & (lo_g <= hi_g), np.clip(Z0, lo_g, hi_g), Z0)
        return Z0, offs

    def _triples(self, Z0, H, how_pairs, how_second):
        r = self.region
        Z0, (Hp, Hm) = self._place(Z0, [H, -H])
        Zp, Zm = Z0 + Hp, Z0 + Hm
        ok = r.contains(Z0) & r.contains(Zp) & r.contains(Zm)
        if not ok.any():
            return
        Z0, Zp, Zm = Z0[ok], Zp[ok], Zm[ok]
        vals = self._eval(np.concatenate([Z0, Zp, Zm]), how_pairs)
        m = len(Z0)
        v0, vp, vm = ([v[i * m:(i + 1) * m] for v in vals] for i in range(3))
        self.stats.add_pairs(v0, vp, Z0, Zp, how_pairs)
        self.stats.add_pairs(vm, vp, Zm, Zp, how_pairs)
        self.stats.add_second(v0, vp, vm, Z0, Zp, Zm, how_second)

    def _jac(self, Z, js, rows):
        """(n, R, dim) gradients, or None when no Jacobian is available."""
        try:
            J = self.fn.jacobians(Z, js, rows)
        except NoJacobian as e:
            self.fn.has_jac = False
            self.notes.append(f"no reverse rule for op {e} and too many variables for finite "
                              "differences: ascents use random search, no Jacobian-guided pairs")
            return None
        J[:, :, ~self.region.free] = 0.0
        return np.nan_to_num(J)

    def _alphas(self, lo=0.005, hi=0.25):
        k = self.steps
        if k == 0:
            return np.zeros(0)
        return hi * (lo / hi) ** (np.arange(k) / max(k - 1, 1))

    def phase_output_ascent(self):
        ob = self.doc.get("output_bounds")
        if not ob or self.steps == 0 or self.region.scale == 0:
            return
        st = self.stats
        up, lw = np.asarray(ob["upper"], float), np.asarray(ob["lower"], float)
        hi, lo = st.hi[st.out].reshape(-1), st.lo[st.out].reshape(-1)
        width = np.where(up - lw > 0, up - lw, 1.0)
        cand = [(float((hi[i] - lw[i]) / width[i]), i, 1.0) for i in range(len(up))] + \
               [(float((up[i] - lo[i]) / width[i]), i, -1.0) for i in range(len(up))]
        cand = sorted(cand, key=lambda t: -t[0])[:MAX_ASCENT_DIRECTIONS]
        k_out = len(up)
        Z, js = [], []
        for _, i, sgn in cand:
            if st.keep:
                Z.append((st.w_hi if sgn > 0 else st.w_lo)[i].copy())
            else:
                Z.append(self.region.sample(1, self.rng)[0])
            js.append(int((st.j_hi if sgn > 0 else st.j_lo)[i]))
        Z = np.array(Z)
        rows = np.zeros((len(cand), 1, k_out))
        for t, (_, i, sgn) in enumerate(cand):
            rows[t, 0, i] = sgn
        rows = rows.reshape(len(cand), 1, *self.net.output_shape)
        self._ascent(Z, js, lambda Zc, vals: rows, "ascent")

    def phase_output_gauss_newton(self):
        """Gauss-Newton (``boundprop.gn``) pushing each of the worst output bounds' coordinate
        towards its certified value: residual max(0, ±(bound − y_i) + δ) over the box, from the
        best witness so far; the point it ends at is measured like every other."""
        ob = self.doc.get("output_bounds")
        st = self.stats
        if (not ob or self.steps == 0 or self.wrt != "input" or not st.keep
                or not isinstance(self.region, BoxRegion) or self.region.scale == 0):
            return
        up, lw = np.asarray(ob["upper"], float), np.asarray(ob["lower"], float)
        hi, lo = st.hi[st.out].reshape(-1), st.lo[st.out].reshape(-1)
        width = np.where(up - lw > 0, up - lw, 1.0)
        gaps = [(float((up[i] - hi[i]) / width[i]), i, 1.0) for i in range(len(up))] + \
               [(float((lo[i] - lw[i]) / width[i]), i, -1.0) for i in range(len(up))]
        k_out = len(up)
        dim = self.region.dim
        for _, i, sgn in sorted(gaps, key=lambda t: -t[0])[:GN_OUTPUT_SEARCHES]:
            x0 = (st.w_hi if sgn > 0 else st.w_lo)[i]
            a = np.zeros((1, k_out))
            a[0, i] = -sgn  # −y_i ≤ −up  (or y_i ≤ lw): reaching the certified value
            b = np.array([-up[i] if sgn > 0 else lw[i]])
            x, _ = margin_search(self.net, self.region.lo, self.region.hi, a, b, x0,
                                 max_iter=max(2, self.steps // 2),
                                 subspace_dim=None if dim <= 256 else 64)
            self._eval(self.region.project(x)[None], "gauss-newton")

    def _ascent(self, Z, js, rows_fn, how, region=None):
        """Projected (signed / normalised) gradient ascent of the functionals rows_fn gives,
        every iterate measured; random search when no Jacobian is available."""
        region = region or self.region
        vals = None
        for alpha in self._alphas():
            rows = rows_fn(Z, vals)
            G = self._jac(Z, js, rows) if self.fn.has_jac else None
            if G is None:
                cand = region.project(Z + region.directions(len(Z), self.rng)
                                           * alpha)
                vals_c = self._eval(cand, how)
                Z = cand if vals is None else self._keep_better(Z, cand, vals, vals_c, rows, js)
                vals = self.fn.values(Z)
            else:
                g = G[:, 0, :]
                dead = ~np.any(g != 0, axis=1)
                if dead.any():
                    g[dead] = region.directions(int(dead.sum()), self.rng)
                Z = region.step(Z, g, np.full(len(Z), alpha))
                vals = self._eval(Z, how)
            self._tick(how)

    def _keep_better(self, Z, cand, vals, vals_c, rows, js):
        out = self.net.output
        t = np.arange(len(Z))
        a = (vals[out][t, js] * rows[:, 0]).reshape(len(Z), -1).sum(axis=1)
        b = (vals_c[out][t, js] * rows[:, 0]).reshape(len(Z), -1).sum(axis=1)
        return np.where((b > a)[:, None], cand, Z)

    def phase_bound_ascent(self):
        if self.steps == 0 or self.region.scale == 0 or not self.stats.top_bound:
            return
        Z = np.array([t[1] for t in self.stats.top_bound])
        js = [t[2] for t in self.stats.top_bound]
        out, p = self.net.output, self.p
        shape = self.net.output_shape

        def rows_fn(Zc, vals):
            if vals is None:
                vals = self.fn.values(Zc)
            y = vals[out][np.arange(len(Zc)), js].reshape(len(Zc), -1)
            if p == "2":
                w = y / np.maximum(np.sqrt((y * y).sum(axis=1, keepdims=True)), 1e-300)
            elif p == "1":
                w = np.sign(y)
            else:
                w = np.zeros_like(y)
                i = np.abs(y).argmax(axis=1)
                w[np.arange(len(y)), i] = np.sign(y[np.arange(len(y)), i])
            return w.reshape(len(Zc), 1, *shape)
        region = self.region
        if self.doc.get("input_set") is None and isinstance(region, BoxRegion):
            # global B: sup over all inputs; climb in a box 16x wider still
            c, w = 0.5 * (region.lo + region.hi), 0.5 * (region.hi - region.lo)
            region = BoxRegion(c - 16 * w, c + 16 * w)
        self._ascent(Z, js, rows_fn, "ascent", region)

    def _full_jac(self, Z, js):
        """Jacobians (n, K, dim) of the whole output (a random subset of 64 rows if larger)."""
        k = self.fn.sizes[self.net.output]
        sel = self.row_sel
        rows = np.zeros((len(sel), k))
        rows[np.arange(len(sel)), sel] = 1.0
        rows = np.repeat(rows.reshape(1, len(sel), *self.net.output_shape), len(Z), axis=0)
        out = []
        for a in range(0, len(Z), 8):
            J = self._jac(Z[a:a + 8], js[a:a + 8], rows[a:a + 8])
            if J is None:
                return None
            out.append(J)
        return np.concatenate(out)

    def phase_lipschitz(self):
        """Random-search ascent on ‖J‖, then honest pairs along the maximising directions."""
        if self.region.scale == 0 or not self.fn.has_jac:
            return
        st = self.stats
        pts = [(z, j) for _, z, j in st.top_pairs] + [(z, j) for _, z, j in st.top_bound]
        extra = self.region.sample(4, self.rng)
        pts += [(z, int(self.rng.integers(self.fn.n_ctx))) for z in extra]
        Z = np.array([z for z, _ in pts])
        js = [j for _, j in pts]
        J = self._full_jac(Z, js)
        if J is None:
            return
        norms = np.array([operator_norm(Ji, self.p) for Ji in J])
        order = np.argsort(-norms)[:4]
        Zb, jb, Jb, nb = Z[order], [js[i] for i in order], J[order], norms[order]
        smooth = self._smooth_finite()
        eps = 1e-4 * self.region.scale
        for sigma in self._alphas(0.001, 0.1):
            cands = [self.region.project(Zb + self.region.directions(len(Zb), self.rng)
                                         * sigma)]
            if smooth:
                # ∇_z uᵀJ(z)v for the maximising (u, v): a finite difference of two reverse
                # passes, (Jᵀu)(z + εv) − (Jᵀu)(z − εv) over 2ε
                uv = [operator_norm_direction(Ji, self.p, True) for Ji in Jb]
                V = np.array([t[1] for t in uv])
                rows = np.zeros((len(Zb), 1, self.fn.sizes[self.net.output]))
                rows[:, 0, self.row_sel] = np.array([t[2] for t in uv])
                rows = rows.reshape(len(Zb), 1, *self.net.output_shape)
                gp = self._jac(self.region.project(Zb + eps * V), jb, rows)
                gm = self._jac(self.region.project(Zb - eps * V), jb, rows)
                if gp is not None and gm is not None:
                    cands.append(self.region.step(Zb, (gp - gm)[:, 0], np.full(len(Zb), sigma)))
            for cand in cands:
                Jc = self._full_jac(cand, jb)
                nc = np.array([operator_norm(Ji, self.p) for Ji in Jc])
                better = nc > nb
                Zb[better], Jb[better], nb[better] = cand[better], Jc[better], nc[better]
            self._tick("lipschitz")
        self.lip_points = (np.concatenate([Zb, Z]), jb + js, np.concatenate([Jb, J]))
        # honest pairs z ∓ t·v
        Zs, Js = self.lip_points[0], self.lip_points[2]
        V = np.array([operator_norm_direction(Ji, self.p)[1] for Ji in Js])
        for t in (1e-4, 1e-3, 1e-2):
            off = V * (t * self.region.scale)
            Z0, (a, b) = self.region.fit(Zs, [-off, off])
            A, B = Z0 + a, Z0 + b
            ok = self.region.contains(A) & self.region.contains(B)
            if not ok.any():
                continue
            vals = self._eval(np.concatenate([A[ok], B[ok]]), "jacobian pairs")
            m = int(ok.sum())
            self.stats.add_pairs([v[:m] for v in vals], [v[m:] for v in vals], A[ok], B[ok],
                                 "jacobian pairs")
        # second differences along the same directions (cheap; valid for L)
        if self._smooth_finite():
            for t in (1e-3, 1e-2, 1e-1):
                self._triples(Zs, V * (t * self.region.scale), "jacobian pairs",
                              "second differences")

    def _smooth_finite(self):
        s = self.doc.get("smoothness")
        return isinstance(s, (int, float)) and math.isfinite(s)

    def phase_smoothness(self):
        """Random search for large ‖J(z+h) − J(z)‖/‖h‖; then mixed differences along the
        maximising direction u (honest lower bounds of L)."""
        if not self._smooth_finite() or self.region.scale == 0 or not self.fn.has_jac:
            return
        if self.lip_points is None:
            return
        Zs, js = self.lip_points[0][:4], self.lip_points[1][:4]
        Zr = self.region.sample(4, self.rng)
        Z = np.concatenate([Zs, Zr])
        js = list(js) + [int(self.rng.integers(self.fn.n_ctx)) for _ in range(4)]
        size = 1e-2 * self.region.scale

        def score(Zc, Hc):
            J0, J1 = self._full_jac(Zc, js), self._full_jac(Zc + Hc, js)
            D = J1 - J0
            hn = vector_norm(Hc, self.p_z)
            sc = np.array([operator_norm(Di, self.p) for Di in D]) / np.maximum(hn, 1e-300)
            return sc, D

        H = self.region.directions(len(Z), self.rng) * 1e-2
        Z, (H,) = self.region.fit(Z, [H])
        best, D = score(Z, H)
        for sigma in self._alphas(0.001, 0.1):
            Zc = self.region.project(Z + self.region.directions(len(Z), self.rng) * sigma)
            Hc = H + self.region.directions(len(Z), self.rng) * (1e-2 * sigma)
            Zc, (Hc,) = self.region.fit(Zc, [Hc])
            sc, Dc = score(Zc, Hc)
            better = sc > best
            Z[better], H[better], best[better], D[better] = Zc[better], Hc[better], sc[better], \
                Dc[better]
            self._tick("smoothness")
        U = np.array([operator_norm_direction(Di, self.p)[1] for Di in D]) * size
        for scale in (1.0, 0.1):
            Z0, (h, u, hu) = self._place(Z, [H * scale, U * scale, (H + U) * scale])
            P1, P2, P3 = Z0 + h, Z0 + u, Z0 + (h + u)
            r = self.region
            ok = r.contains(Z0) & r.contains(P1) & r.contains(P2) & r.contains(P3)
            if not ok.any():
                continue
            m = int(ok.sum())
            vals = self._eval(np.concatenate([Z0[ok], P1[ok], P2[ok], P3[ok]]),
                              "mixed differences")
            v = [[x[i * m:(i + 1) * m] for x in vals] for i in range(4)]
            self.stats.add_mixed(*v, Z0[ok], P1[ok], P2[ok], P3[ok], "mixed differences")
