"""Normalising primitives: training-mode batch norm, layer norm, softmax, log-softmax.

These couple entries of their input (a batch, a feature axis, a class axis), so their rules are
not elementwise.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import special

from boundprop.ops.base import (
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    attr,
    const_value,
    float_array,
    normalize_axis,
    onnx_converter,
)


class BatchNormTraining(Primitive):
    """Batch norm that normalises with the statistics of the current batch (ONNX
    ``training_mode=1``): per channel c, over the batch and spatial axes,
    y = γ_c (x − μ_c) / sqrt(σ²_c + ε) + β_c, with σ² the biased (population) variance.
    """

    family: ClassVar[str] = "normalising"
    kind = "batchnorm-train"

    def __init__(self, in_shape: Shape, scale: np.ndarray, bias: np.ndarray, eps: float):
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.scale, self.bias, self.eps = float_array(scale), float_array(bias), float(eps)
        c = in_shape[1]
        self._bshape = (1, 1, c) + (1,) * (len(in_shape) - 2)
        self.axes = (1,) + tuple(range(3, len(in_shape) + 1))  # batch and spatial, sample-shifted

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        mu = x.mean(axis=self.axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=self.axes, keepdims=True)
        return (self.scale.reshape(self._bshape) * (x - mu) / np.sqrt(var + self.eps)
                + self.bias.reshape(self._bshape))

    def parameters(self) -> dict[str, np.ndarray]:
        return {"scale": self.scale, "bias": self.bias}

    def describe(self) -> str:
        return f"eps={self.eps:g} over batch {self.in_shapes[0][0]}"


class LayerNorm(Primitive):
    """y = γ (x − μ) / sqrt(σ² + ε) + β, statistics over the trailing axes from ``axis``."""

    family: ClassVar[str] = "normalising"
    kind = "layernorm"

    def __init__(self, in_shape: Shape, axis: int, scale: np.ndarray | None,
                 bias: np.ndarray | None, eps: float):
        from boundprop.ops.affine import lift

        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        rank = len(in_shape)
        self.axis, self.eps = axis, float(eps)
        self.scale_raw = None if scale is None else float_array(scale)
        self.bias_raw = None if bias is None else float_array(bias)
        self.scale = None if scale is None else lift(self.scale_raw, rank)
        self.bias = None if bias is None else lift(self.bias_raw, rank)
        self.axes = tuple(range(axis + 1, rank + 1))

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        mu = x.mean(axis=self.axes, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=self.axes, keepdims=True)
        y = (x - mu) / np.sqrt(var + self.eps)
        if self.scale is not None:
            y = y * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y

    def parameters(self) -> dict[str, np.ndarray]:
        return {k: v for k, v in (("scale", self.scale_raw), ("bias", self.bias_raw))
                if v is not None}

    def describe(self) -> str:
        return f"axis={self.axis} eps={self.eps:g}"


class Softmax(Primitive):
    """Softmax (or log-softmax) over ``axes`` jointly (several axes: ONNX < 13 semantics)."""

    family: ClassVar[str] = "normalising"

    def __init__(self, in_shape: Shape, axes: tuple[int, ...], log: bool = False):
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.axes, self.log = tuple(axes), log
        self.kind = "logsoftmax" if log else "softmax"

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        ax = tuple(a + 1 for a in self.axes)
        if self.log:
            return x - special.logsumexp(x, axis=ax, keepdims=True)
        z = np.exp(x - x.max(axis=ax, keepdims=True))
        return z / z.sum(axis=ax, keepdims=True)

    def describe(self) -> str:
        return f"axes={list(self.axes)}"


@onnx_converter("Softmax", "LogSoftmax")
def convert_softmax(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("softmax input must be computed from the network input")
    rank = len(x.shape)
    if ctx.opset < 13:  # input coerced to 2-D at `axis`: all trailing axes are normalised
        axis = normalize_axis(attr(node, "axis", 1), rank)
        axes = tuple(range(axis, rank))
    else:
        axes = (normalize_axis(attr(node, "axis", -1), rank),)
    return [ctx.emit(Softmax(x.shape, axes, log=node.op_type == "LogSoftmax"), [x])]


@onnx_converter("LayerNormalization")
def convert_layernorm(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("LayerNormalization input must be computed from the network input")
    axis = normalize_axis(attr(node, "axis", -1), len(x.shape))
    scale = const_value(ctx, args[1], "LayerNormalization scale")
    bias = None
    if len(args) > 2 and args[2] is not None:
        bias = const_value(ctx, args[2], "LayerNormalization bias")
    prim = LayerNorm(x.shape, axis, scale, bias, attr(node, "epsilon", 1e-5))
    return [ctx.emit(prim, [x])] + [None] * (len(node.output) - 1)
