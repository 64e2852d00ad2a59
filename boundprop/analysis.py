"""The public entry points of the bound analyses: ``output_bounds`` (per-node enclosures by
a bound method, each an abstract domain of :mod:`boundprop.domains`, dispatched through
``METHODS``), ``interval_bounds`` (the interval pass on its engine: numpy or onnxruntime) and
``linear_function_bounds`` (bounds of C·y). They know nothing about particular ops.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from boundprop.domains.alpha import SlopeOptimizer, SlopeOptions
from boundprop.domains.backsub import DEFAULT_WORK_BUDGET, BackSubstitution, folded_spec_bounds
from boundprop.domains.interval import interval_pass
from boundprop.domains.interval_ort import (
    FastIntervalUnavailable,
    interval_bounds_ort,
    multiply_adds,
    unsupported_primitives,
)
from boundprop.domains.walker import Box, check_execution, sanitize
from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.rounding import FLOAT32_SAFE_MAX, gamma, widen
from boundprop.sets import InputSet, L2Ball

ENGINES = ("auto", "numpy", "onnxruntime")
# ``engine="auto"`` runs the interval pass through onnxruntime from this many multiply-adds on.
AUTO_ORT_MULTIPLY_ADDS = 10**7


class NodeBounds(tuple):
    """One node's enclosure ``(lo, hi)`` (unpacks as a pair), with ``method``: how it was
    obtained. The values:

    - ``"input"``: the input set's bounding box (node 0);
    - ``"exact (affine of the input)"``: an affine map of the input only, whose interval
      bounds are exact up to rounding (back-substitution cannot tighten them);
    - ``"interval"``: the node's interval rule on its inputs' enclosures (which may be linear
      bounds); for the linear method, a node none of whose entries feeds a relaxation that
      tighter bounds would improve (stable ReLUs, reshapes, joins feeding affine maps);
    - ``"linear"``: every entry back-substituted to the input (CROWN), intersected with the
      interval bounds;
    - ``"linear (n of m entries)"``: the n entries that matter back-substituted (those feeding
      unstable ReLUs, curved activations, max-pools), the others by interval;
    - ``"interval (work budget ...)"``: a user-given ``work_budget`` stopped back-substitution
      here (never the default);
    - ``"unbounded (float32 overflow)"``: the float32 evaluation may overflow (−∞, ∞).
    """

    method: str

    def __new__(cls, lo: np.ndarray, hi: np.ndarray, method: str = "interval") -> NodeBounds:
        self = super().__new__(cls, (lo, hi))
        self.method = method
        return self

    def __getnewargs__(self):
        return self[0], self[1], self.method


def _with_methods(layers: list[Box], methods: list[str] | None, execution: str
                  ) -> list[NodeBounds]:
    """Each layer as a NodeBounds; without ``methods``, those of the interval pass."""
    if methods is None:
        methods = ["input"] + [
            "unbounded (float32 overflow)" if execution == "float32" and not np.all(
                np.isfinite(lo) & np.isfinite(hi)) else "interval" for lo, hi in layers[1:]]
    return [NodeBounds(lo, hi, m) for (lo, hi), m in zip(layers, methods)]


@dataclass
class OutputBounds:
    """Certified bounds: every output of the network on the input set lies in [lower, upper].

    ``layers`` holds, per IR node, its enclosure (without the sample axis) as a
    :class:`NodeBounds`: ``lo, hi = layers[k]``, and ``layers[k].method`` says which domain
    bounded it ("interval", "linear", "linear (n of m entries)", "exact (affine of the
    input)", ...; see :class:`NodeBounds`).
    """

    lower: np.ndarray
    upper: np.ndarray
    method: str
    input_set: InputSet
    layers: list[NodeBounds] = field(repr=False)
    elapsed_s: float = 0.0
    execution: str = "real"
    note: str | None = None  # e.g. which node may overflow float32 (bounds then ±inf)

    @property
    def width(self) -> np.ndarray:
        return self.upper - self.lower


def _interval_engine(net: Network, s: InputSet, execution: str, engine: str) -> str:
    """Which engine computes the interval pass: onnxruntime
    (:mod:`boundprop.domains.interval_ort`: the same enclosure up to float32 rounding margins,
    ~2× a forward pass) or numpy (:mod:`boundprop.domains.interval`, float64)."""
    if engine not in ENGINES:
        raise BoundpropError(f"unknown interval engine '{engine}'; use one of "
                             f"{', '.join(ENGINES)}")
    if engine == "numpy":
        return "numpy"
    if engine == "onnxruntime":
        if execution != "real":
            raise FastIntervalUnavailable("the onnxruntime engine bounds real arithmetic only "
                                          "(execution='real')")
        return "onnxruntime"
    ok = (execution == "real" and not isinstance(s, L2Ball) and not unsupported_primitives(net)
          and multiply_adds(net) > AUTO_ORT_MULTIPLY_ADDS)
    return "onnxruntime" if ok else "numpy"


def interval_bounds(net: Network, input_set: InputSet, execution: str = "real",
                    engine: str = "auto") -> list[Box]:
    """Interval (IBP) enclosure of every node over the input set, in order of ``net.nodes``.

    ``execution="float32"``: each enclosure also contains the float32 evaluation (each node's
    enclosure widened by its float32 error bound, computed from its widened inputs).

    ``engine``: ``"numpy"`` (float64, every primitive), ``"onnxruntime"`` (the whole pass as
    one float32 onnxruntime graph, rigorously rounded — :mod:`boundprop.domains.interval_ort`;
    real execution, the set's bounding box) or ``"auto"`` (onnxruntime when every primitive
    has a rule, the model has more than ``AUTO_ORT_MULTIPLY_ADDS`` multiply-adds, execution is
    real and the set is not an ℓ2 ball; numpy otherwise, or if onnxruntime cannot finish
    soundly, e.g. on float32 overflow)."""
    check_execution(execution, net)
    s = input_set.fit(net.input_shape)
    net.check_memory("interval")
    if _interval_engine(net, s, execution, engine) == "onnxruntime":
        try:
            return [sanitize(lo, hi) for lo, hi in interval_bounds_ort(net, s)]
        except FastIntervalUnavailable:
            if engine == "onnxruntime":
                raise
    return interval_pass(net, s, execution)


def linear_bounds(net: Network, input_set: InputSet, spec: np.ndarray | None = None,
                  execution: str = "real", work_budget: float | None = DEFAULT_WORK_BUDGET,
                  slopes: SlopeOptions | None = None
                  ) -> tuple[list[NodeBounds], tuple[np.ndarray, np.ndarray] | None]:
    """Per-node enclosures by back-substitution on top of the interval pass (engine
    ``"auto"``), each with its method, and bounds of spec·y (y the flattened output) if
    ``spec`` is given. ``work_budget`` (default None: none) caps the estimated multiply-adds
    of one node's back-substitution; a node past it keeps its interval bounds and reports
    so in its method. ``slopes``: optimise the free slopes of the relaxations (the ``alpha``
    method)."""
    net.check_memory("linear")
    s = input_set.fit(net.input_shape)
    ibp = interval_bounds(net, s, execution)
    if any(n.op.has_relaxation_candidates() for n in net.nodes):
        # chord lines first, then every relaxation candidate on top (each node's enclosure
        # intersected with the chord pass's): never looser than the chord lines at any node
        ibp = BackSubstitution(net, s, ibp, work_budget, execution, variants=False).run()[0]
    bs = BackSubstitution(net, s, ibp, work_budget, execution)
    if slopes is not None:
        # Optimised slopes on top of the plain linear enclosures (each node's is intersected
        # with them): never looser than ``linear`` at any node.
        plain = bs.run()[0]
        bs = BackSubstitution(net, s, plain, work_budget, execution)
        bs.optimizer = SlopeOptimizer(bs, slopes)
    layers, spec_bounds = bs.run(spec)
    return _with_methods(layers, bs.methods, execution), spec_bounds


def _linear_layers(net: Network, input_set: InputSet, execution: str, engine: str
                   ) -> list[Box]:
    """The ``linear`` method's enclosures (its interval pass picks its engine itself)."""
    return linear_bounds(net, input_set, execution=execution)[0]


