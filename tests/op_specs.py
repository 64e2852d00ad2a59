"""The op spec table: one row per IR primitive class, driving the conformance suite.

A row names the class, builds a small instance from a seeded generator (``make(rng)``) and
draws input boxes for it (``boxes(rng, op)``: one (lo, hi) pair per input, each of shape
(1, *in_shape)). A new primitive is one class plus one row here; the suite then tests every
rule the class declares (see ``tests/test_op_conformance.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from boundprop.ops.affine import Dense, ElementwiseAffine
from boundprop.ops.base import Primitive
from boundprop.ops.cast import RoundToFormat
from boundprop.ops.conv import Conv, ConvTranspose
from boundprop.ops.join import Concat, Sum
from boundprop.ops.normalization import BatchNormTraining, LayerNorm, Softmax
from boundprop.ops.piecewise import Clip, HardSigmoid, HardSwish, LeakyRelu, PRelu, Relu
from boundprop.ops.pooling import AveragePool, MaxPool, Reduce, ReduceExtreme
from boundprop.ops.shape import ConcatConst, Expand, Gather, Pad, Reshape, Slice, Tile, Transpose
from boundprop.ops.smooth import Celu, Elu, Erf, Gelu, Selu, Sigmoid, Softplus, Softsign, Tanh

Box = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class OpSpec:
    """One row: ``name`` (the test id), the primitive class, its constructor and its
    input-box generator."""

    name: str
    cls: type[Primitive]
    make: Callable[[np.random.Generator], Primitive]
    boxes: Callable[[np.random.Generator, Primitive], list[Box]]


def random_boxes(scale: float = 1.0, radius: float = 0.3):
    """Boxes centred at N(0, scale²) points with radii uniform in [0, radius]."""
    def draw(rng: np.random.Generator, op: Primitive) -> list[Box]:
        out = []
        for shape in op.in_shapes:
            c = scale * rng.standard_normal((1, *shape))
            r = radius * rng.random((1, *shape))
            out.append((c - r, c + r))
        return out
    return draw


def _n(rng, *shape):
    return rng.standard_normal(shape)


def _activation(cls, **params):
    shape = (2, 3)
    return OpSpec(cls.__name__, cls, lambda rng: cls(shape, **(params or cls.onnx_defaults)),
                  random_boxes(1.5, 0.5))


SPECS: list[OpSpec] = [
    # activations
    _activation(Relu), _activation(LeakyRelu, alpha=0.125), _activation(HardSigmoid),
    _activation(HardSwish), _activation(Clip, lo=-0.5, hi=0.7),
    OpSpec("PRelu", PRelu, lambda rng: PRelu((2, 3), 0.3 * rng.random(3)),
           random_boxes(1.5, 0.5)),
    _activation(Sigmoid), _activation(Tanh), _activation(Softplus), _activation(Softsign),
    _activation(Elu), _activation(Selu), _activation(Celu), _activation(Gelu),
    OpSpec("Gelu-tanh", Gelu, lambda rng: Gelu((2, 3), approximate="tanh"),
           random_boxes(1.5, 0.5)),
    _activation(Erf),
    OpSpec("RoundToFormat", RoundToFormat, lambda rng: RoundToFormat((2, 3), "float16"),
           random_boxes(2.0, 0.01)),
    # affine
    OpSpec("Dense", Dense, lambda rng: Dense((1, 4), _n(rng, 3, 4), _n(rng, 3)),
           random_boxes()),
    OpSpec("Dense-left", Dense, lambda rng: Dense((4, 2), _n(rng, 3, 4), _n(rng, 3, 1),
                                                  axis=-2), random_boxes()),
    OpSpec("ElementwiseAffine", ElementwiseAffine,
           lambda rng: ElementwiseAffine((2, 3), _n(rng, 3), _n(rng, 2, 3)), random_boxes()),
    OpSpec("Conv", Conv, lambda rng: Conv((1, 2, 5, 5), _n(rng, 4, 1, 3, 3), _n(rng, 4),
                                          (2, 1), [1, 0], [1, 1], (1, 1), 2), random_boxes()),
    OpSpec("ConvTranspose", ConvTranspose,
           lambda rng: ConvTranspose((1, 2, 3, 3), _n(rng, 2, 3, 2, 2), _n(rng, 3), (2, 2),
                                     [0, 1], [1, 0], (1, 1), (0, 0), 1), random_boxes()),
    OpSpec("Reshape", Reshape, lambda rng: Reshape((2, 3, 2), (3, 4)), random_boxes()),
    OpSpec("Transpose", Transpose, lambda rng: Transpose((2, 3, 4), (2, 0, 1)), random_boxes()),
    OpSpec("Slice", Slice, lambda rng: Slice((4, 5), (slice(1, 3), slice(0, 5, 2))),
           random_boxes()),
    OpSpec("Pad", Pad, lambda rng: Pad((2, 3), [1, 0], [0, 2], "constant", 0.5),
           random_boxes()),
    OpSpec("Gather", Gather, lambda rng: Gather((4, 3), np.array([2, 0, 2]), 0), random_boxes()),
    OpSpec("Expand", Expand, lambda rng: Expand((1, 3), (2, 3)), random_boxes()),
    OpSpec("Tile", Tile, lambda rng: Tile((2, 3), (2, 1)), random_boxes()),
    OpSpec("ConcatConst", ConcatConst,
           lambda rng: ConcatConst((2, 3), [_n(rng, 2, 2), None], 1), random_boxes()),
    # joins
    OpSpec("Sum", Sum, lambda rng: Sum(((2, 3), (1, 3)), (1.0, -1.0)), random_boxes()),
    OpSpec("Concat", Concat, lambda rng: Concat(((2, 3), (2, 2)), 1), random_boxes()),
    # pooling
    OpSpec("MaxPool", MaxPool, lambda rng: MaxPool((1, 2, 4, 5), (2, 2), (2, 2), (1, 1),
                                                   [0, 1], [0, 0], False), random_boxes()),
    OpSpec("AveragePool", AveragePool,
           lambda rng: AveragePool((1, 2, 4, 5), (2, 2), (2, 2), (1, 1), [0, 1], [0, 0], False,
                                   False), random_boxes()),
    OpSpec("Reduce", Reduce, lambda rng: Reduce((2, 3, 4), (1,), True, True), random_boxes()),
    OpSpec("ReduceExtreme", ReduceExtreme,
           lambda rng: ReduceExtreme((2, 3, 4), (2,), False, True), random_boxes()),
    # normalisation
    OpSpec("BatchNormTraining", BatchNormTraining,
           lambda rng: BatchNormTraining((3, 2, 4), _n(rng, 2), _n(rng, 2), 1e-3),
           random_boxes(1.0, 0.05)),
    OpSpec("LayerNorm", LayerNorm,
           lambda rng: LayerNorm((2, 5), -1, _n(rng, 5), _n(rng, 5), 1e-5),
           random_boxes(1.0, 0.05)),
    OpSpec("Softmax", Softmax, lambda rng: Softmax((2, 4), (1,)), random_boxes()),
    OpSpec("LogSoftmax", Softmax, lambda rng: Softmax((2, 4), (1,), log=True), random_boxes()),
]


def sample_in(rng: np.random.Generator, boxes: list[Box], n: int) -> list[np.ndarray]:
    """n points per input, uniform in its box (the box's corners among them)."""
    out = []
    for lo, hi in boxes:
        x = np.clip(lo + rng.random((n, *lo.shape[1:])) * (hi - lo), lo, hi)
        x[0], x[1] = lo[0], hi[0]
        out.append(x)
    return out
