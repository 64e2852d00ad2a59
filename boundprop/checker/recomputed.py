"""The checker's trust boundary: every call it makes into boundprop's prover code.

Each method of :class:`Prover` is one named use of prover code, and records its name in
``Prover.used`` (shown as ``CheckResult.trusted`` by ``boundprop check`` and in its JSON). Items
whose verdict rests on one of these are labelled ``recomputed``; ``independent`` items rest on
:mod:`boundprop.checker.kernel` only (the operator-norm witness matrix is the op's own matrix:
its weights, or the map applied to unit vectors); ``exact`` items on :mod:`boundprop.exact`.

The checker writes nothing into prover objects: operator norms it has verified reach the op's
rule as ``RuleContext(operator_norms=...)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from boundprop.analysis import output_bounds
from boundprop.constants import jacobian_enclosure_norm, node_symbols, param_ball_intervals
from boundprop.domains.curvature import curvature_smoothness
from boundprop.domains.lipsdp import mlp_chain
from boundprop.errors import BoundpropError
from boundprop.importer import load
from boundprop.ops.base import AffinePrimitive
from boundprop.ops.rules import RuleContext, node_tags
from boundprop.runtime import OrtModel
from boundprop.sets import InputSet, input_set_from_json


class Prover:
    """The prover functions one check uses; ``used`` lists them in first-use order."""

    def __init__(self) -> None:
        self.used: list[str] = []

    def _use(self, name: str) -> None:
        if name not in self.used:
            self.used.append(name)

    def load_model(self, model: Path, doc_model: dict):
        """The model through boundprop's ONNX importer (the certificate's input/output names
        and input shape); the IR whose nodes the certificate's layers name."""
        self._use("boundprop.importer.load (ONNX import to the IR)")
        return load(model, input_shape=tuple(doc_model["input_shape"]) or None,
                    input_name=doc_model["input"], output_name=doc_model["output"])

    @staticmethod
    def node_list(net) -> list[tuple[str, str, str]]:
        """(name, op kind, op family) of each node of the imported model (the input: input)."""
        return [(n.name, "input", "input") if i == 0 else (n.name, n.op.kind, n.op.family)
                for i, n in enumerate(net.nodes)]

    def input_set(self, doc_set: dict, shape: tuple[int, ...]) -> InputSet:
        self._use("boundprop.sets.input_set_from_json (the certificate's input set)")
        return input_set_from_json(doc_set, shape)

    def enclosures(self, net, s: InputSet, method: str, execution: str = "real") -> list:
        """Every node's interval enclosure over the set by boundprop's bound propagation."""
        self._use(f"boundprop.analysis.output_bounds ({method}, {execution} execution)")
        return output_bounds(net, s, method, execution).layers

    def param_ball_enclosures(self, net, s: InputSet, rho: float) -> list:
        """Every node's enclosure over the set and the parameter ball of radius ρ."""
        self._use("boundprop.constants.param_ball_intervals (parameter-ball enclosures)")
        return param_ball_intervals(net, s, rho)

    def evaluate(self, net, xs: np.ndarray) -> np.ndarray:
        """The outputs at the points ``xs`` by the IR's float64 evaluation, flattened per point."""
        self._use("boundprop.ir.Network.__call__ (float64 evaluation of the IR)")
        return net(xs).reshape(len(xs), -1)

    def onnxruntime_outputs(self, model: Path, doc_model: dict, shape, xs) -> np.ndarray:
        """The model's outputs at ``xs`` as onnxruntime computes them (float32 inputs),
        flattened per point; a one-line error if onnxruntime cannot run it."""
        self._use("boundprop.runtime.OrtModel (onnxruntime on the ONNX file)")
        try:
            ort = OrtModel(model, doc_model["input"], doc_model["output"], tuple(shape),
                           threads=1)
            return ort(xs).reshape(len(xs), -1)
        except Exception as e:  # onnxruntime raises its own kinds
            raise BoundpropError(f"onnxruntime cannot run {model} to check the float32 "
                                 f"execution claim ({type(e).__name__}: {str(e)[:120]})") \
                from None

    def node_names(self, net) -> tuple[list, list[str]]:
        """The symbols ℓ_k, L_k, B_k of each node and the tags its named constants carry."""
        self._use("boundprop.constants.node_symbols, boundprop.ops.rules.node_tags (names)")
        return node_symbols(net), node_tags([n.name for n in net.nodes])

    @staticmethod
    def has_operator_norm(op) -> bool:
        """Whether the op is affine, with an operator norm A_k among its constants."""
        return isinstance(op, AffinePrimitive)

    def witness_matrix(self, op: AffinePrimitive, norm: str):
        """(matrix, relative entry error, description) against which the kernel re-certifies
        ‖A‖_p, or None (the op's ``norm_witness_matrix``: its materialised matrix, ℓ2 only)."""
        self._use("AffinePrimitive.norm_witness_matrix (the op applied to unit vectors)")
        return op.norm_witness_matrix(norm)

    def constants_rule(self, op, ctx: RuleContext):
        """The op's constants rule (w.r.t. the parameters when ``ctx.wrt == "params"``), with
        the verified norms of ``ctx.operator_norms`` in place of its own."""
        self._use("Primitive.constants_rule (each op's ℓ, L, B rule; the parameter rule "
                  "w.r.t. the parameters)")
        return op.constants_rule(ctx)

    def jacobian_enclosure_norm(self, net, boxes, norm: str) -> tuple[float | None, Any]:
        """‖J‖_p of the Jacobian enclosure over the enclosures (the enclosure method's ℓ)."""
        self._use("boundprop.constants.jacobian_enclosure_norm (Jacobian enclosure)")
        return jacobian_enclosure_norm(net, boxes, norm)

    def curvature_smoothness(self, net, boxes, norm: str) -> tuple[float | None, Any]:
        """The curvature method's bound on L over the enclosures (per-neuron second-order
        chain rule: σ'' ranges, backward Jacobian enclosures, certified spectral norms)."""
        self._use("boundprop.domains.curvature.curvature_smoothness (curvature method)")
        return curvature_smoothness(net, boxes, norm)

    def mlp_chain(self, net):
        """The net as an MLP chain (its composed matrices with error bounds, its activations'
        slope restrictions), or (None, why not): what the LipSDP-Neuron test is run on."""
        self._use("boundprop.domains.lipsdp.mlp_chain (matrices and slope restrictions)")
        return mlp_chain(net)
