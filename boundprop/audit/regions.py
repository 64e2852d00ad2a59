"""The searched set, as flat variable vectors z: a box, or a product of ℓ2 balls.

Every point a search measures is drawn from, projected onto or fitted into one of these
regions, so that every empirical value is taken inside the certified set: ℓ∞ balls become a
box rounded inward, ℓ2 balls are shrunk by a relative 1e-10.
"""

from __future__ import annotations

import numpy as np

from boundprop.sets import Box, L2Ball, LinfBall, default_input_set, input_set_from_json

CORNER_DIMS = 12  # every corner of a box is measured when at most this many coordinates are free


class BoxRegion:
    """{lo ≤ z ≤ hi}; ``inner`` (optional): a sub-box half the samples are drawn from."""

    def __init__(self, lo, hi, inner=None):
        self.lo, self.hi = np.asarray(lo, float), np.asarray(hi, float)
        self.free = self.hi > self.lo
        self.dim = self.lo.size
        self.inner = inner
        w = self.hi - self.lo
        self.scale = float(w.max()) if w.size and w.max() > 0 else 0.0

    def sample(self, n, rng):
        """n points: uniform in the box, or half from ``inner`` and half uniform, shuffled."""
        if self.inner is not None:
            k = n // 2
            return rng.permutation(np.concatenate([self.inner.sample(k, rng),
                                                   self._uniform(n - k, rng)], axis=0))
        return self._uniform(n, rng)

    def _uniform(self, n, rng):
        return self.lo + (self.hi - self.lo) * rng.random((n, self.dim))

    def center(self):
        return (0.5 * (self.lo + self.hi))[None]

    def corners(self):
        """Every corner (2^free rows) when 1 to CORNER_DIMS coordinates are free, else None."""
        idx = np.flatnonzero(self.free)
        if not 0 < idx.size <= CORNER_DIMS:
            return None
        bits = (np.arange(2**idx.size)[:, None] >> np.arange(idx.size)[None]) & 1
        z = np.repeat(self.lo[None], len(bits), axis=0)
        z[:, idx] = np.where(bits == 1, self.hi[idx], self.lo[idx])
        return z

    def project(self, z):
        return np.clip(z, self.lo, self.hi)

    def step(self, z, g, alpha):
        """Signed gradient step: z + α·(hi − lo)·sign(g), projected."""
        return self.project(z + alpha[:, None] * (self.hi - self.lo) * np.sign(g))

    def directions(self, n, rng):
        return (self.hi - self.lo) * rng.uniform(-1.0, 1.0, (n, self.dim))

    def fit(self, z, offsets):
        """Move the base points z (and shrink the offsets if needed) so that every z + o is in
        the box; returns (z, offsets)."""
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
        return np.all((z >= self.lo) & (z <= self.hi), axis=1)


