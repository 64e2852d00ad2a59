"""boundprop: sound bounds, Lipschitz and smoothness certificates for ONNX networks."""

from boundprop import gn  # noqa: F401  (bp.gn.Problem, bp.gn.solve: imported on use)
from boundprop.analysis import OutputBounds, output_bounds
from boundprop.audit import AuditResult, audit
from boundprop.certify import Certificate, certify, load_certificate
from boundprop.checker import CertificateInvalid, CheckResult, check
from boundprop.constants import Constants, constants
from boundprop.errors import (
    BoundpropError,
    InputShapeError,
    ModelLoadError,
    UnsupportedModelError,
)
from boundprop.importer import load
from boundprop.ir import Network, Node
from boundprop.ops import supported_onnx_ops
from boundprop.sets import Box, InputSet, L2Ball, LinfBall
from boundprop.verifier import Verdict, verify
from boundprop.vnnlib import load_vnnlib

__version__ = "0.1.0"

__all__ = [
    "AuditResult",
    "audit",
    "Box",
    "BoundpropError",
    "Certificate",
    "CertificateInvalid",
    "CheckResult",
    "Constants",
    "InputSet",
    "L2Ball",
    "LinfBall",
    "OutputBounds",
    "InputShapeError",
    "ModelLoadError",
    "Network",
    "Node",
    "UnsupportedModelError",
    "Verdict",
    "__version__",
    "certify",
    "check",
    "load_certificate",
    "constants",
    "load",
    "load_vnnlib",
    "output_bounds",
    "supported_onnx_ops",
    "verify",
]
