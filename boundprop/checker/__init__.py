"""Independent checker: ``bp.check(cert, model)`` / ``boundprop check CERT MODEL``.

It re-verifies a certificate without trusting the numbers in it, item by item, and stops at the
first item that fails. Each item says *how* it was checked:

- ``independent``: by the checker's kernel (:mod:`boundprop.checker.kernel`: standard library,
  numpy, scipy, jsonschema and :mod:`boundprop.exact` only, enforced by a test), an argument
  different from the prover's. Operator norms: a claimed ℓ2 bound u of an affine map A is
  accepted iff u²I − AᵀA is positive definite, shown by a float Cholesky factorisation of a
  shifted matrix whose shift covers the rounding of AᵀA and of the factorisation (Demmel's
  bound; :func:`spectral_bound_holds`) on the op's witness matrix (``norm_witness_matrix``:
  the materialised matrix; ℓ∞/ℓ1 operator norms, for which the ops give no witness, are
  re-derived by the op's rule, ``recomputed``). A ``lipschitz_lmi`` claim (global ℓ2 of an
  MLP chain) is accepted iff the kernel shows the LipSDP-Neuron matrix built from the model's
  chain (its composed matrices and slope restrictions, by the prover's ``mlp_chain``) and the
  certificate's ``lmi_multipliers`` positive definite (:func:`neuron_lmi_holds`, on
  :func:`psd_holds`: a shifted Cholesky covering the assembly's and the factorisation's
  rounding). The input radius R and the enclosure norms B̄
  are recomputed from the sets with the kernel's own rounding; the model file's sha256
  (external data included) by the kernel's own reader.
- ``exact``: compositions. Every per-layer formula (and the global ones, composed here) is
  evaluated in exact rational interval arithmetic (:mod:`boundprop.exact`) at the *claimed*
  values of its inputs; the claimed value must be ≥ the exact upper end. The formulas are
  monotone (increasing in every constant except the batch-norm ε and variance lower bound,
  which must not be claimed larger than the model's), so claimed constants that are upper
  bounds give claimed results that are upper bounds.
- ``recomputed``: by boundprop's own code, re-run on the certificate's inputs — the model
  imported, the enclosures re-propagated from the certificate's input set, activation, pooling
  and normalisation constants re-derived by each op's rule on them, the Jacobian enclosure
  (when the claimed ℓ relies on it), operator norms without a witness matrix (ℓ∞/ℓ1, and
  ℓ2 of convolutions too large to materialise), output samples of real execution evaluated by
  the IR in float64 (a float32 execution claim is sampled through onnxruntime on the ONNX
  file: ``independent``). Every such prover function is one method of
  :class:`boundprop.checker.recomputed.Prover`; ``CheckResult.trusted`` lists those a check
  used. These items trust boundprop's code (which its own test suite tries to break), not the
  certificate.

Anything claimed that no item covers (an unknown constant) makes the certificate invalid.
Every field is verified except those in :data:`UNVERIFIED_FIELDS` (cosmetic: the tool, the
timing, notes, the meaning of names, the model's path) and keys the schema does not define;
``CheckResult.unverified`` lists those present, and ``boundprop check``/``report`` show them
as not verified. In particular: ``local`` must be what the set implies (a global claim is
checked only without a set, over all inputs); a ``float32`` execution claim is re-propagated
with float32 rounding and its samples are run through onnxruntime in float32 with no
tolerance; ``lipschitz_product`` must be ≥ the exact layer product; ``lipschitz_enclosure``
and ``Jenc``, ``Jlmi`` (upper bounds of ℓ) ≥ the verified product, the verified LipSDP-Neuron
bound or the re-derived Jacobian enclosure; ``lmi_multipliers`` without ``lipschitz_lmi`` are
rejected; the global ``smoothness`` ≥ the output node's verified composed L or the re-derived
curvature bound (:mod:`boundprop.domains.curvature`), ``smoothness_curvature`` and ``Lcurv``
≥ the latter;
every layer's ``op_lipschitz``/``op_smoothness`` ≥ its op rule's value; the input layer's
constants ≥ those of the identity (1 or 0, 0, R).

The public names are loaded on first use (PEP 562), so that :mod:`boundprop.certificate` can
use the kernel's schema validation without importing the checker's prover side.
"""

from __future__ import annotations

import importlib

# Public name -> the submodule that defines it (imported when the name is first looked up).
_LAZY = {
    "check": "boundprop.checker.run",
    "CheckResult": "boundprop.checker.result", "CheckItem": "boundprop.checker.result",
    "CertificateInvalid": "boundprop.checker.result",
    "spectral_bound_holds": "boundprop.checker.kernel",
    "LOWER_BOUND_STEMS": "boundprop.checker.named",
    "UNVERIFIED_FIELDS": "boundprop.checker.fields",
    "schema_fields": "boundprop.checker.fields",
    "document_fields": "boundprop.checker.fields",
    "unverified_fields": "boundprop.checker.fields",
    "schema": "boundprop.certificate", "schema_errors": "boundprop.certificate",
    "register": "boundprop.checker.command",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'boundprop.checker' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
