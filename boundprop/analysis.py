"""The abstract interpreter: one topological pass over the IR, each node's rule mapping its
inputs' annotations to its own. It knows nothing about particular ops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.ops.base import AffinePrimitive, PermutationPrimitive, box_max_abs
from boundprop.rounding import FLOAT32_SAFE_MAX
from boundprop.sets import InputSet, L2Ball

METHODS = ("interval", "linear")


@dataclass
class OutputBounds:
    """Certified bounds: every output of the network on the input set lies in [lower, upper].

    ``layers`` holds, per IR node, its enclosure (without the sample axis).
    """

    lower: np.ndarray
    upper: np.ndarray
    method: str
    input_set: InputSet
    layers: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    elapsed_s: float = 0.0
    execution: str = "real"
    note: str | None = None  # e.g. which node may overflow float32 (bounds then ±inf)

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower


def _l2_first_affine(net: Network, ball: L2Ball, bounds: list) -> int:
    """Exact image bounds of an ℓ2 ball through the leading isometries/projections and the first
    affine node: output_i ∈ A(c)_i ± r‖row_i(A)‖₂ (instead of through the bounding box).
    Returns the index of the last node handled this way (0 if none)."""
    from boundprop.rounding import gamma, round_down, round_up, widen

    k = 1
    c = ball.center[None]
    while k < len(net.nodes):
        node = net.nodes[k]
        if node.inputs != (k - 1,) or not isinstance(node.op, AffinePrimitive):
            return k - 1
        if isinstance(node.op, PermutationPrimitive) and type(node.op).__name__ in (
                "Reshape", "Transpose", "Slice"):
            c = node.op.evaluate(c)
            bounds.append((round_down(c[0] - ball.radius), round_up(c[0] + ball.radius)))
            k += 1
            continue
        op = node.op
        sq = getattr(op, "sq_linear", None)
        if sq is None:
            return k - 1
        yc = op.evaluate(c)
        row_norm = np.sqrt(sq(np.ones_like(c)) * (1 + gamma(op.fan_in + 2)))
        mag = op.abs_linear(np.abs(c)) + (0 if op.offset is None else np.abs(op.offset))
        rad = round_up(ball.radius * row_norm * (1 + 4 * 2.0**-53)) + gamma(op.fan_in + 2) * mag
        lo, hi = widen(yc, yc, rad)
        bounds.append((lo[0], hi[0]))
        return k
    return k - 1


EXECUTIONS = ("real", "float32")


def _check_execution(execution: str, net: Network | None = None) -> None:
    """Refuse an unknown execution, and float32 execution of a model that computes in
    float16/bfloat16 (whose rounding the float32 model does not bound)."""
    if execution not in EXECUTIONS:
        raise BoundpropError(f"unknown execution '{execution}'; use 'real' (the real-arithmetic "
                             "function) or 'float32' (also float32 evaluation, as onnxruntime)")
    if execution == "float32" and net is not None and net.low_precision:
        raise BoundpropError(
            f"{net.source or 'network'}: {net.low_precision}, so onnxruntime rounds to that "
            "format, which execution 'float32' does not model; use execution 'real' (casts to "
            "float16 that return to float32 are modelled)")


def input_box(s: InputSet, execution: str) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box analyses start from (float32 mode: after rounding inputs to float32)."""
    if execution == "float32":
        from boundprop.rounding import float32_input_box

        return float32_input_box(s.lower, s.upper)
    return s.lower, s.upper


