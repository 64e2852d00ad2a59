"""``boundprop audit CERT.json MODEL``: empirical lower bounds for every certified quantity.

A certificate states upper bounds: output bounds, ℓ, L, B (and per IR node). The audit searches
for inputs (or, for ``wrt="params"`` certificates, parameter perturbations) that come close to
them, and reports ``certified / empirical`` (the tightness ratio, ≥ 1 unless violated). A
violation (exit status 1) is an empirical value beyond a certified one.

What is measured, and why each empirical value is an honest lower bound
----------------------------------------------------------------------
Every empirical value is computed from *function values* of boundprop's float64 evaluator of
the IR (``net(x)``, ``net.evaluate_all(x)``, itself tested against onnxruntime), at points that
are checked to lie in the certified set (for ℓ∞ balls an inner box rounded inward, for ℓ2 balls
radius × (1 − 1e-10)). Jacobians (an IR backward pass, or finite differences) only *guide* the
searches; they never enter a reported value:

* output bounds: the min/max of each output over uniform samples, every box corner when at most
  12 coordinates are free, and a projected gradient ascent/descent (signed steps for boxes,
  normalised steps for balls) on the output coordinates whose empirical extremes are closest to
  their certified bounds (up to 16 coordinate/direction pairs).
* ℓ: pair ratios ‖f(x) − f(y)‖_p / ‖x − y‖_p over random pairs, near pairs at many scales, and
  "Jacobian pairs" x ∓ t·v where v is the maximising direction of ‖J(x)‖_p at points found by a
  random-search ascent on ‖J‖. A pair ratio is a lower bound of any Lipschitz constant.
* L: second differences ‖f(x+h) + f(x−h) − 2f(x)‖ / ‖h‖² and mixed differences
  ‖f(x+h+u) − f(x+h) − f(x+u) + f(x)‖ / (‖h‖‖u‖); both are ≤ L when J is L-Lipschitz (Taylor
  with integral remainder), for any h, u, so they are lower bounds of L. u is the maximising
  direction of J(x+h) − J(x) found by a random search. Skipped when L is certified ``inf``.
* B: the max of ‖f(x)‖_p over the samples and an ascent on ‖f‖_p.
* per IR node k: ``layer[k].bound`` (max ‖node‖), ``layer[k].lipschitz`` and
  ``layer[k].smoothness`` (the same pairs and differences, on the node's value), and
  ``layer[k].width`` (the largest observed range of one entry, against the certified largest
  interval width).
* global certificates (no input set): the samples come half from the model's declared input set
  (``[-1, 1]`` if none) and half from that box widened 4× about its centre; pairs and
  differences anywhere are valid for global constants.
* ``wrt="params"``: the variable is the vector of every dense/conv layer's (ΔW, Δb), each layer
  in its Frobenius ball of radius ``param_radius`` (the IR ops are copied with perturbed
  weights), for inputs in the certificate's set (up to 8 of them: the set's centre and random
  points; a data batch is one point). Output bounds, ℓ, L, B, the per-node rows and, when the
  certificate holds a loss with its targets, ``objective.lipschitz``/``objective.smoothness``
  (ratios and differences of the loss) are audited; x is not optimised jointly with θ.

Float tolerance. The IR evaluation is float64; its rounding error per entry is taken as
``EVAL_ERR`` (1e-10) × the largest magnitude M of any node value seen (float64 evaluation errors
are ~ fan-in × 1e-16 × the magnitudes involved, orders of magnitude below). That noise is
subtracted from the numerator of every ratio/difference before dividing (so L = 0 on an affine
piece stays 0), and an output bound is violated only when the observed value passes it by more
than ``EVAL_ERR`` × (M + |bound|). A constant is violated when its (noise-reduced) empirical
value exceeds the certified one by a relative 1e-9 (the rounding of the norms/denominators).

onnxruntime cross-check. The real model is run in float32 by onnxruntime on up to 256 sampled
points and every output witness (inputs rounded to float32, the IR evaluated at the same
rounded points); the row ``onnxruntime`` reports the largest deviation against the tolerance
1e-3 × (max|output| + 0.01·M), a violation if exceeded (the IR would not be the model). Output
rows also show ``ort``: onnxruntime's value at the IR's witness point (not used for the verdict:
a certificate of the real-arithmetic function may be passed by float32 rounding at a tight
bound; ``certify --execution float32`` bounds cover that).

Ratios: ``certified / empirical`` for constants and widths (``inf`` when the empirical value is
0, 1 when both are 0); for output bounds the distances from the midpoint m of the observed
range, ``(upper − m) / (max − m)`` and ``(m − lower) / (m − min)``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_SAMPLES = 2000
DEFAULT_STEPS = 20
EVAL_ERR = 1e-10  # per-entry float64 evaluation error, relative to the largest node magnitude
CONST_RTOL = 1e-9  # relative slack on constants (rounding of norms and denominators)
ORT_RTOL = 1e-3  # onnxruntime (float32) vs IR (float64) agreement
MAX_ASCENT_DIRECTIONS = 16
GN_OUTPUT_SEARCHES = 4  # output bounds also searched by Gauss-Newton (the loosest ones)
CORNER_DIMS = 12
CHUNK_ENTRIES = 4_000_000  # floats of node values per evaluated chunk
FD_MAX_DIM = 512  # finite-difference Jacobians (when an op has no reverse rule) up to this

EPILOG = """examples:
  boundprop certify models/mlp_relu.onnx -o cert.json
  boundprop audit cert.json models/mlp_relu.onnx
  boundprop audit cert.json model.onnx --samples 10000 --steps 50 --seed 1
  boundprop audit cert.json model.onnx --json > audit.json
  boundprop audit cert.json model.onnx --quiet && echo "no violation"

