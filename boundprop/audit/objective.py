"""The training loss a ``wrt="params"`` certificate states constants of, rebuilt from its
``objective`` entry (loss, reduction, targets) as a function of the network output."""

from __future__ import annotations

import numpy as np


def objective_function(doc: dict, output_shape):
    """(F, note): F maps outputs (n, n_ctx, *out_shape) to the loss per point (n, n_ctx), or
    is None with a note saying why the objective rows are not audited (None when the
    certificate has no objective). Squared: F(y) = ½‖y − t‖² / n; cross-entropy:
    F(y) = Σ_i (logsumexp(y_i) − y_i[t_i]) / n, n the batch size under reduction "mean"."""
    obj = doc.get("objective")
    if not obj:
        return None, None
    targets = obj.get("targets")
    if targets is None:
        return None, "objective rows not audited: the certificate does not hold its targets"
    out_shape = tuple(output_shape)
    t = np.asarray(targets, float)
    n = out_shape[0] if len(out_shape) > 1 else 1
    div = float(n) if obj.get("reduction", "mean") == "mean" else 1.0
    if obj.get("loss") == "squared":
        t = t.reshape(out_shape)

        def squared(y):
            d = y - t
            return 0.5 * (d * d).reshape(*y.shape[:2], -1).sum(axis=-1) / div
        return squared, None
    if obj.get("loss") == "cross_entropy":
        classes = out_shape[-1]
        idx = t.reshape(-1).astype(int)

        def cross_entropy(y):
            z = y.reshape(*y.shape[:2], -1, classes)
            mx = z.max(axis=-1, keepdims=True)
            lse = (mx + np.log(np.exp(z - mx).sum(axis=-1, keepdims=True)))[..., 0]
            pick = np.take_along_axis(z, idx[None, None, :, None], axis=-1)[..., 0]
            return (lse - pick).sum(axis=-1) / div
        return cross_entropy, None
    return None, f"objective rows not audited: unknown loss '{obj.get('loss')}'"
