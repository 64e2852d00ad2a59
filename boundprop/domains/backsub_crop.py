"""Back-substitution on crops: rows supported on a spatial tile stay supported on a window.

A row Λ of a convolution-shaped node (N, C, *spatial) that is nonzero only at the positions
of a tile T is carried, through a convolution, pooling window, elementwise activation or
residual sum, to Λ_in nonzero only on the input window that T reads (its receptive field).
So the back-substitution of the rows of T needs, at every node n of the target's backward
cone, only the entries in a region R_n (a box: one (start, stop) per axis):

    R_target = T,   R_i = hull of the regions its consumers j read for R_j (``op.crop``).

Each op is replaced by its crop (``Primitive.crop``: the same kernel with adjusted pads, the
same σ on fewer entries), wrapped by :class:`_Embedded` where the consumer reads only part
of R_i, and every enclosure array (bounds, float32 errors, the input set) is sliced to R_n.
The crop drops only entries where Λ is exactly zero, so the bound is the same real number
as the uncropped one; each rounding-error term of ``BackSubstitution.lower`` is the same
γ-bound over fewer (only zero) terms, still bounding the rounding of the shorter sums it
actually computes. Rows are grouped by tiles of the node's spatial positions; the tile side
is chosen by a cost estimate (entries touched, plus a per-tile overhead).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np

from boundprop.ir import Network
from boundprop.ops.geometry import Region, region_shape, region_slices
from boundprop.sets import Box, L2Ball

# Cost, in entry-operations, of one node of one tile's back-substitution apart from its
# arrays (Python and NumPy call overhead), for choosing the tile side.
TILE_OVERHEAD = 3e5


def hull(a: Region, b: Region) -> Region:
    """The smallest region containing both."""
    return tuple((min(x0, y0), max(x1, y1)) for (x0, x1), (y0, y1) in zip(a, b))


def plan(net: Network, target: int, region: Region):
    """(regions R_n, {n: (cropped op, regions it reads)}) of target's backward cone for rows
    supported on ``region``, or None if an op of the cone cannot be cropped."""
    regions = {target: tuple(region)}
    ops = {}
    for n in range(target, 0, -1):
        if n not in regions:
            continue
        node = net.nodes[n]
        res = node.op.crop(regions[n])
        if res is None:
            return None
        ops[n] = res
        for i, r in zip(node.inputs, res[1]):
            regions[i] = tuple(r) if i not in regions else hull(regions[i], r)
    return regions, ops


def cost(net: Network, regions: dict[int, Region]) -> float:
    """Entry-operations of back-substituting one row through the crops (a convolution reads
    its kernel's taps per output entry)."""
    total = 0.0
    for n, r in regions.items():
        op = net.nodes[n].op
        taps = int(np.prod(op.weight.shape[2:])) if getattr(op, "kind", "") == "conv" else 1
        total += float(np.prod(region_shape(r))) * (4 + taps)
    return total


class _Embedded:
    """A cropped op reading the sub-regions ``inner`` of its inputs' regions ``outer``:
    slices the input enclosures to ``inner``, and zero-pads each Λ_in back to ``outer``
    (exact: the padded entries are zero)."""

    def __init__(self, op, inner: list[Region], outer: list[Region]):
        self.op = op
        self.sl = [tuple(slice(a - o, b - o) for (a, b), (o, _) in zip(ri, ro))
                   for ri, ro in zip(inner, outer)]
        self.outer_shapes = [region_shape(r) for r in outer]

    def __getattr__(self, name):
        return getattr(self.op, name)

    def _slice(self, boxes):
        return [(lo[(slice(None), *sl)], hi[(slice(None), *sl)])
                for (lo, hi), sl in zip(boxes, self.sl)]

    def linear_relaxation(self, *boxes):
        return self.op.linear_relaxation(*self._slice(boxes))

    def linear_relaxation_candidates(self, *boxes):
        return self.op.linear_relaxation_candidates(*self._slice(boxes))

    def backward_linear(self, lam, relax, boxes):
        lam_ins, c, e = self.op.backward_linear(lam, relax, self._slice(boxes))
        out = []
        for li, sl, shape in zip(lam_ins, self.sl, self.outer_shapes):
            if li.shape[1:] != shape:
                full = np.zeros((li.shape[0], *shape))
                full[(slice(None), *sl)] = li
                li = full
            out.append(li)
        return out, c, e


def cropped_view(bs, regions: dict[int, Region], ops: dict):
    """A shallow copy of BackSubstitution ``bs`` whose network, enclosures, float32 errors
    and input set are those of the crops (node indices unchanged; nodes outside the cone
    are None)."""
    net = bs.net
    nodes: list = [None] * len(net.nodes)
    bounds: list = [None] * len(net.nodes)
    for n, reg in regions.items():
        sl = region_slices(reg)
        bounds[n] = (bs.bounds[n][0][sl], bs.bounds[n][1][sl])
        if n in ops:
            op, reads = ops[n]
            node = net.nodes[n]
            outer = [regions[i] for i in node.inputs]
            nodes[n] = SimpleNamespace(name=node.name, op=_Embedded(op, reads, outer),
                                       inputs=node.inputs, shape=region_shape(reg))
    sub = copy.copy(bs)
    sub.net = copy.copy(net)
    sub.net.nodes = nodes
    sub.bounds, sub.relax, sub.candidates = bounds, {}, {}
    for n in ops:  # entrywise relaxations: sliced from the whole node's, not recomputed
        if net.nodes[n].op.has("backward_linear"):
            op = net.nodes[n].op
            relax = op.crop_relaxation(bs._relaxation(n), regions[n])
            if relax is not None:
                sub.relax[n] = relax
                cands = bs.node_candidates(n)
                if len(cands) > 1:
                    sub.candidates[n] = [op.crop_relaxation(c, regions[n]) for c in cands]
    sub.f32_error = {n: e[region_slices(regions[n])] for n, e in bs.f32_error.items()
                     if n in regions}
    if 0 in regions:
        sl = region_slices(regions[0])
        s = bs.set
        shape = net.nodes[0].shape
        sub.set = L2Ball(np.broadcast_to(s.center, shape)[sl], s.radius) if isinstance(
            s, L2Ball) else Box(np.broadcast_to(s.lower, shape)[sl],
                                np.broadcast_to(s.upper, shape)[sl])
    return sub


def tiles(shape: tuple[int, ...], idx: np.ndarray, side: int) -> list[tuple[Region,
                                                                            np.ndarray]]:
    """Group flat indices ``idx`` of a (N, C, *spatial) tensor by spatial tiles of ``side``:
    per tile, (the region spanning its entries over every batch and channel, its indices)."""
    pos = np.unravel_index(idx, shape)
    sp = np.stack(pos[2:], axis=1)
    keys = sp // side
    _, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    out = []
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    for group in np.split(order, bounds):
        p = sp[group]
        region = ((0, shape[0]), (0, shape[1])) + tuple(
            (int(a), int(b) + 1) for a, b in zip(p.min(axis=0), p.max(axis=0)))
        out.append((region, idx[group]))
    return out


def choose_side(net: Network, target: int, idx: np.ndarray) -> int | None:
    """The tile side of least estimated cost (2 rows per entry times the cone's crop cost,
    plus TILE_OVERHEAD per node and tile), or None if the cone cannot be cropped or no tile
    is cheaper than the uncropped arrays."""
    shape = net.nodes[target].shape
    if len(shape) < 3:
        return None
    extent = max(shape[2:])
    best, best_cost = None, float("inf")
    side = 1
    while True:
        groups = tiles(shape, idx, side)
        # the tile with most rows stands for all of them
        region, rows = max(groups, key=lambda g: g[1].size)
        p = plan(net, target, region)
        if p is None:
            return None
        per_row = cost(net, p[0])
        est = 2 * idx.size * per_row + len(groups) * len(p[0]) * TILE_OVERHEAD
        if est < best_cost:
            best, best_cost = side, est
        if side >= extent:
            break
        side *= 2
    return best