exit status: 0 no violation, 1 a certified value is beaten by an empirical one, 2 bad input
(unreadable certificate, missing model, certificate issued for another model).
"""


# ------------------------------------------------------------------------------------------
# Results
@dataclass
class AuditRow:
    """One audited quantity: its certified value, the best empirical lower bound found, and how.

    ``certified``/``empirical``: floats (``inf`` allowed for certified), or None when the
    certificate does not state it / it was not audited. ``kind``: "constant", "upper",
    "lower", "width" or "crosscheck" (how the ratio is read)."""

    quantity: str
    certified: float | None
    empirical: float | None
    how: str
    kind: str = "constant"
    violated: bool = False
    node: str | None = None
    ort: float | None = None  # onnxruntime's value at the witness (output rows)
    reference: float | None = None  # midpoint of the observed range (output rows)

    @property
    def ratio(self) -> float | None:
        c, e = self.certified, self.empirical
        if c is None or e is None or not math.isfinite(c):
            return None
        if self.kind in ("upper", "lower"):
            m = self.reference if self.reference is not None else 0.0
            num, den = (c - m, e - m) if self.kind == "upper" else (m - c, m - e)
        else:
            num, den = c, e
        if den <= 0:
            return 1.0 if num == den else (math.inf if num > 0 else None)
        return num / den

    def to_json(self) -> dict[str, Any]:
        return {"quantity": self.quantity, "node": self.node, "certified": _num(self.certified),
                "empirical": _num(self.empirical), "ratio": _num(self.ratio),
                "violated": self.violated, "how": self.how, "kind": self.kind,
                "ort": _num(self.ort)}


@dataclass
class AuditResult:
    """Every audited row of one certificate (``rows``), the violated ones (``violations``)."""

    rows: list[AuditRow]
    model: str
    certificate: str | None
    norm: str
    wrt: str
    local: bool
    samples: int
    steps: int
    seed: int
    elapsed_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[AuditRow]:
        return [r for r in self.rows if r.violated]

    @property
    def ok(self) -> bool:
        return not self.violations

    def row(self, quantity: str) -> AuditRow:
        for r in self.rows:
            if r.quantity == quantity:
                return r
        raise KeyError(quantity)

    def to_json(self) -> dict[str, Any]:
        return {"schema": "boundprop.audit/1", "model": self.model,
                "certificate": self.certificate, "norm": self.norm, "wrt": self.wrt,
                "local": self.local, "samples": self.samples, "steps": self.steps,
                "seed": self.seed, "elapsed_s": self.elapsed_s, "ok": self.ok,
                "violations": [r.quantity for r in self.violations], "notes": self.notes,
                "rows": [r.to_json() for r in self.rows]}

    def format(self) -> str:
        where = "global" if not self.local else "on the certificate's set"
        head = (f"{self.model}: audit of {self.certificate or 'certificate'} ({where}, norm "
                f"{self.norm}, w.r.t. the {'input' if self.wrt == 'input' else 'parameters'}; "
                f"{self.samples} samples, {self.steps} ascent steps, seed {self.seed}, "
                f"{self.elapsed_s:.2f} s)")
        qw = max([len(r.quantity) for r in self.rows] + [8])
        nw = min(max([len(r.node or "") for r in self.rows] + [4]), 20)
        lines = [head, f"{'quantity':<{qw}} {'node':<{nw}} {'certified':>12} {'empirical':>12} "
                       f"{'ratio':>9}  {'':<8} how"]
        for r in self.rows:
            status = "VIOLATED" if r.violated else ("" if r.empirical is not None else "-")
            how = r.how + (f"; onnxruntime {r.ort:.6g}" if r.ort is not None else "")
            lines.append(f"{r.quantity:<{qw}} {(r.node or '')[:nw]:<{nw}} {_fmt(r.certified):>12} "
                         f"{_fmt(r.empirical):>12} {_fmt_ratio(r.ratio):>9}  {status:<8} {how}")
        lines.extend(f"note: {n}" for n in self.notes)
        v = self.violations
        lines.append(f"{len(v)} violation{'s' if len(v) != 1 else ''}: "
                     + ", ".join(r.quantity for r in v) if v else
                     "no violation: every certified value is at least its empirical lower bound")
        return "\n".join(lines)


def _num(x: float | None) -> Any:
    if x is None:
        return None
    return x if math.isfinite(x) else ("inf" if x > 0 else "-inf")


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.6g}"


def _fmt_ratio(x: float | None) -> str:
    return "-" if x is None else ("inf" if x == math.inf else f"{x:.3g}")


# ------------------------------------------------------------------------------------------
# Geometry of the searched set (flattened variables)
class _BoxRegion:
    """{lo ≤ z ≤ hi}; ``inner`` (optional): a sub-box half the samples are drawn from."""

    def __init__(self, lo, hi, inner=None):
        import numpy as np

        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        self.free = self.hi > self.lo
        self.dim = self.lo.size
        self.inner = inner
        w = self.hi - self.lo
        self.scale = float(w.max()) if w.size and w.max() > 0 else 0.0

    def sample(self, n, rng):
        if self.inner is not None:
            k = n // 2
            return rng.permutation(np_concat([self.inner.sample(k, rng),
                                              self._uniform(n - k, rng)]))
        return self._uniform(n, rng)

    def _uniform(self, n, rng):
        return self.lo + (self.hi - self.lo) * rng.random((n, self.dim))

    def center(self):
        return (0.5 * (self.lo + self.hi))[None]

    def corners(self):
        import numpy as np

        idx = np.flatnonzero(self.free)
        if not 0 < idx.size <= CORNER_DIMS:
            return None
        bits = (np.arange(2**idx.size)[:, None] >> np.arange(idx.size)[None]) & 1
        z = np.repeat(self.lo[None], len(bits), axis=0)
        z[:, idx] = np.where(bits == 1, self.hi[idx], self.lo[idx])
        return z

    def project(self, z):
        import numpy as np

        return np.clip(z, self.lo, self.hi)

    def step(self, z, g, alpha):
        import numpy as np

        return self.project(z + alpha[:, None] * (self.hi - self.lo) * np.sign(g))

    def directions(self, n, rng):
        return (self.hi - self.lo) * rng.uniform(-1.0, 1.0, (n, self.dim))

    def fit(self, z, offsets):
        """Move the base points z (and shrink the offsets if needed) so that every z + o is in
        the box; returns (z, offsets)."""
        import numpy as np

        omin = np.minimum(0.0, np.min(offsets, axis=0))
        omax = np.maximum(0.0, np.max(offsets, axis=0))
        span, width = omax - omin, self.hi - self.lo
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.where(span > 0, width / np.where(span > 0, span, 1.0), np.inf).min(axis=1)
        f = np.minimum(1.0, f * (1 - 1e-9))[:, None]
        offsets = [o * f for o in offsets]
        omin, omax = omin * f, omax * f
        return np.clip(z, self.lo - omin, self.hi - omax), offsets

    def contains(self, z):
        import numpy as np

        return np.all((z >= self.lo) & (z <= self.hi), axis=1)


class _BallsRegion:
    """Product of ℓ2 balls: block b = z[start:end] within ``radius`` of center[start:end]
    (an ℓ2 input ball is one block; parameter balls one block per layer)."""

    SHRINK = 1 - 1e-10

    def __init__(self, center, blocks):
        import numpy as np

        self.c = np.asarray(center, float)
        self.blocks = [(a, b, float(r)) for a, b, r in blocks]
        self.dim = self.c.size
        self.free = np.zeros(self.dim, bool)
        for a, b, r in self.blocks:
            self.free[a:b] = r > 0
        self.scale = max((r for _, _, r in self.blocks), default=0.0)
        self.inner = None

    def _bnorm(self, d, a, b):
        import numpy as np

        return np.sqrt((d[:, a:b] ** 2).sum(axis=1))

    def sample(self, n, rng):
        import numpy as np

        z = np.repeat(self.c[None], n, axis=0)
        for a, b, r in self.blocks:
            g = rng.standard_normal((n, b - a))
            g /= np.maximum(np.sqrt((g**2).sum(axis=1, keepdims=True)), 1e-300)
            # half on the sphere (extremes live there), half uniform in the ball
            rad = np.where(rng.random(n) < 0.5, 1.0, rng.random(n) ** (1.0 / (b - a)))
            z[:, a:b] += g * (r * self.SHRINK * rad)[:, None]
        return z

    def center(self):
        return self.c[None].copy()

    def corners(self):
        return None

    def project(self, z):
        import numpy as np

        z = z.copy()
        for a, b, r in self.blocks:
            d = z[:, a:b] - self.c[a:b]
            nrm = np.sqrt((d**2).sum(axis=1))
            f = np.where(nrm > r * self.SHRINK, r * self.SHRINK / np.maximum(nrm, 1e-300), 1.0)
            z[:, a:b] = self.c[a:b] + d * f[:, None]
        return z

    def step(self, z, g, alpha):
        import numpy as np

        z = z.copy()
        for a, b, r in self.blocks:
            gb = g[:, a:b]
            nrm = np.sqrt((gb**2).sum(axis=1, keepdims=True))
            z[:, a:b] += alpha[:, None] * r * gb / np.maximum(nrm, 1e-300)
        return self.project(z)

    def directions(self, n, rng):
        import numpy as np

        d = np.zeros((n, self.dim))
        for a, b, r in self.blocks:
            g = rng.standard_normal((n, b - a))
            d[:, a:b] = r * g / np.maximum(np.sqrt((g**2).sum(axis=1, keepdims=True)), 1e-300)
        return d

    def fit(self, z, offsets):
        import numpy as np

        offsets = [o.copy() for o in offsets]
        f = np.ones(len(z))
        for a, b, r in self.blocks:
            m = np.max([self._bnorm(o, a, b) for o in offsets], axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.minimum(f, np.where(m > 0.5 * r * self.SHRINK,
                                           0.5 * r * self.SHRINK / np.where(m > 0, m, 1), 1.0))
        offsets = [o * f[:, None] for o in offsets]
        z = z.copy()
        for a, b, r in self.blocks:
            m = np.max([self._bnorm(o, a, b) for o in offsets], axis=0)
            allow = np.maximum(r * self.SHRINK - m, 0.0) * (1 - 1e-9)
            d = z[:, a:b] - self.c[a:b]
            nrm = np.sqrt((d**2).sum(axis=1))
            s = np.where(nrm > allow, allow / np.maximum(nrm, 1e-300), 1.0)
            z[:, a:b] = self.c[a:b] + d * s[:, None]
        return z, offsets

    def contains(self, z):
        import numpy as np

        ok = np.ones(len(z), bool)
        for a, b, r in self.blocks:
            ok &= self._bnorm(z - self.c, a, b) <= r * (1 - 1e-11)
        return ok


def np_concat(arrays):
    import numpy as np

    return np.concatenate(arrays, axis=0)


# ------------------------------------------------------------------------------------------
# Norms
def _vnorm(a, p: str):
    """p-norm over the last axis."""
    import numpy as np

    if p == "inf":
        return np.abs(a).max(axis=-1, initial=0.0)
    if p == "1":
        return np.abs(a).sum(axis=-1)
    return np.sqrt((a * a).sum(axis=-1))


def _entries_factor(n: int, p: str) -> float:
    """‖e‖_p for a vector of n entries each at most 1 in absolute value."""
    return 1.0 if p == "inf" else (float(n) if p == "1" else math.sqrt(n))


def _opnorm_dir(J, p: str, with_u: bool = False):
    """(‖J‖_{p→p}, a unit input direction v nearly attaining it[, the output functional u with
    uᵀJv = ‖J‖]) of a (K, d) matrix."""
    import numpy as np

    K, d = J.shape
    if J.size == 0:
        s, v, u = 0.0, np.zeros(d), np.zeros(K)
    elif p == "inf":
        sums = np.abs(J).sum(axis=1)
        i = int(np.argmax(sums))
        s, v, u = float(sums[i]), np.sign(J[i]), np.zeros(K)
        u[i] = 1.0
    elif p == "1":
        sums = np.abs(J).sum(axis=0)
        j = int(np.argmax(sums))
        v = np.zeros(d)
        v[j] = 1.0
        s, u = float(sums[j]), np.sign(J[:, j])
    else:
        if K <= d:
            w, uu = np.linalg.eigh(J @ J.T)
            v = J.T @ uu[:, -1]
        else:
            w, vv = np.linalg.eigh(J.T @ J)
            v = vv[:, -1]
        s = float(np.sqrt(max(w[-1], 0.0)))
        n = np.linalg.norm(v)
        v = v / n if n > 0 else v
        u = J @ v
        n = np.linalg.norm(u)
        u = u / n if n > 0 else u
    return (s, v, u) if with_u else (s, v)


def _opnorm(J, p: str) -> float:
    return _opnorm_dir(J, p)[0]


# ------------------------------------------------------------------------------------------
# The audited function: z (input, or parameter perturbation) ↦ every node's value
class _NoJacobian(Exception):
    pass


class _Function:
    def __init__(self, net, wrt: str, ctx=None, param_nodes=()):
        import numpy as np

        self.net, self.wrt = net, wrt
        self.ctx = ctx  # params: (n_ctx, *input_shape) inputs; input: None
        self.n_ctx = 1 if ctx is None else len(ctx)
        self.layers = []  # params: (node index, start, W0 shape, bias length)
        start = 0
        for k in param_nodes:
            op = net.nodes[k].op
            w = op.matrix if hasattr(op, "matrix") else op.weight
            nb = 0
            if _bias_of(op) is not None:
                nb = w.shape[0]
            self.layers.append((k, start, w.shape, nb))
            start += w.size + nb
        self.dim = int(np.prod(net.input_shape)) if wrt == "input" else start
        self.shapes = [n.shape for n in net.nodes]
        self.sizes = [int(np.prod(s)) for s in self.shapes]
        self.has_jac = True
        self.use_fd = False
        self.fd_reason = ""

    # -- parameter perturbation
    def blocks(self):
        out = []
        for _, a, wshape, nb in self.layers:
            size = int(math.prod(wshape)) + nb
            out.append((a, a + size))
        return out

    def patched(self, z):
        """The network with every parameter layer's (W, b) moved by z's blocks."""
        import copy
        import dataclasses

        import numpy as np

        nodes = list(self.net.nodes)
        for k, a, wshape, nb in self.layers:
            node = nodes[k]
            op = copy.copy(node.op)
            nw = int(np.prod(wshape))
            dw = z[a:a + nw].reshape(wshape)
            db = z[a + nw:a + nw + nb]
            op.__dict__.pop("abs_weight", None)
            if hasattr(op, "matrix"):
                op.matrix = node.op.matrix + dw
                if nb:
                    op.offset = node.op.offset + (db if op.axis == -1 else db[:, None])
            else:
                op.weight = node.op.weight + dw
                if nb:
                    op.bias = node.op.bias + db
                    op.offset = op.bias.reshape(1, 1, -1, *([1] * (len(op.out_shape) - 2)))
            nodes[k] = dataclasses.replace(node, op=op)
        return dataclasses.replace(self.net, nodes=nodes)

    # -- evaluation
    def values(self, Z):
        """Every node's value at each z: arrays (n, n_ctx, *shape)."""
        import numpy as np

        if self.wrt == "input":
            xs = Z.reshape(len(Z), *self.net.input_shape)
            return [v[:, None] for v in self.net.evaluate_all(xs)]
        per = [self.patched(z).evaluate_all(self.ctx) for z in Z]
        return [np.stack([p[k] for p in per]) for k in range(len(self.net.nodes))]

    # -- Jacobians (guides only)
    def jacobians(self, Z, js, rows):
        """Gradients of the output functionals ``rows[t]`` (R_t... here (R, *out_shape), the
        same R for every point) at each point (z_t, ctx j_t): array (n, R, dim)."""
        if not self.has_jac:
            raise _NoJacobian
        if self.use_fd:
            return self._fd_jacobians(Z, js, rows)
        try:
            return self._ir_jacobians(Z, js, rows)
        except _NoJacobian as e:
            if self.dim * max(self.n_ctx, 1) > FD_MAX_DIM:
                raise
            self.use_fd = True
            self.fd_reason = str(e)
            return self._fd_jacobians(Z, js, rows)

    def _fd_jacobians(self, Z, js, rows):
        """Central differences (step 1e-6 of each coordinate's magnitude, at least 1e-6)."""
        import numpy as np

        n, R, d = len(Z), rows.shape[1], self.dim
        out = np.zeros((n, R, d))
        eye = np.eye(d)
        for t in range(n):
            h = 1e-6 * np.maximum(1.0, np.abs(Z[t]))
            P = np.concatenate([Z[t] + eye * h, Z[t] - eye * h])
            y = self.values_out(P)[:, js[t]].reshape(2 * d, -1)
            J = ((y[:d] - y[d:]) / (2 * h[:, None])).T  # (K, d)
            out[t] = rows[t].reshape(R, -1) @ J
        return out

    def values_out(self, Z):
        """The output node's value at each z: (n, n_ctx, *out_shape)."""
        import numpy as np

        if self.wrt == "input":
            return self.net(Z.reshape(len(Z), *self.net.input_shape))[:, None]
        return np.stack([self.patched(z)(self.ctx) for z in Z])

    def _ir_jacobians(self, Z, js, rows):
        import numpy as np

        n, R = len(Z), rows.shape[1]
        if self.wrt == "input":
            xs = Z.reshape(n, *self.net.input_shape)
            vals = self.net.evaluate_all(xs)
            g0, _ = _backward(self.net, vals, rows.reshape(n * R, *rows.shape[2:]), n, ())
            if g0 is None:
                return np.zeros((n, R, self.dim))
            return g0.reshape(n, R, self.dim)
        out = np.zeros((n, R, self.dim))
        want = {k for k, *_ in self.layers}
        for t in range(n):
            net = self.patched(Z[t])
            j = js[t]
            vals = net.evaluate_all(self.ctx[j:j + 1])
            _, got = _backward(net, vals, rows[t], 1, want)
            for k, a, wshape, nb in self.layers:
                c = got.get(k)
                if c is None:
                    continue
                u = vals[net.nodes[k].inputs[0]]
                gw, gb = _param_grad(net.nodes[k].op, c, u, R)
                nw = int(np.prod(wshape))
                if gw is not None:
                    out[t, :, a:a + nw] = gw.reshape(R, nw)
                if nb and gb is not None:
                    out[t, :, a + nw:a + nw + nb] = gb.reshape(R, nb)
        return out