def sanitize(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A NaN endpoint (∞ − ∞ on unbounded enclosures) means "no information": ∓∞."""
    if np.isnan(lo).any() or np.isnan(hi).any():
        lo, hi = np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), np.inf, hi)
    return lo, hi


ENGINES = ("auto", "numpy", "onnxruntime")
# ``engine="auto"`` runs the interval pass through onnxruntime from this many multiply-adds on.
AUTO_ORT_MULTIPLY_ADDS = 10**7


def _interval_engine(net: Network, s: InputSet, execution: str, engine: str) -> str:
    """Which engine computes the interval pass: onnxruntime (``boundprop.fast_interval``: the
    same enclosure up to float32 rounding margins, ~2× a forward pass) or numpy (float64)."""
    if engine not in ENGINES:
        raise BoundpropError(f"unknown interval engine '{engine}'; use one of "
                             f"{', '.join(ENGINES)}")
    if engine == "numpy":
        return "numpy"
    if engine == "onnxruntime":
        if execution != "real":
            from boundprop.domains.interval_ort import FastIntervalUnavailable

            raise FastIntervalUnavailable("the onnxruntime engine bounds real arithmetic only "
                                          "(execution='real')")
        return "onnxruntime"
    from boundprop.domains.interval_ort import multiply_adds, unsupported_primitives

    ok = (execution == "real" and not isinstance(s, L2Ball) and not unsupported_primitives(net)
          and multiply_adds(net) > AUTO_ORT_MULTIPLY_ADDS)
    return "onnxruntime" if ok else "numpy"


def interval_bounds(net: Network, input_set: InputSet, execution: str = "real",
                    engine: str = "auto") -> list[tuple[np.ndarray, np.ndarray]]:
    """Interval (IBP) enclosure of every node over the input set, in order of ``net.nodes``.

    ``execution="float32"``: each enclosure also contains the float32 evaluation (each node's
    enclosure widened by its float32 error bound, computed from its widened inputs).

    ``engine``: ``"numpy"`` (float64, every primitive), ``"onnxruntime"`` (the whole pass as
    one float32 onnxruntime graph, rigorously rounded — :mod:`boundprop.fast_interval`; real
    execution, the set's bounding box) or ``"auto"`` (onnxruntime when every primitive has a
    rule, the model has more than ``AUTO_ORT_MULTIPLY_ADDS`` multiply-adds, execution is real
    and the set is not an ℓ2 ball; numpy otherwise, or if onnxruntime cannot finish soundly,
    e.g. on float32 overflow)."""
    from boundprop.rounding import widen

    _check_execution(execution, net)
    s = input_set.fit(net.input_shape)
    net.check_memory("interval")
    if _interval_engine(net, s, execution, engine) == "onnxruntime":
        from boundprop.domains.interval_ort import FastIntervalUnavailable, interval_bounds_ort

        try:
            return [sanitize(lo, hi) for lo, hi in interval_bounds_ort(net, s)]
        except FastIntervalUnavailable:
            if engine == "onnxruntime":
                raise
    bounds: list[tuple[np.ndarray, np.ndarray]] = [input_box(s, execution)]
    start = 0
    if isinstance(s, L2Ball) and execution == "real":
        start = _l2_first_affine(net, s, bounds)
    # float32: nodes whose float32 evaluation may overflow, and everything downstream of them
    # (inf − inf = NaN), have no finite enclosure: their bounds are (−∞, ∞).
    overflow = set()
    if execution == "float32" and not box_max_abs(bounds[0]) <= FLOAT32_SAFE_MAX:
        overflow.add(0)
        bounds[0] = unbounded(net.input_shape)
    for k, node in enumerate(net.nodes[start + 1:], start=start + 1):
        if overflow.intersection(node.inputs):
            overflow.add(k)
            bounds.append(unbounded(node.shape))
            continue
        boxes = [(bounds[i][0][None], bounds[i][1][None]) for i in node.inputs]
        lo, hi = node.op.interval(*boxes)
        if execution == "float32":
            err = node.op.float32_error(boxes, (lo, hi))
            lo, hi = widen(lo, hi, err)
            if not node.op.float32_overflow_free(boxes, (lo, hi), err):
                overflow.add(k)
                lo, hi = unbounded((1, *node.shape))
        bounds.append(sanitize(lo[0], hi[0]))
    return bounds


def unbounded(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(−∞, ∞) everywhere: no enclosure (e.g. float32 evaluation may overflow)."""
    return np.full(shape, -np.inf), np.full(shape, np.inf)


def float32_overflow_note(net: Network, layers: list[tuple[np.ndarray, np.ndarray]]
                          ) -> str | None:
    """For float32-mode enclosures: which node first may overflow float32 (its bounds, and
    those of every node downstream, are then infinite), or None."""
    for k, (lo, hi) in enumerate(layers):
        if not np.all(np.isfinite(lo) & np.isfinite(hi)):
            node = net.nodes[k]
            return (f"node '{node.name}' ({node.onnx_op or node.op.kind}) may overflow float32 "
                    f"(|value| beyond {FLOAT32_SAFE_MAX:.3g}) on this input set: its float32 "
                    "outputs and everything downstream are not enclosed (bounds ±inf)")
    return None


def output_bounds(net: Network, input_set: InputSet, method: str = "linear",
                  execution: str = "real", engine: str = "auto") -> OutputBounds:
    """Certified bounds on the network output over ``input_set``.

    ``method="interval"``: interval bound propagation, every op's exact-or-sound interval rule.
    ``method="linear"`` (default): back-substituted linear bounds (CROWN style) where they fit
    the work budget, interval bounds elsewhere; never looser than interval on any node.
    ``execution="real"`` (default) encloses the real-arithmetic function the ONNX graph denotes;
    ``"float32"`` also encloses its float32 evaluation (onnxruntime's), under the rounding model
    of :mod:`boundprop.rounding`. ``engine`` selects how the interval pass runs (see
    :func:`interval_bounds`).
    """
    if method not in METHODS:
        raise BoundpropError(f"unknown bound method '{method}'; use one of {', '.join(METHODS)}")
    _check_execution(execution, net)
    t0 = time.perf_counter()
    if method == "interval":
        layers = interval_bounds(net, input_set, execution, engine)
    else:
        from boundprop.linear import linear_bounds

        layers = linear_bounds(net, input_set, execution=execution)
    lo, hi = layers[net.output]
    return OutputBounds(lower=lo, upper=hi, method=method, input_set=input_set.fit(
        net.input_shape), layers=layers, elapsed_s=time.perf_counter() - t0,
        execution=execution,
        note=float32_overflow_note(net, layers) if execution == "float32" else None)


def interval_matvec(c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Bounds of C·y for y in the box [lo, hi] (C of shape (K, n)), rounded outward."""
    from boundprop.rounding import gamma, widen

    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        # 0·∞ is NaN in floats; rows touching an infinite end get no bound
        lo_f, hi_f = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
        low, up = interval_matvec(c, lo_f, hi_f)
        cp, cn = np.maximum(c, 0.0), -np.minimum(c, 0.0)
        neg_inf = cp @ ~np.isfinite(lo) + cn @ ~np.isfinite(hi)
        pos_inf = cp @ ~np.isfinite(hi) + cn @ ~np.isfinite(lo)
        return np.where(neg_inf != 0, -np.inf, low), np.where(pos_inf != 0, np.inf, up)
    cp, cn = np.maximum(c, 0.0), np.minimum(c, 0.0)
    low = cp @ lo + cn @ hi
    up = cp @ hi + cn @ lo
    mag = np.abs(c) @ np.maximum(np.abs(lo), np.abs(hi))
    return widen(low, up, gamma(c.shape[1] + 1) * mag)


def linear_function_bounds(net: Network, input_set: InputSet, c: np.ndarray,
                           method: str = "linear", execution: str = "real"
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Certified bounds of C·y over the input set, y the flattened network output.

    With ``method="linear"`` C is back-substituted directly (tighter than bounding y first).
    """
    c = np.atleast_2d(np.asarray(c, dtype=np.float64))
    n_out = int(np.prod(net.output_shape))
    if c.shape[1] != n_out:
        raise BoundpropError(f"a linear function of the output needs {n_out} coefficients, got "
                             f"{c.shape[1]}")
    if method == "linear":
        from boundprop.linear import linear_bounds

        _, spec = linear_bounds(net, input_set, spec=c, return_spec=True, execution=execution)
        return spec
    b = output_bounds(net, input_set, method, execution)
    return interval_matvec(c, b.lower.reshape(-1), b.upper.reshape(-1))
