"""Base classes of the op registry and the ONNX-conversion plumbing shared by every op.

Array convention: every primitive evaluates on arrays with one extra *leading sample axis*:
a node whose (static, ONNX) shape is ``shape`` receives and returns arrays of shape
``(S, *shape)``. ``S`` points are pushed through at once (sampling, finite differences, the
centre and radius of an interval). The model's own batch axis, if any, is axis 1 and is never
mixed with the sample axis, so batch-coupled ops (training-mode batch norm) stay exact.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnx

from boundprop.errors import UnsupportedModelError
from boundprop.norms import spectral_norm_upper
from boundprop.ops.geometry import Region, Shape
from boundprop.rounding import (
    FLOAT32_ABSOLUTE,
    FLOAT32_ELEMENTARY_RELATIVE_ERROR,
    FLOAT32_SAFE_MAX,
    gamma,
    gamma32,
    round_up,
    widen,
)

FAMILIES = ("input", "affine", "activation", "pooling", "normalising", "join")
# Relative headroom added to certified ℓ2 operator norms so that the independent checker's
# Cholesky certificate can confirm them (see AffinePrimitive.operator_norm_upper).
CHECK_HEADROOM = 1e-7

Interval = tuple[np.ndarray, np.ndarray]


class Primitive:
    """An IR primitive: one node's computation, with static input and output shapes.

    Subclasses set ``family`` and implement :meth:`evaluate`; they keep their abstract rules
    (interval, relaxations, Lipschitz/smoothness constants...) beside it.

    Abstract rules, like ``evaluate``, act on arrays with a leading sample axis: ``interval``
    maps one box per sample ``(lo, hi)`` of each input to an enclosure of the output.
    """

    family: ClassVar[str] = "?"
    kind: ClassVar[str] = "?"  # short name shown in summaries
    # The optional rules this class implements (names from boundprop.ops.contract.RULES).
    rules: ClassVar[frozenset[str]] = frozenset()

    in_shapes: tuple[Shape, ...]
    out_shape: Shape

    def has(self, rule: str) -> bool:
        """Whether this op implements the optional rule ``rule`` (see ``ops.contract``)."""
        return rule in self.rules

    def evaluate(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def interval(self, *boxes: Interval) -> Interval:
        """An enclosure [lo, hi] of {evaluate(x) : x in the input boxes}, sound in real
        arithmetic (rounded outward)."""
        raise NotImplementedError(f"{type(self).__name__} has no interval rule")

    def linear_relaxation(self, *boxes: Interval):
        """Whatever ``backward_linear`` needs, computed once from the input enclosures."""
        raise NotImplementedError

    def linear_relaxation_candidates(self, *boxes: Interval) -> list:
        """Sound alternatives to :meth:`linear_relaxation`, each usable by ``backward_linear``
        (a bound may take the best of them); by default the one relaxation."""
        return [self.linear_relaxation(*boxes)]

    def has_relaxation_candidates(self) -> bool:
        """Whether :meth:`linear_relaxation_candidates` may offer more than one."""
        return False

    def branch_points(self) -> tuple[float, ...]:
        """Values of this (elementwise, one-input) op's input at which activation branch and
        bound may split an entry's range: on each side the op is closer to linear (a
        ReLU's kink). None by default."""
        return ()

    def backward_linear(self, lam: np.ndarray, relax, boxes: list[Interval]):
        """Back-substitution step: rows Λ (shape (K, *out_shape)) of a lower bound Λ·y are
        rewritten as Σ_i Λ_i·x_i + const − err over the inputs x_i, valid on their enclosures
        ``boxes``; returns ([Λ_i], const (K,), err (K,)), err bounding the float rounding.
        A primitive without this rule is concretised to its interval instead."""
        raise NotImplementedError

    def crop(self, region: Region) -> tuple[Primitive, list[Region]] | None:
        """This op restricted to the output entries in ``region`` (one (start, stop) per axis
        of ``out_shape``): (an op of the same kind mapping the input entries in the returned
        regions, one per input, to exactly those outputs; the regions). Back-substitution
        crops rows Λ supported on ``region`` with it (its Λ_in are supported on the input
        regions, so nothing nonzero is dropped). None: the op cannot be cropped (the default;
        back-substitution then keeps the whole arrays)."""
        return None

    def crop_relaxation(self, relax, region: Region):
        """The relaxation of ``self.crop(region)`` on the cropped boxes, sliced from this op's
        relaxation ``relax`` when that is entrywise (else None: recomputed on the crop)."""
        return None

    def relaxed_forward(self, xs: list[np.ndarray], relax, lam: np.ndarray) -> np.ndarray:
        """The linear function ``backward_linear`` put in place of this op for rows ``lam``,
        evaluated at points: per row k (leading axis of ``xs``, ``lam`` and the result), the
        lower line where Λ_k ≥ 0 and the upper one where Λ_k < 0, so that
        Λ_k·relaxed_forward(x)_k = Σ_i Λ_ik·x_ik + const_k exactly (in real arithmetic).
        The slope optimiser evaluates the relaxed network forward with it to differentiate
        a bound (:mod:`boundprop.domains.alpha`)."""
        raise NotImplementedError

    def float32_error(self, boxes: list[Interval], out: Interval) -> np.ndarray:
        """Bound (per output entry) on |float32 result − exact result| on the same inputs, for
        inputs in ``boxes`` and output enclosure ``out`` (see ``rounding`` for the model).
        The default treats the op as a composition of ~n elementary steps of its output size."""

        mag = np.maximum(np.abs(out[0]), np.abs(out[1]))
        return 8 * FLOAT32_ELEMENTARY_RELATIVE_ERROR * mag + FLOAT32_ABSOLUTE

    def float32_overflow_free(self, boxes: list[Interval], out: Interval,
                              err: np.ndarray) -> bool:
        """Whether float32 evaluation provably stays finite (below FLOAT32_SAFE_MAX = max/4)
        for inputs in ``boxes``, given the (float32-widened) output enclosure ``out`` and
        the node's ``float32_error`` bound ``err``. The default covers ops whose kernels form
        products of two inputs summed over at most n terms (bilinear maps, squares in
        normalisations): max|input|²·n and max|output| must stay below the limit."""

        n = sum(int(np.prod(b[0].shape)) for b in boxes) + 1
        top = max((box_max_abs(b) for b in boxes), default=0.0)
        return box_max_abs(out) <= FLOAT32_SAFE_MAX and top * top * n <= FLOAT32_SAFE_MAX

    def onnx_shape_inference_agrees(self) -> bool:
        """Whether ONNX shape inference computes this op's output shape as boundprop does (the
        importer warns on a disagreement only where it should agree)."""
        return True

    def parameters(self) -> dict[str, np.ndarray]:
        """Learned parameters (weights, biases, affine constants) of this primitive."""
        return {}

    def num_parameters(self) -> int:
        return int(sum(np.size(p) for p in self.parameters().values()))

    def describe(self) -> str:
        """Short attribute summary shown by ``boundprop inspect``."""
        return ""

    def constants_rule(self, ctx):
        """ℓ, L and B of this node from its inputs' (see ``boundprop.ops.rules``): a
        ``Rule`` for the norm ``ctx.norm``, local on ``ctx.boxes`` when given."""
        raise NotImplementedError

    def jacobian_backward(self, c: np.ndarray, r: np.ndarray, boxes: list[Interval]):
        """Interval Jacobian enclosure, backwards: given rows J_out ∈ [c − r, c + r]
        (shape (K, *out_shape)) of the network's Jacobian with respect to this node's output,
        return [(c_i, r_i)] enclosing J_out·∂(node)/∂(input i) for every Clarke Jacobian of
        the node on ``boxes``. None: no rule (the enclosure method then does not apply)."""
        return None

    def vjp(self, cot: np.ndarray, inputs: list[np.ndarray], rows: int) -> list[np.ndarray]:
        """Reverse-mode rule at points: for S points ``inputs[j]`` (S, *in_shape_j) and the
        cotangents ``cot`` (S·rows, *out_shape; ``rows`` consecutive rows per point), the
        products cot·∂f/∂x_j (S·rows, *in_shape_j) for every input j.

        The default evaluates :meth:`jacobian_backward` point by point on the degenerate boxes
        [x, x] with zero radius (its centre is then cot·J(x)); NotImplementedError (the op's
        kind as message) when the op has neither rule."""
        per_point = []
        for s in range(len(inputs[0])):
            cs = cot[s * rows:(s + 1) * rows]
            boxes = [(x[s:s + 1], x[s:s + 1]) for x in inputs]
            with np.errstate(all="ignore"):
                parts = self.jacobian_backward(cs, np.zeros_like(cs), boxes)
            if parts is None:
                raise NotImplementedError(self.kind)
            per_point.append([centre for centre, _ in parts])
        return [np.concatenate([p[j] for p in per_point]) for j in range(len(inputs))]


