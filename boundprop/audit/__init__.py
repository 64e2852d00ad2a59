"""``boundprop audit CERT.json MODEL``: empirical lower bounds for every certified quantity.

A certificate states upper bounds: output bounds, ℓ, L, B (and per IR node). The audit searches
for inputs (or, for ``wrt="params"`` certificates, parameter perturbations) that come close to
them, and reports ``certified / empirical`` (the tightness ratio, ≥ 1 unless violated). A
violation (exit status 1) is an empirical value beyond a certified one.

What is measured, and why each empirical value is an honest lower bound
----------------------------------------------------------------------
Every empirical value is computed from *function values* of boundprop's float64 evaluator of
the IR (``net(x)``, ``net.evaluate_all(x)``, itself tested against onnxruntime), at points that
are checked to lie in the certified set (for ℓ∞ balls an inner box rounded inward, for ℓ2 balls
radius × (1 − 1e-10)). Jacobians (an IR backward pass, or finite differences) only *guide* the
searches; they never enter a reported value:

* output bounds: the min/max of each output over uniform samples, every box corner when at most
  12 coordinates are free, and a projected gradient ascent/descent (signed steps for boxes,
  normalised steps for balls) on the output coordinates whose empirical extremes are closest to
  their certified bounds (up to 16 coordinate/direction pairs).
* ℓ: pair ratios ‖f(x) − f(y)‖_p / ‖x − y‖_p over random pairs, near pairs at many scales, and
  "Jacobian pairs" x ∓ t·v where v is the maximising direction of ‖J(x)‖_p at points found by a
  random-search ascent on ‖J‖. A pair ratio is a lower bound of any Lipschitz constant.
* L: second differences ‖f(x+h) + f(x−h) − 2f(x)‖ / ‖h‖² and mixed differences
  ‖f(x+h+u) − f(x+h) − f(x+u) + f(x)‖ / (‖h‖‖u‖); both are ≤ L when J is L-Lipschitz (Taylor
  with integral remainder), for any h, u, so they are lower bounds of L. u is the maximising
  direction of J(x+h) − J(x) found by a random search. Skipped when L is certified ``inf``.
* B: the max of ‖f(x)‖_p over the samples and an ascent on ‖f‖_p.
* per IR node k: ``layer[k].bound`` (max ‖node‖), ``layer[k].lipschitz`` and
  ``layer[k].smoothness`` (the same pairs and differences, on the node's value), and
  ``layer[k].width`` (the largest observed range of one entry, against the certified largest
  interval width).
* global certificates (no input set): the samples come half from the model's declared input set
  (``[-1, 1]`` if none) and half from that box widened 4× about its centre; pairs and
  differences anywhere are valid for global constants.
* ``wrt="params"``: the variable is the vector of every dense/conv layer's (ΔW, Δb), each layer
  in its Frobenius ball of radius ``param_radius`` (the IR ops are copied with perturbed
  weights), for inputs in the certificate's set (up to 8 of them: the set's centre and random
  points; a data batch is one point). Output bounds, ℓ, L, B, the per-node rows and, when the
  certificate holds a loss with its targets, ``objective.lipschitz``/``objective.smoothness``
  (ratios and differences of the loss) are audited; x is not optimised jointly with θ.

Float tolerance. The IR evaluation is float64; its rounding error per entry is taken as
``EVAL_ERR`` (1e-10) × the largest magnitude M of any node value seen (float64 evaluation errors
are ~ fan-in × 1e-16 × the magnitudes involved, orders of magnitude below). That noise is
subtracted from the numerator of every ratio/difference before dividing (so L = 0 on an affine
piece stays 0), and an output bound is violated only when the observed value passes it by more
than ``EVAL_ERR`` × (M + |bound|). A constant is violated when its (noise-reduced) empirical
value exceeds the certified one by a relative 1e-9 (the rounding of the norms/denominators).

onnxruntime cross-check. The real model is run in float32 by onnxruntime on up to 256 sampled
points and every output witness (inputs rounded to float32, the IR evaluated at the same
rounded points); the row ``onnxruntime`` reports the largest deviation against the tolerance
1e-3 × (max|output| + 0.01·M), a violation if exceeded (the IR would not be the model). Output
rows also show ``ort``: onnxruntime's value at the IR's witness point (not used for the verdict:
a certificate of the real-arithmetic function may be passed by float32 rounding at a tight
bound; ``certify --execution float32`` bounds cover that).

Ratios: ``certified / empirical`` for constants and widths (``inf`` when the empirical value is
0, 1 when both are 0); for output bounds the distances from the midpoint m of the observed
range, ``(upper − m) / (max − m)`` and ``(m − lower) / (m − min)``.

Modules: ``regions`` (the searched set), ``function`` (z ↦ node values, Jacobian guides),
``stats`` (running maxima, noise), ``searches`` (the phases), ``rows`` (verdicts and the
onnxruntime row), ``result`` (rows as text / JSON), ``run`` (:func:`audit`), ``command`` (CLI);
``jacobian_search`` (the largest ‖J(x)‖ over a set: lower bounds of local Lipschitz constants,
used by benchmarks/lipschitz_vs_anchors.py).
"""

from boundprop.audit.command import register
from boundprop.audit.result import AuditResult, AuditRow
from boundprop.audit.run import audit

__all__ = ["AuditResult", "AuditRow", "audit", "register"]