def _alpha_layers(net: Network, input_set: InputSet, execution: str, engine: str,
                  slopes: SlopeOptions | None = None) -> list[Box]:
    """The ``alpha`` method's enclosures: ``linear`` with optimised slopes."""
    return linear_bounds(net, input_set, execution=execution,
                         slopes=slopes or SlopeOptions())[0]


# Each bound method's per-node enclosures: (net, input_set, execution, engine) -> layers.
METHODS = {"interval": interval_bounds, "linear": _linear_layers, "alpha": _alpha_layers}


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
                  execution: str = "real", engine: str = "auto",
                  slopes: SlopeOptions | None = None) -> OutputBounds:
    """Certified bounds on the network output over ``input_set``.

    ``method="interval"``: interval bound propagation, every op's exact-or-sound interval rule.
    ``method="linear"`` (default): back-substituted linear bounds (CROWN style) for every entry
    that matters (convolutional nodes on crops of their receptive fields), interval bounds
    elsewhere; never looser than interval on any node. ``layers[k].method`` says which.
    ``method="alpha"``: ``linear`` with the free slopes of ReLU-family relaxations optimised
    per bound (α-CROWN style, :mod:`boundprop.domains.alpha`; budget ``slopes``); never
    looser than ``linear``.
    ``execution="real"`` (default) encloses the real-arithmetic function the ONNX graph denotes;
    ``"float32"`` also encloses its float32 evaluation (onnxruntime's), under the rounding model
    of :mod:`boundprop.rounding`. ``engine`` selects how the interval pass runs (see
    :func:`interval_bounds`).
    """
    if method not in METHODS:
        raise BoundpropError(f"unknown bound method '{method}'; use one of {', '.join(METHODS)}")
    check_execution(execution, net)
    t0 = time.perf_counter()
    if method == "alpha":
        layers = _alpha_layers(net, input_set, execution, engine, slopes)
    else:
        layers = METHODS[method](net, input_set, execution, engine)
    if not all(isinstance(layer, NodeBounds) for layer in layers):
        layers = _with_methods(layers, None, execution)
    lo, hi = layers[net.output]
    return OutputBounds(lower=lo, upper=hi, method=method, input_set=input_set.fit(
        net.input_shape), layers=layers, elapsed_s=time.perf_counter() - t0,
        execution=execution,
        note=float32_overflow_note(net, layers) if execution == "float32" else None)