def box_max_abs(box: Interval) -> float:
    """max |x| over the box (inf if any end is infinite or NaN)."""
    lo, hi = box
    if lo.size == 0:
        return 0.0
    m = float(max(np.max(np.abs(lo)), np.max(np.abs(hi))))
    return m if m == m else float("inf")


class TightensEveryEntry:
    """For a nonlinear op whose relaxation of every output entry can improve when its input
    enclosure tightens (max pooling, extreme reductions, rounding): back-substitution then
    tightens every entry of its input. A class using it declares ``needs_tighter``."""

    def needs_tighter(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.ones(lo.shape, dtype=bool)


class AffinePrimitive(Primitive):
    """A map y = A(x) + offset with A linear.

    Subclasses implement :meth:`linear` (A on a batch of samples) and :meth:`abs_linear`
    (the map |A| whose matrix is the entrywise absolute value of A's), and set ``offset``
    (an array broadcastable to ``(S, *out_shape)``, or None).
    """

    family: ClassVar[str] = "affine"
    rules: ClassVar[frozenset[str]] = frozenset(
        {"interval", "backward_linear", "constants", "jacobian", "materialize", "vjp",
         "relaxed_forward"})
    offset: np.ndarray | None = None

    def linear(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        y = self.linear(x)
        if self.offset is not None:
            y = y + self.offset
        return y

    def with_extra_offset(self, shift: np.ndarray) -> AffinePrimitive | None:
        """This map followed by ``+ shift`` as a single primitive, or None if not expressible."""
        return None

    def adjoint(self, lam: np.ndarray) -> np.ndarray:
        """Aᵀ applied to each row of ``lam`` (shape (K, *out_shape)) → (K, *in_shape).

        Used by back-substitution; a primitive without it is treated as a box there."""
        raise NotImplementedError

    def linear_relaxation(self, *boxes: Interval):
        return None  # affine: exact, nothing to relax

    def relaxed_forward(self, xs, relax, lam):
        return self.evaluate(xs[0])  # exact: the map itself

    def float32_error(self, boxes, out):
        lo, hi = boxes[0]
        mag = self.abs_linear(np.maximum(np.abs(lo), np.abs(hi)))
        if self.offset is not None:
            mag = mag + np.abs(self.offset)
        return gamma32(self.fan_in + 2) * mag + FLOAT32_ABSOLUTE

    def float32_overflow_free(self, boxes, out, err) -> bool:
        """Every partial sum of A x + b is at most mag = |A||x| + |b| in magnitude, and
        ``float32_error`` is γ·mag + tiny, so mag ≤ err/γ: both it and the output must stay
        below FLOAT32_SAFE_MAX."""

        mag = float(np.max(err, initial=0.0)) / gamma32(self.fan_in + 2)
        return box_max_abs(out) <= FLOAT32_SAFE_MAX and mag <= FLOAT32_SAFE_MAX

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        """Λ·(A z + b) = (AᵀΛ)·z + Λ·b; the float error of AᵀΛ is at most γ_n|Λ|·(|A||z|),
        bounded with |z| ≤ max(|lo|, |hi|) from the input's enclosure."""

        lam_in = self.adjoint(lam)
        lo, hi = boxes[0]
        zmax = np.maximum(np.abs(lo), np.abs(hi))
        g = gamma(max(int(np.prod(self.out_shape)), self.fan_in))
        axes = tuple(range(1, lam.ndim))
        err = g * (np.abs(lam) * self.abs_linear(zmax)).sum(axis=axes)
        const = np.zeros(lam.shape[0])
        if self.offset is not None:
            off = np.broadcast_to(self.offset, (1, *self.out_shape))
            const = (lam * off).sum(axis=axes)
            err = err + g * (np.abs(lam) * np.abs(off)).sum(axis=axes)
        return [lam_in], const, err

    @property
    def fan_in(self) -> int:
        """Most input entries any output entry sums (for the rounding-error bound)."""
        return int(np.prod(self.in_shapes[0]))

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        """|A|ᵀ applied to each row of ``lam`` (the transpose of :meth:`abs_linear`)."""
        raise NotImplementedError

    def vjp(self, cot, inputs, rows):
        """cot·A = Aᵀ applied to each cotangent row (:meth:`adjoint`), whatever the point."""
        try:
            return [self.adjoint(cot)]
        except NotImplementedError:
            return super().vjp(cot, inputs, rows)

    # Largest matrix (entries) materialised for an exact-ish spectral norm.
    MATERIALIZE_LIMIT: ClassVar[int] = 4_000_000

    def materialize(self) -> np.ndarray | None:
        """The (out, in) matrix of A if it has at most MATERIALIZE_LIMIT entries, else None.
        Each column is A applied to a unit vector: one product per entry, so exact for
        weight-copying maps (dense, conv, pooling sums); at most one rounding otherwise."""
        n_in, n_out = int(np.prod(self.in_shapes[0])), int(np.prod(self.out_shape))
        if n_in * n_out > self.MATERIALIZE_LIMIT:
            return None
        cols = []
        step = max(1, self.MATERIALIZE_LIMIT // max(n_out, 1) // 4)
        for start in range(0, n_in, step):
            k = min(step, n_in - start)
            e = np.zeros((k, n_in))
            e[np.arange(k), start + np.arange(k)] = 1.0
            cols.append(self.linear(e.reshape(k, *self.in_shapes[0])).reshape(k, n_out))
        return np.concatenate(cols).T

    def operator_norm_upper(self, norm: str) -> float:
        """Certified ‖A‖_p (p = 2, inf, 1; the same norm on input and output).

        ‖A‖_∞ = max row sum of |A| and ‖A‖_1 = max column sum (exact up to the rounding of
        the sums, bounded by γ_n and rounded up); ‖A‖_2 ≤ sqrt(‖A‖_1 ‖A‖_∞) (Hölder/Riesz–
        Thorin), or the Gram-iteration bound of the materialised matrix when that is small
        (subclasses with structure override :meth:`spectral_norm_upper`)."""

        cache = self.__dict__.setdefault("_norm_cache", {})
        if norm in cache:  # the op is immutable after import; norms can be expensive
            return cache[norm]
        if norm == "2":
            # Headroom of 1e-7 (relative) over the certified value: an independent checker
            # proves u ≥ ‖A‖₂ by a Cholesky factorisation of u²I − AᵀA, whose rounding shift
            # needs about (n·m + n²)·2⁻⁵³ relative room; without it, a bound tight to the last
            # digits can only be re-checked by recomputing it the prover's way.
            cache[norm] = float(round_up(self.spectral_norm_upper() * (1 + CHECK_HEADROOM)))
            return cache[norm]
        if norm == "inf":
            sums = self.abs_linear(np.ones((1, *self.in_shapes[0])))
            n = self.fan_in
        else:
            try:
                sums = self.abs_adjoint(np.ones((1, *self.out_shape)))
            except NotImplementedError:
                m = self.materialize()
                if m is None:
                    return float("inf")
                sums = np.abs(m).sum(axis=0)
            n = int(np.prod(self.out_shape))
        top = float(np.max(sums)) if np.size(sums) else 0.0
        cache[norm] = float(round_up(top * (1 + gamma(n + 2))))
        return cache[norm]

    def norm_witness_matrix(self, norm: str) -> tuple[np.ndarray, float, str] | None:
        """A matrix M with |M − A| ≤ e·|A| entrywise against which ‖A‖_p can be re-certified
        independently: (M, e, description), or None. The ℓ2 norm only, from
        :meth:`materialize` (one rounding per entry at most: e = 2⁻⁵²); materialising costs a
        forward pass per input entry, and the ℓ∞/ℓ1 sums are cheap to recompute by the rule."""
        if norm != "2":
            return None
        m = self.materialize()
        return None if m is None else (m, 2.0**-52, "the materialised matrix")

    def operator_norm_for(self, ctx, norm: str) -> float:
        """‖A‖_p for a constants rule: the verified value ``ctx.operator_norms[norm]`` when the
        caller supplies one, else :meth:`operator_norm_upper`."""
        given = ctx.operator_norms or {}
        return float(given[norm]) if norm in given else self.operator_norm_upper(norm)

    def spectral_norm_upper(self) -> float:
        holder = float(round_up(np.sqrt(self.operator_norm_upper("1")
                                        * self.operator_norm_upper("inf"))))
        if isinstance(self, PermutationPrimitive):
            return holder  # exact: AᵀA is diagonal with the copy counts
        m = self.materialize()
        if m is None:
            return holder
        # One rounding per materialised entry at most: a relative margin covers it.
        return min(holder, float(round_up(spectral_norm_upper(m) * (1 + 2.0**-50))))

    def offset_norm_upper(self, norm: str) -> float:
        """‖b‖_p of the offset broadcast over the whole output (0 without one)."""
        if self.offset is None:
            return 0.0
        from boundprop.ops.rules import array_norm_upper  # lazy: loads sympy

        return array_norm_upper(np.broadcast_to(self.offset, (1, *self.out_shape)), norm)

    def constants_rule(self, ctx):
        from boundprop.ops.rules import linear_rule  # lazy: loads sympy

        return linear_rule(ctx, self.operator_norm_for(ctx, ctx.norm),
                           self.offset_norm_upper(ctx.norm), self.kind)

    def jacobian_backward(self, c, r, boxes):
        """(C ± R)·A = C·A ± (R·|A| + γ_n |C|·|A|): the adjoint of the centre, rounding of
        the float adjoint included in the radius."""

        try:
            ca = self.adjoint(c)
            mag = self.abs_adjoint(r + gamma(max(self.fan_in, int(np.prod(self.out_shape))) + 2)
                                   * np.abs(c))
        except NotImplementedError:
            return None
        return [(ca, round_up(mag * (1 + 2.0**-50)))]

    def interval(self, box: Interval) -> Interval:
        """Centre-radius form: A c + b ± |A| r, plus the dot-product rounding bound
        γ_{n}(|A|(|c| + r) + |b|) of the float computation (n = fan-in)."""

        lo, hi = box
        unbounded = ~(np.isfinite(lo) & np.isfinite(hi))
        if np.any(unbounded):  # compute on the bounded part; outputs fed by the rest: ±∞
            lo, hi = np.where(unbounded, 0.0, lo), np.where(unbounded, 0.0, hi)
        c = 0.5 * (lo + hi)
        r = round_up(np.maximum(hi - c, c - lo))
        yc = self.linear(c)
        both = self.abs_linear(np.concatenate([r, np.abs(c) + r]))
        yr, ya = both[: len(r)], both[len(r):]
        if self.offset is not None:
            yc = yc + self.offset
            ya = ya + np.abs(self.offset)
        rad = yr + gamma(self.fan_in + 2) * ya
        if np.any(unbounded):
            rad = np.where(self.abs_linear(unbounded.astype(np.float64)) > 0, np.inf, rad)
        return widen(yc, yc, rad)


class ParametricAffine(AffinePrimitive):
    """An affine map y = A(W)u + b whose weight W and bias b are learned parameters (dense,
    convolution): the parameter ball ‖(ΔW, Δb)‖_F ≤ ρ and the parameter gradients apply."""

    rules: ClassVar[frozenset[str]] = AffinePrimitive.rules | {"parametric"}

    def param_structure(self) -> tuple[float, int]:
        """(c, r): the bilinear constant ‖A(ΔW)u‖ ≤ c‖ΔW‖_F‖u‖ and the bias's copies r."""
        raise NotImplementedError

    def weight_and_bias(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(W, b): the weight array (its first axis the output features) and the additive
        constant as held (None without one). The parameter ball and :meth:`param_vjp` move b
        per output feature: W.shape[0] entries."""
        raise NotImplementedError

    def perturbed(self, dw: np.ndarray, db: np.ndarray | None) -> ParametricAffine:
        """A copy with weight W + dw and, when ``db`` (W.shape[0] entries) is given, bias
        b + db per output feature."""
        raise NotImplementedError

    def param_vjp(self, cot: np.ndarray, u: np.ndarray, rows: int
                  ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Gradients of ``rows`` functionals (cotangents ``cot`` (rows, *out_shape) of the
        layer output) w.r.t. W ((rows, *W.shape)) and the per-feature bias ((rows, W.shape[0]))
        at the input ``u`` ((1, *in_shape)); None where this rule cannot derive one."""
        raise NotImplementedError

    def constants_rule(self, ctx):
        """W.r.t. the input, the affine rule; w.r.t. the parameters (``ctx.wrt == "params"``),
        ``parametrized_affine_rule`` with radius ``ctx.param_radius``, ‖A(W*)‖₂ and ‖b*‖₂."""
        if ctx.wrt != "params":
            return super().constants_rule(ctx)
        from boundprop.ops.rules import parametrized_affine_rule  # lazy: loads sympy

        c_bil, copies = self.param_structure()
        return parametrized_affine_rule(ctx, self.operator_norm_for(ctx, "2"), c_bil, copies,
                                        float(ctx.param_radius), self.offset_norm_upper("2"))


class PermutationPrimitive(AffinePrimitive):
    """A linear map that only moves, copies or drops entries (Reshape, Transpose, Slice...),
    possibly plus a constant offset written into entries the map leaves at zero (Pad with a
    value, Concat with constants).

    Its matrix has entries in {0, 1}, so |A| = A, and evaluation is exact.
    """

    def abs_linear(self, x: np.ndarray) -> np.ndarray:
        return self.linear(x)

    @property
    def fan_in(self) -> int:
        return 1

    def interval(self, box: Interval) -> Interval:
        # Copies are exact, and the matrix is entrywise nonnegative: monotone.
        return self.evaluate(box[0]), self.evaluate(box[1])

    def float32_error(self, boxes, out):
        if self.offset is None:
            return np.zeros((1, *self.out_shape))
        return super().float32_error(boxes, out)

    def float32_overflow_free(self, boxes, out, err) -> bool:
        """Copies are exact; only the output (inputs plus constant offsets) can be too big."""

        return box_max_abs(out) <= FLOAT32_SAFE_MAX

    def abs_adjoint(self, lam: np.ndarray) -> np.ndarray:
        return self.adjoint(lam)

    def backward_linear(self, lam: np.ndarray, relax, boxes):
        if self.offset is not None:  # Λ·offset rounds: the affine rule bounds it
            return super().backward_linear(lam, relax, boxes)
        # Moving entries is exact: no rounding error.
        return [self.adjoint(lam)], np.zeros(lam.shape[0]), np.zeros(lam.shape[0])


# --------------------------------------------------------------------------------------------
# ONNX conversion plumbing


@dataclass(frozen=True)
class Const:
    """A value known at import time (initializer, Constant, folded subgraph)."""

    value: np.ndarray


@dataclass(frozen=True)
class Tensor:
    """A value computed from the network input: the output of IR node ``node``."""

    node: int
    shape: Shape


Value = Const | Tensor | None


class ConversionContext:
    """What a converter may use: the opset, and a way to add IR nodes."""

    def __init__(self, opset: int, emit: Callable[[Primitive, Sequence[Tensor], str, str], Tensor]):
        self.opset = opset
        self._emit = emit
        self.node: onnx.NodeProto | None = None
        # Refuses (raises) an output shape too big to analyse; set by the importer. Converters
        # call it before building a primitive that allocates arrays of its output's size.
        self.check_shape: Callable[[Shape], None] = lambda shape: None

    def emit(self, prim: Primitive, inputs: Sequence[Tensor], suffix: str = "") -> Tensor:
        """Add ``prim`` to the IR, fed by ``inputs``; returns its output tensor."""
        assert self.node is not None
        name = self.node.name or (self.node.output[0] if self.node.output else self.node.op_type)
        return self._emit(prim, list(inputs), name + suffix, self.node.op_type)

    def fail(self, what: str) -> UnsupportedModelError:
        n = self.node
        where = f"node '{n.name or n.output[0]}' ({n.op_type})" if n is not None else "model"
        return UnsupportedModelError(f"{where}: {what}")


ConverterFn = Callable[[ConversionContext, onnx.NodeProto, list[Value]], list[Value]]
CONVERTERS: dict[str, ConverterFn] = {}


def onnx_converter(*op_types: str) -> Callable[[ConverterFn], ConverterFn]:
    """Register a function converting ONNX nodes of ``op_types`` into IR primitives.

    The function receives the context, the node, and one :class:`Const`/:class:`Tensor`/None per
    node input (None for an omitted optional input); it returns one value per node output.
    """

    def register(fn: ConverterFn) -> ConverterFn:
        for op in op_types:
            if op in CONVERTERS:
                raise RuntimeError(f"ONNX op {op} registered twice")
            CONVERTERS[op] = fn
        return fn

    return register


def supported_onnx_ops() -> list[str]:
    """ONNX op types boundprop imports (beyond these, constant subgraphs of any op fold)."""
    return sorted(set(CONVERTERS) | {"Constant", "Identity", "Dropout", "Shape", "Size"})


def attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def as_str(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


def const_value(ctx: ConversionContext, v: Value, what: str) -> np.ndarray:
    """The array of a constant input, or a clear error if it is computed from the input."""
    if isinstance(v, Const):
        return v.value
    raise ctx.fail(f"{what} must be a constant (initializer or folded subgraph), not computed "
                   "from the network input")


def float_array(a: np.ndarray) -> np.ndarray:
    """Parameters are held in float64: the IR computes in float64."""
    return np.asarray(a, dtype=np.float64)


def normalize_axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise UnsupportedModelError(f"axis {axis} out of range for a tensor of rank {rank}")
    return axis % rank


def broadcast_shapes(*shapes: Shape) -> Shape:
    return tuple(np.broadcast_shapes(*shapes))
