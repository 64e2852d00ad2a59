"""boundprop: sound bounds, Lipschitz and smoothness certificates for ONNX networks."""

from boundprop.errors import (
    BoundpropError,
    InputShapeError,
    ModelLoadError,
    UnsupportedModelError,
)
from boundprop.importer import load
from boundprop.ir import Network, Node

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
]
