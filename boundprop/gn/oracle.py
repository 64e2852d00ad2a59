"""The Jacobian oracle of the Gauss-Newton solver: an ONNX model run by onnxruntime as a black
box (:class:`boundprop.gn.evaluation.ModelEvaluator`), with Jacobians from batched finite
differences (``../shared/refs/gn.md`` §2).

``Problem`` fixes what is fitted (the model's input, or chosen initializers made overridable
graph inputs), the targets and the loss, and offers point evaluations (``outputs``,
``residuals``), directional derivatives (``jvp``) and the full Jacobian (``jacobian``) with
every perturbed point of one call evaluated in as few onnxruntime runs as possible. Steps
follow refs §2: central ``h = ε^(1/3)(1+‖w‖)/‖v‖``, forward ``h = √ε(1+‖w‖)/‖v‖`` with ε the
machine epsilon of the graph's dtype, and the *realized* perturbation (the dtype-rounded point
minus the dtype-rounded base) divides the differences.
"""

from __future__ import annotations

import os

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.gn.evaluation import ModelEvaluator
from boundprop.importer import load

__all__ = ["Problem"]


def _norms(v: np.ndarray) -> np.ndarray:
    """Euclidean norm of each row."""
    return np.sqrt(np.einsum("ij,ij->i", v, v))