def _bias_of(op):
    if hasattr(op, "matrix"):
        return op.offset
    return getattr(op, "bias", None)


def _backward(net, vals, rows, S: int, want):
    """Reverse pass of the output functionals ``rows`` ((S·R, *out_shape), R rows per point)
    through the IR at the S points whose node values are ``vals`` (lead axis S). Returns
    (rows w.r.t. the input (S·R, *in), {node in want: rows w.r.t. that node's output})."""
    import numpy as np

    R = rows.shape[0] // S
    acc = {net.output: rows}
    got = {}
    for i in range(len(net.nodes) - 1, 0, -1):
        c = acc.pop(i, None)
        if c is None:
            continue
        if i in want:
            got[i] = c
        node = net.nodes[i]
        op = node.op
        parts = None
        if op.family == "affine" and len(node.inputs) == 1:
            try:
                parts = [op.adjoint(c)]
            except NotImplementedError:
                parts = None
        elif op.family == "activation" and len(node.inputs) == 1:
            try:
                d = op.derivative(vals[node.inputs[0]])
                parts = [c * np.repeat(d, R, axis=0)]
            except NotImplementedError:
                parts = None
        if parts is None:
            per = []
            for s in range(S):
                cs = c[s * R:(s + 1) * R]
                boxes = [(vals[j][s:s + 1], vals[j][s:s + 1]) for j in node.inputs]
                with np.errstate(all="ignore"):
                    pp = op.jacobian_backward(cs, np.zeros_like(cs), boxes)
                if pp is None:
                    raise _NoJacobian(op.kind)
                per.append([p[0] for p in pp])
            parts = [np.concatenate([pp[k] for pp in per]) for k in range(len(node.inputs))]
        for j, cj in zip(node.inputs, parts):
            cj = np.nan_to_num(np.asarray(cj, float))
            acc[j] = acc[j] + cj if j in acc else cj
    return acc.get(0), got