class BallProductRegion:
    """Product of ℓ2 balls: block b = z[start:end] within ``radius`` of center[start:end]
    (an ℓ2 input ball is one block; parameter balls one block per layer). ``inner``
    (optional): a region half the samples are drawn from."""

    SHRINK = 1 - 1e-10

    def __init__(self, center, blocks, inner=None):
        self.c = np.asarray(center, float)
        self.blocks = [(a, b, float(r)) for a, b, r in blocks]
        self.dim = self.c.size
        self.free = np.zeros(self.dim, bool)
        for a, b, r in self.blocks:
            self.free[a:b] = r > 0
        self.scale = max((r for _, _, r in self.blocks), default=0.0)
        self.inner = inner

    def _block_norm(self, d, a, b):
        return np.sqrt((d[:, a:b] ** 2).sum(axis=1))

    def sample(self, n, rng):
        """n points of the balls, or half from ``inner`` and half of the balls, shuffled."""
        if self.inner is not None:
            k = n // 2
            return rng.permutation(np.concatenate([self.inner.sample(k, rng),
                                                   self._in_balls(n - k, rng)]))
        return self._in_balls(n, rng)

    def _in_balls(self, n, rng):
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
        z = z.copy()
        for a, b, r in self.blocks:
            d = z[:, a:b] - self.c[a:b]
            nrm = np.sqrt((d**2).sum(axis=1))
            f = np.where(nrm > r * self.SHRINK, r * self.SHRINK / np.maximum(nrm, 1e-300), 1.0)
            z[:, a:b] = self.c[a:b] + d * f[:, None]
        return z

    def step(self, z, g, alpha):
        """Normalised gradient step per block: z_b + α·r·g_b/‖g_b‖₂, projected."""
        z = z.copy()
        for a, b, r in self.blocks:
            gb = g[:, a:b]
            nrm = np.sqrt((gb**2).sum(axis=1, keepdims=True))
            z[:, a:b] += alpha[:, None] * r * gb / np.maximum(nrm, 1e-300)
        return self.project(z)

    def directions(self, n, rng):
        d = np.zeros((n, self.dim))
        for a, b, r in self.blocks:
            g = rng.standard_normal((n, b - a))
            d[:, a:b] = r * g / np.maximum(np.sqrt((g**2).sum(axis=1, keepdims=True)), 1e-300)
        return d

    def fit(self, z, offsets):
        """Shrink the offsets to at most half of each radius, then pull the base points z
        towards the centre until every z + o is in the balls; returns (z, offsets)."""
        offsets = [o.copy() for o in offsets]
        f = np.ones(len(z))
        for a, b, r in self.blocks:
            m = np.max([self._block_norm(o, a, b) for o in offsets], axis=0)
            with np.errstate(divide="ignore", invalid="ignore"):
                f = np.minimum(f, np.where(m > 0.5 * r * self.SHRINK,
                                           0.5 * r * self.SHRINK / np.where(m > 0, m, 1), 1.0))
        offsets = [o * f[:, None] for o in offsets]
        z = z.copy()
        for a, b, r in self.blocks:
            m = np.max([self._block_norm(o, a, b) for o in offsets], axis=0)
            allow = np.maximum(r * self.SHRINK - m, 0.0) * (1 - 1e-9)
            d = z[:, a:b] - self.c[a:b]
            nrm = np.sqrt((d**2).sum(axis=1))
            s = np.where(nrm > allow, allow / np.maximum(nrm, 1e-300), 1.0)
            z[:, a:b] = self.c[a:b] + d * s[:, None]
        return z, offsets

    def contains(self, z):
        ok = np.ones(len(z), bool)
        for a, b, r in self.blocks:
            ok &= self._block_norm(z - self.c, a, b) <= r * (1 - 1e-11)
        return ok


def region_of_set(s):
    """The region of an input set: an ℓ2 ball shrunk by SHRINK; an ℓ∞ ball as the box rounded
    inward (one ulp), clipped; a box as it is."""
    if isinstance(s, L2Ball):
        c = s.center.reshape(-1)
        return BallProductRegion(c, [(0, c.size, s.radius)])
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
        return BoxRegion(lo, hi)
    return BoxRegion(s.lower.reshape(-1), s.upper.reshape(-1))


def input_region(doc: dict, net):
    """(region searched, input set, note or None) of a certificate document ``doc``.

    A local certificate's region is its input set's. A global one (no input set) samples
    half from the model's declared input set ([-1, 1] if none) and half from that set
    widened 4× about its centre: pairs and differences anywhere are valid for global
    constants."""
    shape = tuple(net.input_shape)
    spec = doc.get("input_set")
    if spec is not None:
        s = input_set_from_json(spec, shape)
        return region_of_set(s), s, None
    try:
        s = default_input_set(net)
        where = "the model's declared input set"
    except Exception:
        s, where = Box(-1.0, 1.0).fit(shape), "[-1, 1]"
    inner = region_of_set(s)
    if isinstance(inner, BoxRegion):
        c, w = 0.5 * (inner.lo + inner.hi), 0.5 * (inner.hi - inner.lo)
        w = np.where(w > 0, w, 1.0)
        region = BoxRegion(c - 4 * w, c + 4 * w, inner=inner)
    else:
        a, b, r = inner.blocks[0]
        region = BallProductRegion(inner.c, [(a, b, 4 * r if r > 0 else 1.0)], inner=inner)
    note = (f"global certificate: samples from {where} and that set widened 4x about its "
            "centre")
    return region, s, note
