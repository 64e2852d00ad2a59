"""Gauss-Newton through onnxruntime: ``bp.gn.Problem`` (the model as a black box, Jacobians by
batched finite differences), ``bp.gn.solve`` (regularized GN / Levenberg-Marquardt, dual or
primal steps, random-subspace GN), and its uses (input reconstruction, layer fitting, the
certified safeguard step). See ``../shared/refs/gn.md`` for the measured facts behind it.

Modules: ``oracle`` (``Problem``: targets, residuals, finite-difference Jacobians and jvps) on
``evaluation`` (the model run by onnxruntime in as few runs as possible) on ``onnx_graph`` and
``weight_batching`` (the ONNX rewrites); ``layers`` (the one table of layer op types);
``solver`` (``solve``) with ``steps`` (the GN/GGN step formulas), ``model`` (objective and
damped local model) and ``result`` (``Result``, in boundprop's and scipy.optimize's names);
``uses``; ``command`` (the CLI).

Names are imported on first use, so ``boundprop gn --help`` and the CLI stay light."""

from __future__ import annotations

import importlib

_WHERE = {
    "Problem": "oracle",
    "Result": "result", "gn_direction": "steps", "gn_directions_svd": "steps",
    "solve": "solver",
    "certified_step": "uses", "fit_layers": "uses", "last_layer_names": "layers",
    "reconstruct_input": "uses",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"boundprop.gn.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'boundprop.gn' has no attribute '{name}'")