def _param_grad(op, c, u, R: int):
    """Gradients of R functionals (rows c w.r.t. the layer output, (R, *out)) w.r.t. the
    layer's W and per-feature bias, at input u ((1, *in)). None where not derivable here."""
    import numpy as np

    if hasattr(op, "matrix"):
        m, n = op.matrix.shape
        if op.axis == -1:
            if c.shape[1:-1] != u.shape[1:-1]:
                return None, c.reshape(R, -1, m).sum(axis=1)
            cr, ur = c.reshape(R, -1, m), u.reshape(-1, n)
            return np.einsum("rpm,pn->rmn", cr, ur), cr.sum(axis=1)
        k = op.out_shape[-1]
        if c.shape[1:-2] != u.shape[1:-2] or u.shape[-1] != k:
            return None, c.reshape(R, -1, m, k).sum(axis=(1, 3))
        cr, ur = c.reshape(R, -1, m, k), u.reshape(-1, n, k)
        return np.einsum("rpmk,pnk->rmn", cr, ur), cr.sum(axis=(1, 3))
    # convolution
    w = op.weight
    mo, cg, *kernel = w.shape
    g = op.group
    n_b, cin, *sp = op.in_shapes[0]
    out_sp = op.out_shape[2:]
    gb = c.reshape(R, n_b, mo, -1).sum(axis=(1, 3))
    pads = [(0, 0), (0, 0)] + list(zip(op.pads_begin, op.pads_end))
    up = np.pad(u[0], pads)  # (N, C, *padded)
    gw = np.zeros((R, mo, cg, *kernel))
    cr = c.reshape(R, n_b, g, mo // g, -1)
    for kidx in np.ndindex(*kernel):
        sl = tuple(slice(ki * d, ki * d + s * (o - 1) + 1, s) for ki, d, s, o in
                   zip(kidx, op.dilations, op.strides, out_sp))
        us = up[(slice(None), slice(None), *sl)].reshape(n_b, g, cg, -1)
        part = np.einsum("rngmp,ngcp->rgmc", cr, us)
        gw[(slice(None), slice(None), slice(None), *kidx)] = part.reshape(R, mo, cg)
    return gw, gb


# ------------------------------------------------------------------------------------------
# Running maxima of every measured quantity
class _Stats:
    def __init__(self, fn: _Function, p: str, keep_witness: bool, objective=None):
        import numpy as np

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
        return EVAL_ERR * self.mag

    def _flat(self, v):
        return v.reshape(v.shape[0], v.shape[1], -1)

    def add_values(self, vals, Z, how):
        import numpy as np

        for k, v in enumerate(vals):
            f = self._flat(v)
            if f.size:
                self.mag = max(self.mag, float(np.abs(f).max()))
            nrm = _vnorm(f, self.p)
            b = float(nrm.max(initial=0.0))
            if b > self.bound[k]:
                self.bound[k], self.bound_how[k] = b, how
            vmin, vmax = v.min(axis=(0, 1)), v.max(axis=(0, 1))
            if k == self.out:
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
            np.minimum(self.lo[k], vmin, out=self.lo[k])
            np.maximum(self.hi[k], vmax, out=self.hi[k])

    def _ratio_update(self, num_vals, den, coef_sum, which, how, Zmid=None):
        """num_vals: per node arrays (n, n_ctx, entries) of combinations; den: (n,) > 0."""
        import numpy as np

        best = self.lip if which == "lip" else self.smooth
        hows = self.lip_how if which == "lip" else self.smooth_how
        for k, d in enumerate(num_vals):
            num = _vnorm(d, self.p)
            noise = self.err * coef_sum * _entries_factor(d.shape[-1], self.p)
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

    def add_pairs(self, va, vb, za, zb, how):
        import numpy as np

        dz = _vnorm(za - zb, self.p if self.fn.wrt == "input" else "2") * (1 + 1e-12)
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
        import numpy as np

        scale = max(self.mag, max(float(np.abs(f).max(initial=0.0)) for f in fs))
        return 4 * EVAL_ERR * scale * max(1, self.fn.sizes[self.out])

    def add_second(self, v0, vp, vm, z0, zp, zm, how):
        """Second differences f(z+a) + f(z−b) − 2f(z), valid where a == b exactly."""
        import numpy as np

        a, b = zp - z0, z0 - zm
        ok = np.all(a == b, axis=1)
        den = _vnorm(a, self.p if self.fn.wrt == "input" else "2") ** 2 * (1 + 1e-12)
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
        import numpy as np

        h, u = z1 - z0, z2 - z0
        ok = np.all(z3 - z1 == u, axis=1)
        q = self.p if self.fn.wrt == "input" else "2"
        den = _vnorm(h, q) * _vnorm(u, q) * (1 + 1e-12)
        ok &= den > 0
        if not ok.any():
            return
        diffs = [self._flat(d_[ok]) - self._flat(b_[ok]) - self._flat(c_[ok]) + self._flat(a_[ok])
                 for a_, b_, c_, d_ in zip(v0, v1, v2, v3)]
        self._ratio_update(diffs, den[ok], 4.0, "smooth", how)


# ------------------------------------------------------------------------------------------
class _Auditor:
    def __init__(self, doc, net, model_path, samples, steps, seed, bar):
        import numpy as np

        self.doc, self.net, self.model_path = doc, net, model_path
        self.samples, self.steps = max(int(samples), 8), max(int(steps), 0)
        self.rng = np.random.default_rng(seed)
        self.bar = bar
        self.p = str(doc.get("norm", "2"))
        if self.p not in ("2", "inf", "1"):
            from boundprop.errors import BoundpropError

            raise BoundpropError(f"certificate norm '{self.p}' is not 2, inf or 1")
        self.wrt = doc.get("wrt", "input")
        self.notes: list[str] = []
        self.ort_points: list[Any] = []
        self._setup()

    # ---------------------------------------------------------------- setup
    def _input_region(self):
        import numpy as np

        from boundprop.sets import Box, default_input_set, input_set_from_json

        shape = tuple(self.net.input_shape)
        spec = self.doc.get("input_set")
        if spec is None:
            try:
                s = default_input_set(self.net)
                where = "the model's declared input set"
            except Exception:
                s, where = Box(-1.0, 1.0).fit(shape), "[-1, 1]"
            inner = self._region_of(s)
            if isinstance(inner, _BoxRegion):
                c, w = 0.5 * (inner.lo + inner.hi), 0.5 * (inner.hi - inner.lo)
                w = np.where(w > 0, w, 1.0)
                region = _BoxRegion(c - 4 * w, c + 4 * w, inner=inner)
            else:
                a, b, r = inner.blocks[0]
                region = _BallsRegion(inner.c, [(a, b, 4 * r if r > 0 else 1.0)])
                region.inner = inner
                region.sample = _mixture_sampler(region, inner)
            self.notes.append(f"global certificate: samples from {where} and that set "
                              "widened 4x about its centre")
            return region, s
        s = input_set_from_json(spec, shape)
        return self._region_of(s), s

    def _region_of(self, s):
        import numpy as np

        from boundprop.sets import L2Ball, LinfBall

        if isinstance(s, L2Ball):
            c = s.center.reshape(-1)
            return _BallsRegion(c, [(0, c.size, s.radius)])
        if isinstance(s, LinfBall):
            c = s.center.reshape(-1)
            lo = np.where(s.eps > 0, np.nextafter(c - s.eps, np.inf), c)
            hi = np.where(s.eps > 0, np.nextafter(c + s.eps, -np.inf), c)
            if s.clip is not None:
                lo, hi = np.clip(lo, *s.clip), np.clip(hi, *s.clip)
            bad = lo > hi
            if bad.any():
                mid = np.clip(c, *(s.clip or (-np.inf, np.inf)))
                lo, hi = np.where(bad, mid, lo), np.where(bad, mid, hi)
            return _BoxRegion(lo, hi)
        return _BoxRegion(s.lower.reshape(-1), s.upper.reshape(-1))

    def _setup(self):
        import numpy as np

        xregion, self.input_set = self._input_region()
        self.xregion = xregion
        net = self.net
        objective = None
        if self.wrt == "params":
            rho = float(self.doc.get("param_radius") or 0.0)
            pnodes = [k for k, n in enumerate(net.nodes) if hasattr(n.op, "param_structure")]
            ctx = [xregion.center()]
            if xregion.scale > 0:
                ctx.append(xregion.sample(7, self.rng))
            ctx = np.concatenate(ctx).reshape(-1, *net.input_shape)
            self.fn = _Function(net, "params", ctx, pnodes)
            self.region = _BallsRegion(np.zeros(self.fn.dim),
                                       [(a, b, rho) for a, b in self.fn.blocks()])
            objective = self._objective()
            self.p_z = "2"
        else:
            self.fn = _Function(net, "input")
            self.region = xregion
            self.p_z = self.p
        k_out = self.fn.sizes[net.output]
        self.row_sel = np.arange(k_out) if k_out <= 64 else np.sort(
            self.rng.choice(k_out, 64, replace=False))
        keep = k_out * self.fn.dim <= 20_000_000
        self.stats = _Stats(self.fn, self.p, keep, objective)
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

    def _objective(self):
        import numpy as np

        obj = self.doc.get("objective")
        if not obj:
            return None
        targets = obj.get("targets")
        if targets is None:
            self.notes.append("objective rows not audited: the certificate does not hold its "
                              "targets")
            return None
        out_shape = tuple(self.net.output_shape)
        t = np.asarray(targets, float)
        n = out_shape[0] if len(out_shape) > 1 else 1
        div = float(n) if obj.get("reduction", "mean") == "mean" else 1.0
        if obj.get("loss") == "squared":
            t = t.reshape(out_shape)

            def f(y):
                d = y - t
                return 0.5 * (d * d).reshape(*y.shape[:2], -1).sum(axis=-1) / div
            return f
        if obj.get("loss") == "cross_entropy":
            classes = out_shape[-1]
            idx = t.reshape(-1).astype(int)

            def f(y):
                z = y.reshape(*y.shape[:2], -1, classes)
                mx = z.max(axis=-1, keepdims=True)
                lse = (mx + np.log(np.exp(z - mx).sum(axis=-1, keepdims=True)))[..., 0]
                pick = np.take_along_axis(z, idx[None, None, :, None], axis=-1)[..., 0]
                return (lse - pick).sum(axis=-1) / div
            return f
        self.notes.append(f"objective rows not audited: unknown loss '{obj.get('loss')}'")
        return None

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
        import numpy as np

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
        if isinstance(r, _BoxRegion):
            omin = np.minimum(0.0, np.min(offs, axis=0))
            omax = np.maximum(0.0, np.max(offs, axis=0))
            lo_g, hi_g = np.ceil((r.lo - omin) / q) * q, np.floor((r.hi - omax) / q) * q
            Z0 = np.where(free & (lo_g <= hi_g), np.clip(Z0, lo_g, hi_g), Z0)
        return Z0, offs

    def _triples(self, Z0, H, how_pairs, how_second):
        import numpy as np

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
        import numpy as np

        try:
            J = self.fn.jacobians(Z, js, rows)
        except _NoJacobian as e:
            self.fn.has_jac = False
            self.notes.append(f"no reverse rule for op {e} and too many variables for finite "
                              "differences: ascents use random search, no Jacobian-guided pairs")
            return None
        J[:, :, ~self.region.free] = 0.0
        return np.nan_to_num(J)

    def _alphas(self, lo=0.005, hi=0.25):
        import numpy as np

        k = self.steps
        if k == 0:
            return np.zeros(0)
        return hi * (lo / hi) ** (np.arange(k) / max(k - 1, 1))

    def phase_output_ascent(self):
        import numpy as np

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
        import numpy as np

        from boundprop.gn.uses import margin_search

        ob = self.doc.get("output_bounds")
        st = self.stats
        if (not ob or self.steps == 0 or self.wrt != "input" or not st.keep
                or not isinstance(self.region, _BoxRegion) or self.region.scale == 0):
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
        import numpy as np

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
        import numpy as np

        out = self.net.output
        t = np.arange(len(Z))
        a = (vals[out][t, js] * rows[:, 0]).reshape(len(Z), -1).sum(axis=1)
        b = (vals_c[out][t, js] * rows[:, 0]).reshape(len(Z), -1).sum(axis=1)
        return np.where((b > a)[:, None], cand, Z)

    def phase_bound_ascent(self):
        import numpy as np

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
        if self.doc.get("input_set") is None and isinstance(region, _BoxRegion):
            # global B: sup over all inputs; climb in a box 16x wider still
            c, w = 0.5 * (region.lo + region.hi), 0.5 * (region.hi - region.lo)
            region = _BoxRegion(c - 16 * w, c + 16 * w)
        self._ascent(Z, js, rows_fn, "ascent", region)

    def _full_jac(self, Z, js):
        """Jacobians (n, K, dim) of the whole output (a random subset of 64 rows if larger)."""
        import numpy as np

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
        import numpy as np

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
        norms = np.array([_opnorm(Ji, self.p) for Ji in J])
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
                uv = [_opnorm_dir(Ji, self.p, True) for Ji in Jb]
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
                nc = np.array([_opnorm(Ji, self.p) for Ji in Jc])
                better = nc > nb
                Zb[better], Jb[better], nb[better] = cand[better], Jc[better], nc[better]
            self._tick("lipschitz")
        self.lip_points = (np.concatenate([Zb, Z]), jb + js, np.concatenate([Jb, J]))
        # honest pairs z ∓ t·v
        Zs, Js = self.lip_points[0], self.lip_points[2]
        V = np.array([_opnorm_dir(Ji, self.p)[1] for Ji in Js])
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
        import numpy as np

        if not self._smooth_finite() or self.region.scale == 0 or not self.fn.has_jac:
            return
        if not hasattr(self, "lip_points"):
            return
        Zs, js = self.lip_points[0][:4], self.lip_points[1][:4]
        Zr = self.region.sample(4, self.rng)
        Z = np.concatenate([Zs, Zr])
        js = list(js) + [int(self.rng.integers(self.fn.n_ctx)) for _ in range(4)]
        size = 1e-2 * self.region.scale

        def score(Zc, Hc):
            J0, J1 = self._full_jac(Zc, js), self._full_jac(Zc + Hc, js)
            D = J1 - J0
            hn = _vnorm(Hc, self.p_z)
            sc = np.array([_opnorm(Di, self.p) for Di in D]) / np.maximum(hn, 1e-300)
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
        U = np.array([_opnorm_dir(Di, self.p)[1] for Di in D]) * size
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

    # ---------------------------------------------------------------- onnxruntime
    def crosscheck(self):
        import numpy as np

        from boundprop.runtime import OrtModel

        st = self.stats
        try:
            ort = OrtModel(self.model_path, self.net.input_name, self.net.output_name,
                           tuple(self.net.input_shape), threads=1)
        except Exception as e:
            msg = " ".join(str(e).split())[:160]
            return AuditRow("onnxruntime", None, None, f"not audited: onnxruntime could not "
                            f"run the model ({msg})", kind="crosscheck"), None
        shape = self.net.input_shape
        if self.wrt == "input":
            pts = list(self.ort_points)
            if st.keep:
                pts += list(st.w_hi) + list(st.w_lo)
            X = np.array(pts).reshape(-1, *shape)
        else:
            X = np.concatenate([self.fn.ctx, self.xregion.sample(32, self.rng).reshape(
                -1, *shape)]) if self.xregion.scale > 0 else self.fn.ctx
        X32 = X.astype(np.float32).astype(np.float64)
        y_ort = ort(X32).reshape(len(X), -1)
        y_ir = self.net(X32).reshape(len(X), -1)
        # Outputs beyond float32's range are inf/NaN in onnxruntime by design (overflow), not
        # a disagreement: they are left out of the comparison and counted.
        overflow = ~np.isfinite(y_ort) & ~(np.abs(y_ir) <= np.finfo(np.float32).max)
        same = np.where(overflow, 0.0, np.abs(y_ort - y_ir))
        dev = float(np.nan_to_num(same, nan=np.inf).max(initial=0.0))
        fits = np.where(overflow, 0.0, np.abs(y_ir))
        tol = ORT_RTOL * (float(fits.max(initial=0.0)) + 0.01 * st.mag)
        note = (f"; {int(overflow.sum())} outputs beyond float32 range (onnxruntime inf/NaN "
                "by overflow) left out" if overflow.any() else "")
        row = AuditRow("onnxruntime", tol, dev, f"max |onnxruntime − IR| on {len(X)} points "
                       f"(float32 inputs){note}", kind="crosscheck", violated=dev > tol)
        witness = None
        if self.wrt == "input" and st.keep:
            k = st.w_hi.shape[0]
            n0 = len(self.ort_points)
            wy = y_ort[n0:]
            witness = (wy[np.arange(k), np.arange(k)], wy[k + np.arange(k), np.arange(k)])
        return row, witness

    # ---------------------------------------------------------------- rows
    def rows(self) -> list[AuditRow]:
        import numpy as np

        if self.fn.use_fd:
            self.notes.append(f"no reverse rule for op {self.fn.fd_reason}: search directions "
                              "from finite-difference Jacobians")

        doc, st = self.doc, self.stats
        rows: list[AuditRow] = []
        xrow, witness = self.crosscheck()
        ob = doc.get("output_bounds")
        tol = EVAL_ERR * st.mag
        if ob:
            up, lw = np.asarray(ob["upper"], float), np.asarray(ob["lower"], float)
            hi, lo = st.hi[st.out].reshape(-1), st.lo[st.out].reshape(-1)
            for i in range(len(up)):
                mid = 0.5 * (hi[i] + lo[i])
                rows.append(AuditRow(
                    f"output[{i}].upper", float(up[i]), float(hi[i]), st.how_hi[i], "upper",
                    bool(hi[i] > up[i] + tol + EVAL_ERR * abs(up[i])), None,
                    None if witness is None else float(witness[0][i]), float(mid)))
                rows.append(AuditRow(
                    f"output[{i}].lower", float(lw[i]), float(lo[i]), st.how_lo[i], "lower",
                    bool(lo[i] < lw[i] - tol - EVAL_ERR * abs(lw[i])), None,
                    None if witness is None else float(witness[1][i]), float(mid)))
        out = st.out
        rows.append(self._const("lipschitz", doc.get("lipschitz"), st.lip[out],
                                st.lip_how[out]))
        rows.append(self._const("smoothness", doc.get("smoothness"), st.smooth[out],
                                st.smooth_how[out]))
        rows.append(self._const("bound", doc.get("bound"), st.bound[out], st.bound_how[out]))
        obj = doc.get("objective")
        if obj:
            have = st.objective is not None
            rows.append(self._const("objective.lipschitz", obj.get("lipschitz"),
                                    st.obj_lip if have else None, st.obj_lip_how))
            rows.append(self._const("objective.smoothness", obj.get("smoothness"),
                                    st.obj_smooth if have else None, st.obj_smooth_how))
        for k, lc in enumerate(doc.get("layers") or []):
            name = str(lc.get("node", k))
            for q in ("bound", "lipschitz", "smoothness"):
                emp = {"bound": st.bound, "lipschitz": st.lip, "smoothness": st.smooth}[q][k]
                how = {"bound": st.bound_how, "lipschitz": st.lip_how,
                       "smoothness": st.smooth_how}[q][k]
                r = self._const(f"layer[{k}].{q}", lc.get(q), emp, how)
                r.node = name
                rows.append(r)
            w = lc.get("interval_width")
            if w is not None:
                rng = st.hi[k] - st.lo[k]
                emp = float(rng.max(initial=0.0)) if np.all(np.isfinite(rng)) else None
                r = self._const(f"layer[{k}].width", w, emp, "range of one entry", kind="width")
                r.node = name
                rows.append(r)
        rows.append(xrow)
        return rows

    def _const(self, name, certified, emp, how, kind="constant") -> AuditRow:
        cert = _as_float(certified)
        if cert is not None and math.isinf(cert):
            return AuditRow(name, cert, None if emp is None else float(emp),
                            how or "-", kind)
        if emp is None:
            return AuditRow(name, cert, None, "not audited", kind)
        violated = cert is not None and emp > cert * (1 + CONST_RTOL) + (
            EVAL_ERR * self.stats.mag if kind == "width" else 0.0)
        return AuditRow(name, cert, float(emp), how or "-", kind, bool(violated))

    def run(self) -> list[AuditRow]:
        self.phase_samples()
        self.phase_triples()
        self.phase_output_ascent()
        self.phase_output_gauss_newton()
        self.phase_bound_ascent()
        self.phase_lipschitz()
        self.phase_smoothness()
        self._tick("onnxruntime")
        return self.rows()


def _mixture_sampler(region, inner):
    def sample(n, rng):
        import numpy as np

        k = n // 2
        return rng.permutation(np.concatenate([inner.sample(k, rng),
                                               _BallsRegion.sample(region, n - k, rng)]))
    return sample


def _as_float(x) -> float | None:
    if x is None:
        return None
    if isinstance(x, str):
        if x.strip().lower() in ("inf", "+inf", "infinity"):
            return math.inf
        try:
            return float(x)
        except ValueError:
            return None
    return float(x)


# ------------------------------------------------------------------------------------------
# Public API
def _read_certificate(cert) -> tuple[dict, str | None]:
    from boundprop.certify import read_certificate_json
    from boundprop.errors import BoundpropError

    doc = read_certificate_json(cert)
    where = None if isinstance(cert, dict) or hasattr(cert, "to_json") else os.fspath(cert)
    label = where or "certificate"
    model = doc.get("model")
    if not isinstance(model, dict) or "sha256" not in model or "layers" not in doc:
        raise BoundpropError(f"{label}: certificate lacks 'model.sha256' or 'layers'; it is "
                             "truncated or not from boundprop certify")
    return doc, where


def audit(cert, model, *, samples: int = DEFAULT_SAMPLES, steps: int = DEFAULT_STEPS,
          seed: int = 0, progress: bool = False) -> AuditResult:
    """Empirical lower bounds of every quantity the certificate ``cert`` (a path, the JSON
    dict, or a :class:`boundprop.Certificate`) states about the ONNX ``model`` (a path).

    Raises BoundpropError for unreadable input or a certificate issued for another model."""

    import boundprop as bp
    from boundprop.errors import BoundpropError

    t0 = time.perf_counter()
    doc, where = _read_certificate(cert)
    path = os.fspath(model)
    from boundprop.importer import model_digest
    from boundprop.safe_io import check_input_file

    # A FIFO or /dev/zero given as the model would hang the hash below: regular files only.
    check_input_file(path, "model", 2**62, "give the ONNX file the certificate was issued "
                     f"for ({doc['model'].get('path', '?')})")
    try:
        digest = model_digest(path)  # the certificate's hash: external data files included
    except FileNotFoundError:
        raise BoundpropError(f"model {path}: no such file; give the ONNX file the certificate "
                             f"was issued for ({doc['model'].get('path', '?')})") from None
    except OSError as e:
        raise BoundpropError(f"model {path}: cannot read it ({e.strerror})") from None
    if digest != doc["model"]["sha256"]:
        raise BoundpropError(
            f"{where or 'certificate'} was issued for another model (sha256 "
            f"{str(doc['model']['sha256'])[:12]}…, {doc['model'].get('path', '?')}) but {path} "
            f"has sha256 {digest[:12]}…; audit it against the model it names")
    m = doc["model"]
    shape = tuple(m["input_shape"]) if m.get("input_shape") else None
    net = bp.load(path, input_shape=shape, input_name=m.get("input"),
                  output_name=m.get("output"))
    if len(doc["layers"]) != len(net.nodes):
        raise BoundpropError(f"{where or 'certificate'}: {len(doc['layers'])} layer entries but "
                             f"the model has {len(net.nodes)} IR nodes; the certificate was "
                             "made by another boundprop version: certify again")
    bar = None
    if progress and sys.stderr.isatty():
        try:
            from tqdm import tqdm

            bar = tqdm(total=1, desc="audit", file=sys.stderr, leave=False)
        except ImportError:
            bar = None
    try:
        auditor = _Auditor(doc, net, path, samples, steps, seed, bar)
        rows = auditor.run()
    finally:
        if bar is not None:
            bar.close()
    return AuditResult(rows, path, where, auditor.p, auditor.wrt, doc.get("input_set") is not None,
                       int(samples), int(steps), int(seed), time.perf_counter() - t0,
                       auditor.notes)


# ------------------------------------------------------------------------------------------
# CLI
def run(args: argparse.Namespace) -> int:
    from boundprop.safe_io import json_text

    res = audit(args.cert, args.model, samples=args.samples, steps=args.steps, seed=args.seed,
                progress=not (args.quiet or args.no_progress or args.json))
    if args.json:
        print(json_text(res.to_json()))
    elif not args.quiet:
        print(res.format())
    return 0 if res.ok else 1


MAX_SAMPLES = 10**6  # --samples beyond this hangs for hours or exhausts memory
MAX_STEPS = 10**4


def _count(limit: int | None):
    """An argparse type: an integer in [0, limit] (one-line usage error otherwise)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is not an integer") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"'{text}' must be ≥ 0")
        if limit is not None and v > limit:
            raise argparse.ArgumentTypeError(f"'{text[:40]}' is over the limit {limit:,}")
        return v
    return parse



def register(sub) -> None:
    """Add ``boundprop audit`` to the CLI's subparsers."""
    p = sub.add_parser(
        "audit", help="empirical lower bounds and tightness ratios of a certificate",
        description="Search for inputs (or parameters, for --wrt params certificates) that "
        "come close to every certified quantity: output bounds, Lipschitz ℓ, smoothness L, "
        "bound B, and each IR node's. Prints certified, empirical (a lower bound of the true "
        "value) and their ratio; any empirical value beyond its certified one is a violation "
        "(exit 1). Values come from boundprop's float64 evaluator of the model, cross-checked "
        "against onnxruntime.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cert", metavar="CERT.json", help="certificate from 'boundprop certify -o'")
    p.add_argument("model", metavar="MODEL", help="the ONNX model it was issued for")
    p.add_argument("--samples", type=_count(MAX_SAMPLES), default=DEFAULT_SAMPLES, metavar="N",
                   help=f"random points of the set (default {DEFAULT_SAMPLES}, at most "
                   f"{MAX_SAMPLES:,})")
    p.add_argument("--steps", type=_count(MAX_STEPS), default=DEFAULT_STEPS, metavar="K",
                   help=f"iterations of each ascent / random search (default {DEFAULT_STEPS}, "
                   f"at most {MAX_STEPS:,})")
    p.add_argument("--seed", type=_count(2**32 - 1), default=0,
                   help="random seed, 0 to 2^32 − 1 (default 0)")
    p.add_argument("--json", action="store_true", help="print one JSON document of every row")
    p.add_argument("--quiet", action="store_true", help="print nothing; exit status only")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)
