"""Index geometry shared by the ops: shapes, regions (boxes of a tensor's entries, used to
crop a node to a receptive field) and the strided windows of sliding-window ops."""

from __future__ import annotations

import itertools

Shape = tuple[int, ...]

# A box of entries of a tensor: one (start, stop) per axis (stop exclusive).
Region = tuple[tuple[int, int], ...]


def region_shape(region: Region) -> Shape:
    """The shape of the entries a region selects."""
    return tuple(b - a for a, b in region)


def region_slices(region: Region) -> tuple[slice, ...]:
    """The index selecting a region (of an array with the region's rank)."""
    return tuple(slice(a, b) for a, b in region)


def window_slices(kernel: Shape, strides: Shape, dilations: Shape, out_spatial: Shape):
    """For each kernel offset, the strided slices of the (padded) input it meets.

    Offset ``o`` along a spatial axis sees input positions ``o*d + s*j`` for output ``j``; a
    sliding-window op (convolution, pooling) is a sum/max over offsets of these slices.
    """
    for offs in itertools.product(*(range(k) for k in kernel)):
        yield offs, tuple(slice(o * d, o * d + s * (n - 1) + 1, s)
                          for o, d, s, n in zip(offs, dilations, strides, out_spatial))