def interval_matvec(c: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Bounds of C·y for y in the box [lo, hi] (C of shape (K, n)), rounded outward."""
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
                           method: str = "linear", execution: str = "real",
                           slopes: SlopeOptions | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Certified bounds of C·y over the input set, y the flattened network output.

    With ``method="linear"`` C is back-substituted directly (tighter than bounding y first);
    with ``"interval"`` C is folded into the network's affine tail and bounded over the
    enclosures found (:func:`~boundprop.domains.backsub.folded_spec_bounds`).
    """
    c = np.atleast_2d(np.asarray(c, dtype=np.float64))
    n_out = int(np.prod(net.output_shape))
    if c.shape[1] != n_out:
        raise BoundpropError(f"a linear function of the output needs {n_out} coefficients, got "
                             f"{c.shape[1]}")
    if method == "linear":
        return linear_bounds(net, input_set, spec=c, execution=execution)[1]
    if method == "alpha":
        return linear_bounds(net, input_set, spec=c, execution=execution,
                             slopes=slopes or SlopeOptions())[1]
    b = output_bounds(net, input_set, method, execution)
    lo, hi = b.lower.reshape(-1), b.upper.reshape(-1)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        return interval_matvec(c, lo, hi)  # rows clear of the infinite outputs keep a bound
    return folded_spec_bounds(net, b.input_set, b.layers, c, execution)
