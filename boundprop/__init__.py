"""boundprop: sound bounds, Lipschitz and smoothness certificates for ONNX networks."""

from boundprop.errors import (
    BoundpropError,
    InputShapeError,
    ModelLoadError,
    UnsupportedModelError,
)
from boundprop.importer import load
from boundprop.ir import Network, Node
from boundprop.ops import supported_onnx_ops

__version__ = "0.1.0"

__all__ = [
    "BoundpropError",
    "InputShapeError",
    "ModelLoadError",
    "Network",
    "Node",
    "UnsupportedModelError",
    "__version__",
    "load",
    "supported_onnx_ops",
]
