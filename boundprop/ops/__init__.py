"""The op registry: every IR primitive, and every ONNX op type that converts to primitives.

One op lives in one place: a primitive class (subclass of :class:`Primitive`) keeps its
evaluation and, as the analyses grow, every abstract rule it has; the function that turns an ONNX
node into that primitive is registered beside it with :func:`onnx_converter`.
"""

from __future__ import annotations

# Importing the modules fills the registry.
from boundprop.ops import (  # noqa: F401
    activation,
    affine,
    cast,
    conv,
    join,
    normalization,
    piecewise,
    pooling,
    shape,
    smooth,
)
from boundprop.ops.base import (
    CONVERTERS,
    FAMILIES,
    Primitive,
    onnx_converter,
    supported_onnx_ops,
)

__all__ = ["CONVERTERS", "FAMILIES", "Primitive", "onnx_converter", "supported_onnx_ops"]
