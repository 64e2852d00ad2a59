"""boundprop: sound bounds, Lipschitz and smoothness certificates for ONNX networks.

The public names are loaded on first use (PEP 562): ``import boundprop`` (and with it
``boundprop --help``) imports none of onnx, onnxruntime, sympy or scipy; ``bp.load`` imports
the importer when it is first looked up. ``__all__`` and ``dir(boundprop)`` list every name.
"""

from __future__ import annotations

import importlib
import sys
import types

from boundprop.errors import (
    BoundpropError,
    BoundpropNote,
    InputShapeError,
    ModelLoadError,
    UnsupportedModelError,
)

__version__ = "0.1.0"

# Public name -> the module that defines it (imported when the name is first looked up).
_LAZY = {
    "OutputBounds": "boundprop.analysis", "output_bounds": "boundprop.analysis",
    "AuditResult": "boundprop.audit", "audit": "boundprop.audit",
    "Certificate": "boundprop.certificate", "load_certificate": "boundprop.certificate",
    "certify": "boundprop.certify",
    "CertificateInvalid": "boundprop.checker", "CheckResult": "boundprop.checker",
    "check": "boundprop.checker",
    "Constants": "boundprop.constants", "constants": "boundprop.constants",
    "load": "boundprop.importer",
    "LocalLipschitz": "boundprop.lipschitz", "local_lipschitz": "boundprop.lipschitz",
    "Network": "boundprop.ir", "Node": "boundprop.ir",
    "supported_onnx_ops": "boundprop.ops",
    "Box": "boundprop.sets", "InputSet": "boundprop.sets", "L2Ball": "boundprop.sets",
    "LinfBall": "boundprop.sets",
    "Verdict": "boundprop.verifier", "verify": "boundprop.verifier",
    "load_vnnlib": "boundprop.vnnlib",
}

# Subpackages reachable as attributes without an explicit import (bp.gn.Problem, bp.gn.solve).
_SUBPACKAGES = ("gn",)

# Functions named like the submodule that defines them: ``bp.audit`` is the function
# boundprop.audit.audit, whether or not the submodule boundprop.audit was imported before.
_FUNCTIONS_NAMED_LIKE_THEIR_MODULE = frozenset({"audit", "certify", "constants"})

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
    "LocalLipschitz",
    "OutputBounds",
    "InputShapeError",
    "BoundpropNote",
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
    "local_lipschitz",
    "output_bounds",
    "supported_onnx_ops",
    "verify",
]


def __getattr__(name: str):
    """The public name ``name``, its module imported on first use (then cached here)."""
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))


class _Package(types.ModuleType):
    """This package's module type: importing a submodule sets the package's attribute of the
    same name to the submodule (import system rule); for boundprop.audit, .certify and
    .constants that binding is skipped, so ``bp.audit`` stays the function (as before names
    were loaded lazily)."""

    def __setattr__(self, name: str, value) -> None:
        if name in _FUNCTIONS_NAMED_LIKE_THEIR_MODULE and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