class Problem(ModelEvaluator):
    """A least-squares / classification fit through onnxruntime: variables w (flattened,
    float64, size p) are either the model's input ("input") or chosen initializers (names),
    the rest fixed.

    - ``variables="input"``: w is the model's (single float) graph input; ``x0`` its start
      (default ``inputs`` if given, else zeros).
    - ``variables=[names]``: those initializers become overridable graph inputs of one
      session; ``inputs`` is the fixed data batch (an array for the single data input, or a
      dict name → array); w0 = the initializers' values concatenated in the given order.
      A data batch of N rows on a graph with a fixed batch N0 runs as one batch of N rows when
      the batch axis can be freed (verified), else in runs of N0 rows.
    - ``targets``: squared loss → array broadcastable to (or of the size of) the output;
      cross_entropy → integer class per output row (logits over the last axis).
    - ``regularization``: ridge weight λ on ‖w − w0‖²/2 (stored for the solver).
    - ``dtype``: "float32" runs the graph as exported; "float64" a float64 copy (error naming
      the op when onnxruntime lacks a double kernel); "auto" the float64 copy when it loads,
      runs and agrees with the exported graph, else the exported graph.
    - ``difference``: "central" (default) or "forward" finite differences.

    Counters: ``forward_passes`` (point evaluations) and ``ort_calls`` (``session.run``
    calls; a batched run of K points counts once) start at 0 after construction; the
    construction's own runs (dtype and batching checks) are in ``setup_ort_calls``.
    ``notes`` says which fallbacks were taken; ``batched`` whether several points share one
    run; ``batched_weights`` whether initializer variables run K points at once through the
    rewritten graph (:mod:`boundprop.gn.weight_batching`; chunked to ``memory_budget``).
    ``step_scale`` (default 1) multiplies the finite-difference steps of refs §2 (for
    ReLU/MaxPool graphs in float32 a smaller step crosses fewer kinks).
    """

    def __init__(self, model: str | os.PathLike, variables: str | list[str] = "input",
                 targets=None, inputs=None, loss: str = "squared",
                 regularization: float = 0.0, x0=None, dtype: str = "auto",
                 difference: str = "central", memory_budget: int = 512 * 2**20,
                 threads: int | None = None) -> None:
        if loss not in ("squared", "cross_entropy"):
            raise BoundpropError(f"unknown loss '{loss}'; use 'squared' or 'cross_entropy'")
        if difference not in ("central", "forward"):
            raise BoundpropError(f"unknown difference '{difference}'; use 'central' or "
                                 "'forward'")
        if not (np.isfinite(regularization) and regularization >= 0):
            raise BoundpropError(f"regularization must be a finite number ≥ 0, got "
                                 f"{regularization}")
        self.loss = loss
        self.regularization = float(regularization)
        self.difference = difference
        self.step_scale = 1.0
        self._net = None
        super().__init__(model, variables, inputs=inputs, x0=x0, dtype=dtype,
                         memory_budget=memory_budget, threads=threads)
        self._set_targets(targets)
        self.ort_calls, self.forward_passes = 0, 0

    def _residuals_of(self, Y: np.ndarray) -> np.ndarray:
        """Outputs (K, *output_shape) → residual rows (K, q) of the loss."""
        Y = Y.reshape(Y.shape[0], -1)
        return Y - self._target_flat if self.loss == "squared" else Y

    def residuals(self, W) -> np.ndarray:
        """(K, q): squared loss: outputs − targets, flattened; cross_entropy: the logits."""
        return self._residuals_of(self.outputs(W))

    # --------------------------------------------------------------------- derivatives
    def _base(self, w) -> np.ndarray:
        """w flattened and rounded to the graph dtype (as float64): the base point."""
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if w.size != self.p:
            raise BoundpropError(f"w must have {self.p} entries, got {w.size}")
        return w.astype(self._np_dtype).astype(np.float64)

    def _scale(self, wb: np.ndarray) -> float:
        """‖v‖·h: ε^(1/3)(1 + ‖w‖) (central) or √ε(1 + ‖w‖) (forward), times step_scale."""
        power = 1 / 3 if self.difference == "central" else 1 / 2
        return self.step_scale * self.eps ** power * (1.0 + float(np.linalg.norm(wb)))

    def jvp(self, w, V, return_directions: bool = False):
        """V (k, p) → (k, q): the residual map's directional derivatives at w along the rows
        of V, from 2k (central) or k+1 (forward) points in one batched evaluation.

        The step along v is h = ε^(1/3)(1+‖w‖)/‖v‖ (central) or √ε(1+‖w‖)/‖v‖ (forward).
        The points are rounded to the graph dtype; the differences are divided by the
        component along v of the realized perturbation. With ``return_directions=True`` also
        returns the realized directions D (k, p) (D ≈ V; the result is the difference
        quotient along D exactly, which keeps J·D consistent for subspace methods)."""
        wb = self._base(w)
        V = np.asarray(V, dtype=np.float64)
        single = V.ndim == 1
        V = V[None] if single else V
        if V.ndim != 2 or V.shape[1] != self.p:
            raise BoundpropError(f"directions must have shape (k, {self.p}), got "
                                 f"{list(V.shape)}")
        k = V.shape[0]
        nv = _norms(V)
        nv_safe = np.where(nv > 0, nv, 1.0)
        h = self._scale(wb) / nv_safe
        dt = self._np_dtype
        plus = (wb + h[:, None] * V).astype(dt)
        if self.difference == "central":
            minus = (wb - h[:, None] * V).astype(dt)
            delta = plus.astype(np.float64) - minus.astype(np.float64)
            pts = np.concatenate([plus, minus])
            Y = self._evaluate(lambda a, b: pts[a:b], 2 * k)
            R = Y.reshape(2 * k, -1)
            diff = R[:k] - R[k:]
        else:
            delta = plus.astype(np.float64) - wb
            base = wb.astype(dt)[None]
            pts = np.concatenate([base, plus])
            Y = self._evaluate(lambda a, b: pts[a:b], k + 1)
            R = Y.reshape(k + 1, -1)
            diff = R[1:] - R[:1]
        along = np.einsum("ij,ij->i", delta, V) / nv_safe ** 2  # δ = along·v + (⊥ part)
        along = np.where(nv > 0, along, 1.0)
        if np.any(along == 0):
            raise BoundpropError("a finite-difference step vanished in the graph dtype")
        JV = diff / along[:, None]
        JV[nv == 0] = 0.0
        if return_directions:
            D = delta / along[:, None]
            return (JV[0], D[0]) if single else (JV, D)
        return JV[0] if single else JV

    def jacobian(self, w) -> tuple[np.ndarray, np.ndarray]:
        """(J (q, p), r (q,)): the residual map's Jacobian at w by coordinate differences
        (central: 2p+1 points, forward: p+1, the base point in the same batch), each column
        divided by its realized step δ_j; r = the residuals at w (rounded to the dtype)."""
        wb = self._base(w)
        p, dt = self.p, self._np_dtype
        h = self._scale(wb)
        base = wb.astype(dt)
        up = (wb + h).astype(dt)
        d_up = up.astype(np.float64) - wb
        if self.difference == "central":
            down = (wb - h).astype(dt)
            d_down = down.astype(np.float64) - wb
            count, sides = 2 * p + 1, ((1, up), (p + 1, down))
        else:
            count, sides = p + 1, ((1, up),)

        def make(a: int, b: int) -> np.ndarray:
            rows = np.broadcast_to(base, (b - a, p)).copy()
            idx = np.arange(a, b)
            for lo, vals in sides:
                sel = (idx >= lo) & (idx < lo + p)
                j = idx[sel] - lo
                rows[np.nonzero(sel)[0], j] = vals[j]
            return rows

        Y = self._evaluate(make, count)
        R = self._residuals_of(Y)
        r = R[0]
        if self.difference == "central":
            J = (R[1:p + 1] - R[p + 1:]).T / (d_up - d_down)[None]
        else:
            J = (R[1:] - r[None]).T / d_up[None]
        return J, r.copy()

    # ------------------------------------------------------------------------ reference
    def exact_jacobian(self, w) -> np.ndarray:
        """(q, p) Jacobian of the residual map at w from boundprop's float64 IR (a backward
        pass of each node's Jacobian rule on the degenerate box at w; a Clarke element at
        kinks). Input variables only."""
        if self.variables != "input":
            raise NotImplementedError("exact_jacobian is available for variables='input' only")
        if self._net is None:
            self._net = load(self.model, input_shape=self.input_shape)
        net = self._net
        x = np.asarray(w, dtype=np.float64)
        if x.size != self.p:
            raise BoundpropError(f"w must have {self.p} entries, got {x.size}")
        x = x.reshape(net.input_shape)
        values = net.evaluate_all(x)
        k = int(np.prod(net.output_shape))
        acc = {net.output: np.eye(k).reshape(k, *net.output_shape)}
        for i in range(len(net.nodes) - 1, 0, -1):
            if i not in acc:
                continue
            node = net.nodes[i]
            c = acc.pop(i)
            boxes = [(values[j], values[j]) for j in node.inputs]
            with np.errstate(invalid="ignore", over="ignore"):
                parts = node.op.jacobian_backward(c, np.zeros_like(c), boxes)
            if parts is None:
                raise NotImplementedError(f"no Jacobian rule for {node.op.kind} in the IR")
            for j, (cj, _) in zip(node.inputs, parts):
                acc[j] = acc[j] + cj if j in acc else cj
        if 0 not in acc:
            return np.zeros((k, self.p))
        return acc[0].reshape(k, -1)

    # ------------------------------------------------------------------------ targets
    def _set_targets(self, targets) -> None:
        """``targets`` checked against the output and the loss (see the class docstring)."""
        shape = self.output_shape
        self.q = int(np.prod(shape))
        if self.loss == "squared":
            if targets is None:
                t = np.zeros(shape)
            else:
                t = np.asarray(targets, dtype=np.float64)
                if t.shape != shape:
                    try:
                        t = np.broadcast_to(t, shape)
                    except ValueError:
                        if t.size != self.q:
                            raise BoundpropError(
                                f"targets of shape {list(t.shape)} do not fit the output "
                                f"'{self.output_name}' of shape {list(shape)}") from None
                        t = t.reshape(shape)
            if not np.all(np.isfinite(t)):
                raise BoundpropError("targets have NaN or infinite entries")
            self.targets = np.array(t, dtype=np.float64)
            self._target_flat = self.targets.reshape(-1)
        else:
            if targets is None:
                raise BoundpropError("cross_entropy needs targets: a class index per output row")
            if len(shape) == 0:
                raise BoundpropError(f"cross_entropy needs logits over a last axis; the output "
                                     f"'{self.output_name}' is a scalar")
            t = np.asarray(targets)
            rows = shape[:-1]
            if t.size != int(np.prod(rows)):
                raise BoundpropError(f"cross_entropy targets must hold one class per output row:"
                                     f" {int(np.prod(rows))} for the output of shape "
                                     f"{list(shape)}, got shape {list(t.shape)}")
            if not (np.issubdtype(t.dtype, np.integer) or (
                    np.issubdtype(t.dtype, np.floating) and np.all(t == np.round(t)))):
                raise BoundpropError("cross_entropy targets must be integer class indices")
            t = t.astype(np.int64).reshape(rows)
            if t.size and (t.min() < 0 or t.max() >= shape[-1]):
                raise BoundpropError(f"cross_entropy targets must lie in [0, {shape[-1] - 1}]")
            self.targets = t
            self._target_flat = None

    def __repr__(self) -> str:
        what = "input" if self.variables == "input" else ", ".join(self.variables)
        return (f"Problem({self.model!r}, variables={what}, p={self.p}, q={self.q}, "
                f"{self.loss}, {self.dtype}, {'batched' if self._batched else 'looped'})")
