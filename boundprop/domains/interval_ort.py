"""Interval bounds (IBP) run by onnxruntime in float32, rigorously sound.

The IR is translated into ONE ONNX graph that propagates a box through the network in float32
(CPUExecutionProvider, default threads); each primitive's translation rule is its method
``emit_interval_onnx(builder, *values) -> value`` beside its other rules in ``boundprop/ops``;
this module only holds the generic builder (the interval algebra below) and the driver; the
float32 constants, value form and host conversion are in :mod:`boundprop.domains.float32_values`.

Values and what they guarantee
------------------------------
A node's value set is carried by two float32 tensors ``a``, ``b`` in one of two forms, plus a
*pending* widening (scalars fixed at build time) that later steps fold into their constants
instead of spending elementwise passes on it. For every point x of the node's set, in real
arithmetic, elementwise:

* ``lh``:  a − eps·|a| − tau  ≤  x  ≤  b + eps·|b| + tau          (lower/upper form)
* ``cr``:  |x − a|  ≤  rho·b + eps·|a| + tau                      (centre/radius form)

(a = −∞ or b = +∞ is allowed in ``lh``: still true.) The input is ``lh`` with the float64 box
rounded outward to float32 and no pending widening.

The float32 model
-----------------
u = 2⁻²⁴, U1 = u/(1−u), ETA = 2⁻¹²⁶ (the smallest normal float32). Each elementwise ONNX op ORT
runs (Add, Sub, Mul, Abs, Relu, Max...) is one IEEE operation rounded to nearest:
fl(z) = z(1+δ), |δ| ≤ u, or |fl(z) − z| ≤ ETA when the result is subnormal or flushed (so the
rules hold with or without flush-to-zero / denormals-are-zero). Abs, Relu, Max/MaxPool, Clip,
negation, multiplication by ±1 and by powers of 2 (bar underflow) are exact. A dot product or sum
of n terms computed in ANY order, with or without FMA, satisfies
|fl(Σ p_i) − Σ p_i| ≤ γ_n Σ|p_i| (+ n·ETA for underflow), γ_n = nu/(1−nu) (Higham, Thm 3.1 —
valid for every summation tree, so for MLAS's blocked SGEMM and NCHWc convolutions, which only
reorder the sum); ``gamma32(n)`` is 2γ_{n+2}, a doubled margin. This is an ASSUMPTION about the
runtime: it excludes Winograd/FFT convolution (whose error is not a function of |W|·|x|). MLAS
(onnxruntime's CPU kernels) implements float Conv as im2col+SGEMM, direct GEMM (1×1), the NCHWc
direct kernels and a direct depthwise kernel — no Winograd/FFT — and ``tests/test_fast_interval``
checks the bound against a float64 reference on adversarial inputs. Graph rewrites that would
change the rounding (folding a Mul/Add constant into conv weights/bias) are disabled by name
(``DISABLED_OPTIMIZERS``); the fusions ORT may still apply compute the same sums: Conv+Relu,
MatMul+Add → Gemm and NCHWc layout change nothing; an Add fused into the accumulator of the
convolution producing one of its operands (NCHWc Conv+Sum, ConvAddActivationFusion) is intended
where the other operand is a ±1/−k depthwise product (one rounding either way), and where a
radius straight out of a convolution is added the rule uses γ_{n+2} instead of u for that Add
(``IntervalGraphBuilder.gamma_fused``).

Affine maps (Conv, Dense, ElementwiseAffine, ConvTranspose; AveragePool and Reduce)
----------------------------------------------------------------------------------
For y = A x + b, with x in the box, take any float32 x̂ and exact scale σ (1 or 1/2, folded into
the weights) and a float32 t with  |x − σx̂| + G·σ|x̂| ≤ rho_t·t + tau_t  (``_operands`` builds
t in 2–5 elementwise ops from the value's form). Then, with Wc = fl32(σW) (|Wc − σW| ≤ u_w·σ|W|)
and b32 = fl32(b):

  |A x + b − fl(Wc x̂ + b32)| ≤ |A|·|x − σx̂| + |Wc − σW||x̂| + γ(|Wc||x̂| + |b32|) + |b − b32|
                            ≤ |A|·(|x − σx̂| + Gσ|x̂|) + γ|b32| + |b − b32|
                            ≤ rho_t·|A| t + |A|·tau_t + γ|b32| + |b − b32|,

with G = u_w + γ(1+u_w), γ = gamma32(fan_in + 2). This uses the linearity of |A|:
|A|r + γ|A||c| = |A|(r + γ|c|), so the rounding error of the centre product and the radius are
covered by ONE product with |A| — two convolutions/matmuls per layer, which is what makes 2×
the forward pass the floor. The radius product is run with Mr = ↑(F·rho_t·|A|) and bias
e = ↑(F·(row-sum(|A|)·tau_t + γ|b32| + |b − b32| + underflow terms)), F = (1 + gamma32(n+2))·
(1 + 8u): all its terms are ≥ 0, so its computed value is ≥ (1 − γ_{n+1})·(Mr t + e) ≥ the
bound above. The affine output is ``cr`` with no pending widening.

ReLU and friends: lo = fl(c − r), hi = fl(c + r) (on 4-D tensors as depthwise ±1 convolutions
that onnxruntime fuses with the addition and the ReLU into one pass); each is one rounding, so
the ``lh`` result carries eps = U1 and tau += ETA; monotone exact ops (Relu, MaxPool, ReduceMax,
Clip) then map lo and hi and keep the pending widening (x ↦ x ± (eps|x| + tau) is increasing and
commutes with them up to an inequality in the right direction). The next affine map folds the
pending widening into its constants (``_operands``).

Smooth monotone activations (Sigmoid, Tanh, Softplus, Softsign, Erf, Elu, Celu): their
onnxruntime kernels are not correctly rounded, so the rule (``increasing_kernel``) first applies
the pending widening in the graph (``outer``: float32 lo ≤ x ≤ hi in real arithmetic, its own
roundings included) and runs the kernel on lo and hi; the kernel's error model |σ̂ − σ| ≤
rel·|σ| + absolute (``ops.smooth.ORT_KERNEL_ERROR``, measured, re-checked by the tests) becomes
the result's pending widening.

Overflow: an affine output whose centre c has an ±inf/NaN entry is caught by a reduction guard
(one read pass); once every centre is finite, every other non-finite entry can only be a sound
±∞ (radius overflow to +∞, lo → −∞, hi → +∞), and the final outputs are checked on the host. A
failed check raises :class:`FastIntervalUnavailable` (``analysis`` then falls back to numpy).

Output: every materialised node is converted on the host in float64 with outward rounding:
``lh`` → [a − eps|a| − tau, b + eps|b| + tau], ``cr`` → c ∓ (rho·r + eps|c| + tau). Each value
encloses the real-arithmetic image of the input box by the invariants above, so the returned
float64 interval does too; no further ulp is needed because the last float32 rounding is already
part of the pending widening (eps ≥ U1 ≥ the relative error of that rounding).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import replace

import numpy as np

from boundprop.domains.float32_values import (
    ETA,
    SLACK64,
    U1,
    FastIntervalUnavailable,
    IValue,
    U,
    abs_scaled_up,
    down32,
    near32,
    round_weights,
    to_float64_bounds,
    up32,
)
from boundprop.errors import BoundpropError
from boundprop.ops.base import AffinePrimitive
from boundprop.rounding import gamma32
from boundprop.runtime import ort_threads

OPSET = 17
# Rewrites that would fold constants into weights (changing which values are rounded).
DISABLED_OPTIMIZERS = ["ConvAddFusion", "ConvMulFusion", "ConvBNFusion", "MatMulScaleFusion",
                       "DivMulFusion"]


class IntervalGraphBuilder:
    """Collects ONNX nodes and initializers; holds the interval algebra the op rules use."""

    def __init__(self) -> None:
        from onnx import helper  # lazy: onnx is heavy (loaded only when an engine is built)

        self._helper = helper
        self.nodes: list = []
        self.initializers: list = []
        self.guards: list[str] = []
        self.external: dict[str, np.ndarray] = {}
        self._count = 0
        self.init_bytes = 0
        self.max_fan_in = 1  # of the affine maps emitted so far

    @property
    def gamma_fused(self) -> float:
        """Relative error bound of one Add whose operand may have been fused by onnxruntime
        into the accumulator of the convolution/GEMM producing it (NCHWc Conv+Sum,
        ConvAddActivationFusion): then the sum is computed with the conv's other terms, all
        ≥ 0 for a radius, so the result is ≥ (1 − γ_{n+2})·(its exact value) instead of
        ≥ (1 − u)·(...). Used where a radius tensor straight out of an affine map is added."""
        return max(U, gamma32(self.max_fan_in + 2))

    # ------------------------------------------------------------------ plain graph building
    def fresh(self, hint: str = "v") -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, value, hint: str = "k") -> str:
        """A float32 (or int64, for shapes/indices) initializer. Large ones are handed to
        onnxruntime as OrtValues (``external``) instead of being serialised into the model."""
        from onnx import TensorProto, numpy_helper  # lazy: onnx is heavy

        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        elif arr.dtype.kind in "iu":
            arr = arr.astype(np.int64, copy=False)
        arr = np.ascontiguousarray(arr)
        name = self.fresh(hint)
        if arr.size >= 1 << 16 and arr.ndim == 2 and arr.dtype == np.float32:
            stub = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=arr.shape)
            stub.data_location = TensorProto.EXTERNAL
            entry = stub.external_data.add()
            entry.key, entry.value = "location", "boundprop-in-memory"
            self.initializers.append(stub)
            self.external[name] = arr
        else:
            self.initializers.append(numpy_helper.from_array(arr, name))
        self.init_bytes += arr.nbytes
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self.fresh(hint or op_type.lower())
        self.nodes.append(self._helper.make_node(op_type, list(inputs), [out], **attrs))
        return out

    def guard(self, name: str, rank: int) -> None:
        """Make a non-finite entry of ``name`` visible in the guard output (one read pass)."""
        g = self.op("GlobalAveragePool", [name]) if rank == 4 else name
        self.guards.append(self.op("ReduceSum", [g], keepdims=0))

    # ------------------------------------------------------------------ the interval algebra
    def both(self, v: IValue, fn, shape: tuple[int, ...]) -> IValue:
        """Apply an exact entry-moving map (reshape, transpose, slice, gather...) to both
        tensors: the invariant holds entry by entry, so it is kept."""
        return replace(v, a=fn(v.a), b=fn(v.b), shape=tuple(shape))

    def materialise(self, v: IValue) -> IValue:
        """``cr`` with rho = 1 and eps = 0: r' = fl(fl(r·ρ') + fl(|c|·ε')) with ρ' ≥ ρ/(1−u)²,
        ε' ≥ eps/(1−u)²; each of the three roundings loses at most a factor (1−u) and ETA, so
        r' ≥ ρr + eps|c| − 3·ETA, and tau grows by 3·ETA."""
        if v.kind != "cr" or (v.rho == 1.0 and v.eps == 0.0):
            return v
        r = v.b
        if v.rho != 1.0:
            r = self.op("Mul", [r, self.const(up32(v.rho / (1 - U) ** 2 * SLACK64))])
        if v.eps != 0.0:
            ac = self.op("Mul", [self.op("Abs", [v.a]),
                                 self.const(up32(v.eps / (1 - U) ** 2 * SLACK64))])
            r = self.op("Add", [r, ac])
        return replace(v, b=r, rho=1.0, eps=0.0, tau=v.tau + 3 * ETA)

    def lh(self, v: IValue, activation: str | None = None) -> IValue:
        """The value in ``lh`` form, optionally through a monotone exact activation (Relu).

        From ``cr`` (materialised): lo = fl(c − r), hi = fl(c + r); one rounding each, so
        c − r ≥ lo − U1|lo| − ETA and c + r ≤ hi + U1|hi| + ETA: eps = U1, tau += ETA. On a 4-D
        tensor with a multiple of 8 channels, c ∓ r is written as c + DepthwiseConv(r, ∓1): the
        product by ±1 is exact, onnxruntime's NCHWc transformer fuses the addition (and the
        Relu) into that convolution — one pass each for lo and hi, same single rounding."""
        if v.kind == "lh":
            if activation is None:
                return v
            return replace(v, a=self.op(activation, [v.a]), b=self.op(activation, [v.b]),
                           nonneg=True)
        v = self.materialise(v)
        if not v.guarded:
            self.guard(v.a, len(v.shape))
        c, r = v.a, v.b
        if len(v.shape) == 4 and v.shape[1] % 8 == 0:
            ch = v.shape[1]
            ones = np.ones((ch, 1, 1, 1), np.float32)
            lo = self.op("Add", [c, self.op("Conv", [r, self.const(-ones)], group=ch)])
            hi = self.op("Add", [c, self.op("Conv", [r, self.const(ones)], group=ch)])
        else:
            lo, hi = self.op("Sub", [c, r]), self.op("Add", [c, r])
        if activation is not None:
            lo, hi = self.op(activation, [lo]), self.op(activation, [hi])
        return IValue("lh", lo, hi, v.shape, eps=U1, tau=v.tau + ETA,
                      nonneg=activation == "Relu")

    def cr(self, v: IValue) -> IValue:
        """``cr`` form. From ``lh``: ĉ = fl(fl(lo+hi)·½), r̂ = fl(fl(hi−lo)·½). With s = lo+hi,
        d = hi−lo: |x − s/2| ≤ (1+eps)d/2 + (eps+u)|s|/2 + tau + ETA (max(|lo|,|hi|) =
        (d + |s|)/2), d ≤ (2r̂ + 3ETA)/(1−u), |s| ≤ (2|ĉ| + 3ETA)/(1−u); hence rho = (1+eps)/(1−u),
        eps' = (eps+u)/(1−u), tau' = tau + 6·ETA (all rounded up)."""
        if v.kind == "cr":
            return v
        half = self.const(np.float32(0.5))
        c = self.op("Mul", [self.op("Add", [v.a, v.b]), half])
        r = self.op("Mul", [self.op("Sub", [v.b, v.a]), half])
        return IValue("cr", c, r, v.shape, rho=(1 + v.eps) / (1 - U) * SLACK64,
                      eps=(v.eps + U) / (1 - U) * SLACK64, tau=v.tau + 6 * ETA, guarded=False)

    def sigma(self, v: IValue) -> float:
        """The exact scale of the centre surrogate ``_operands`` will use for ``v``."""
        return 1.0 if v.kind == "cr" else 0.5

    def _operands(self, v: IValue, big_g: float) -> tuple[str, float, str, float, float]:
        """(x̂, σ, t, rho_t, tau_t) with |x − σx̂| + G·σ|x̂| ≤ rho_t·t + tau_t for every x of
        the box (x̂, t float32 tensors; σ exact). See each branch for the derivation."""
        assert v.eps < 1e-3 and big_g < 0.25
        rank4 = len(v.shape) == 4 and v.shape[1] % 8 == 0
        if v.kind == "cr":
            # t = fl(r + fl(K|c|)), K ≥ (eps+G)/(rho(1−γf)): fl(K|c|) ≥ K|c|(1−u) − ETA and
            # t ≥ (r + fl(K|c|))(1−γf) − ETA (γf ≥ u: the Add may be fused into the conv
            # that produced r, see ``gamma_fused``) give ρr + (eps+G)|c| ≤ ρ/(1−γf)·t + 3ρ·ETA.
            gf = self.gamma_fused
            k = up32((v.eps + big_g) / (v.rho * (1 - gf) * (1 - U)) * SLACK64)
            t = self.op("Add", [v.b, self.op("Mul", [self.op("Abs", [v.a]), self.const(k)])])
            return v.a, 1.0, t, v.rho / (1 - gf) * SLACK64, v.tau + 3 * v.rho * ETA + ETA
        if v.nonneg:
            # lo, hi ≥ 0. s = fl(lo+hi), t = fl(hi − fl(k·s)) (σ = ½). The need is
            #   N ≤ hi(½ + eps + α) + lo(α − ½) + tau + ETA,  α = (u + G(1+u))/2,
            # and t ≥ (1−u)(hi − k'(lo+hi)) − 4ETA with k' = k(1+u)² (also when hi − k·s is a
            # tiny negative), so with rho_t = (1+eps)/(1−u) and k' ≤ (½ − α)/(1+eps) both
            # coefficients are covered: rho_t·t + tau + 6ETA ≥ N.
            alpha = (U + big_g * (1 + U)) / 2
            k = down32((0.5 - alpha) / ((1 + v.eps) * (1 + U) ** 2) / SLACK64)
            s = self.op("Add", [v.a, v.b])
            if rank4:
                ch = v.shape[1]
                ks = self.op("Conv", [s, self.const(np.full((ch, 1, 1, 1), -k, np.float32))],
                             group=ch)
            else:
                ks = self.op("Mul", [s, self.const(-k)])
            t = self.op("Add", [v.b, ks])
            return s, 0.5, t, (1 + v.eps) / (1 - U) * SLACK64, v.tau + 6 * ETA
        # General signs. s = fl(lo+hi), d = fl(hi−lo), t = fl(d + fl(K·|s|)) (σ = ½):
        #   N ≤ (1+eps)d/2 + (eps + u + G(1+u))|lo+hi|/2 + tau + ETA  and
        #   t ≥ (1−u)²d + K(1−u)³|lo+hi| − 6ETA,
        # so rho_t = (1+eps)/(2(1−u)²) and K ≥ (eps + u + G(1+u))/(2 rho_t (1−u)³).
        rho_t = (1 + v.eps) / (2 * (1 - U) ** 2) * SLACK64
        k = up32((v.eps + U + big_g * (1 + U)) / (2 * rho_t * (1 - U) ** 3) * SLACK64)
        s = self.op("Add", [v.a, v.b])
        d = self.op("Sub", [v.b, v.a])
        t = self.op("Add", [d, self.op("Mul", [self.op("Abs", [s]), self.const(k)])])
        return s, 0.5, t, rho_t, v.tau + 8 * ETA

    def affine(self, v: IValue, weight: np.ndarray, bias: np.ndarray | None, fan_in: int,
               abs_row_sum: float, emit, out_shape: tuple[int, ...],
               bias_shape: tuple[int, ...] = ()) -> IValue:
        """y = A x + b for a primitive whose ONNX form is ``emit(x, w32, bias32 | None)``, the
        linear map with coefficient tensor ``weight`` (float64, in the ONNX op's layout) plus
        ``bias``. ``abs_row_sum`` bounds every row sum of |A|; ``fan_in`` the number of terms
        of any output's sum. Two applications of ``emit``: centre and radius (module doc)."""
        n = int(fan_in)
        gam = gamma32(n + 2)
        sigma = self.sigma(v)
        w = np.asarray(weight, dtype=np.float64)
        self.max_fan_in = max(self.max_fan_in, n)
        wc, u_w = round_weights(w, sigma)
        big_g = (u_w + gam * (1 + u_w)) * SLACK64
        x, sig2, t, rho_t, tau_t = self._operands(v, big_g)
        assert sig2 == sigma
        b32 = db = None
        if bias is not None:
            bias = np.asarray(bias, dtype=np.float64)
            b32 = near32(bias)
            if not (np.all(np.isfinite(bias)) and np.all(np.isfinite(b32))):
                raise FastIntervalUnavailable("non-finite bias")
            db = np.abs(bias - b32.astype(np.float64))  # exact (Sterbenz / b32 = 0)
        f = (1 + gamma32(n + 2)) * (1 + 8 * U)
        scale = rho_t * f * SLACK64
        mr = abs_scaled_up(w, scale)
        row = float(abs_row_sum) * (1 + 2.0**-30)
        e_abs = 16 * ETA * (sigma * row + row * scale * (1 + U) + n + 2)
        e = row * tau_t + e_abs
        if bias is not None:
            e = e + gam * np.abs(b32.astype(np.float64)) + db
        e = up32(np.broadcast_to(f * e * SLACK64, bias.shape if bias is not None
                                 else bias_shape))
        if not (np.all(np.isfinite(mr)) and np.all(np.isfinite(e))):
            raise FastIntervalUnavailable("radius constants overflow float32")
        c1 = emit(x, wc, b32)
        r1 = emit(t, mr, e)
        self.guard(c1, len(out_shape))
        return IValue("cr", c1, r1, tuple(out_shape))

    def positive_linear(self, v: IValue, fan_in: int, gain: float, emit,
                        out_shape: tuple[int, ...]) -> IValue:
        """y = A x for a structural linear map with A ≥ 0 and row sums ≤ ``gain`` (average
        pooling, sum/mean reductions), computed with relative error ≤ γ = gamma32(fan_in+2)
        against A|x| by ``emit(x)``.

        On an ``lh`` box with lo ≥ 0 it maps lo and hi directly (A ≥ 0 is monotone, and the
        error is relative to A·lo = |A lo|): eps' = (1+eps)/(1−γ) − 1, tau' = gain·tau +
        underflow terms. Otherwise the affine rule with the map applied twice and the radius
        scaled by one Mul and shifted by one Add (two more roundings, in F)."""
        n = int(fan_in)
        gam = gamma32(n + 2)
        self.max_fan_in = max(self.max_fan_in, n)
        if v.kind == "lh" and v.nonneg:
            eps = ((1 + v.eps) / (1 - gam) - 1) * SLACK64
            tau = (gain * v.tau + 4 * (n + 2 + gain) * ETA) * (1 + 2 * gam)
            return IValue("lh", emit(v.a), emit(v.b), tuple(out_shape), eps=eps, tau=tau,
                          nonneg=True)
        x, sigma, t, rho_t, tau_t = self._operands(v, gam * SLACK64)
        c1 = emit(x)
        if sigma != 1.0:
            c1 = self.op("Mul", [c1, self.const(np.float32(sigma))])
        f = (1 + gam) * (1 + 8 * U) / (1 - U) ** 2
        m = up32(rho_t * f * SLACK64)
        e = up32(f * (gain * tau_t + 16 * (n + 2 + gain * (1 + rho_t)) * ETA) * SLACK64)
        r1 = self.op("Add", [self.op("Mul", [emit(t), self.const(m)]), self.const(e)])
        self.guard(c1, len(out_shape))
        return IValue("cr", c1, r1, tuple(out_shape))

    def outer(self, v: IValue) -> tuple[str, str]:
        """Float32 tensors lo, hi with lo ≤ x ≤ hi for every x of the value's set: the pending
        widening applied in the graph, its own roundings included (round to nearest:
        |fl(z) − z| ≤ u|z|, exact for a subnormal sum, ≤ ETA for a subnormal product).

        ``lh``: m = fl(fl(|a|·K) + T) ≥ (1−u)²K|a| + (1−u)T − (1−u)ETA, and fl(a − m) ≤
        a + u|a| − (1−u)m, so K ≥ (eps + u)/(1−u)³ and T ≥ (tau + ETA)/(1−u)² give
        fl(a − m) ≤ a − eps|a| − tau (and fl(b + m_b) ≥ b + eps|b| + tau the same way).
        ``cr``: r' = fl(fl(r·P) + fl(fl(|c|·K) + T)) ≥ (1−u)²P·r + (1−u)³K|c| + (1−u)²T − 2ETA
        and fl(c − r') ≤ c + u|c| − (1−u)r', so P ≥ rho/(1−u)³, K ≥ (eps + u)/(1−u)⁴ and
        T ≥ (tau + 2ETA)/(1−u)³ give fl(c ∓ r') beyond c ∓ (rho·r + eps|c| + tau)."""
        if v.kind == "lh":
            if v.eps == 0.0 and v.tau == 0.0:
                return v.a, v.b
            k = self.const(up32((v.eps + U) / (1 - U) ** 3 * SLACK64))
            t = self.const(up32((v.tau + ETA) / (1 - U) ** 2 * SLACK64))

            def margin(end: str) -> str:
                return self.op("Add", [self.op("Mul", [self.op("Abs", [end]), k]), t])

            return self.op("Sub", [v.a, margin(v.a)]), self.op("Add", [v.b, margin(v.b)])
        if not v.guarded:
            self.guard(v.a, len(v.shape))
        p = self.const(up32(v.rho / (1 - U) ** 3 * SLACK64))
        k = self.const(up32((v.eps + U) / (1 - U) ** 4 * SLACK64))
        t = self.const(up32((v.tau + 2 * ETA) / (1 - U) ** 3 * SLACK64))
        spread = self.op("Add", [self.op("Mul", [self.op("Abs", [v.a]), k]), t])
        r = self.op("Add", [self.op("Mul", [v.b, p]), spread])
        return self.op("Sub", [v.a, r]), self.op("Add", [v.a, r])

    def increasing_kernel(self, v: IValue, op_type: str, rel: float, absolute: float,
                          nonneg: bool, finite_input: bool = False, **attrs) -> IValue:
        """y = σ(x) for a nondecreasing σ that onnxruntime computes with the kernel
        ``op_type`` (attributes ``attrs``), assumed to satisfy |σ̂(x) − σ(x)| ≤ rel·|σ(x)| +
        absolute for every float32 x (±∞ included, with σ's limits there, unless
        ``finite_input``). On the exact bounds lo ≤ x ≤ hi of :meth:`outer`: σ(x) ≥ σ(lo) ≥
        σ̂(lo) − rel|σ(lo)| − absolute, and |σ(lo)| ≤ (|σ̂(lo)| + absolute)/(1 − rel), so the
        ``lh`` result has eps = rel/(1 − rel), tau = absolute/(1 − rel). ``nonneg`` (σ ≥ 0 on
        ℝ): the lower tensor goes through Relu — when σ̂(lo) < 0 the bound becomes −tau ≤ 0 ≤
        σ(x), still sound. ``finite_input`` (a kernel that is wrong at ±∞, for a bounded σ
        whose values beyond ±M, M the largest float32, are within rel·|σ(±M)| of σ(±M)):
        lo and hi are first clipped to [−M, M] (exact), so an infinite bound is read as ±M."""
        lo, hi = self.outer(v)
        if finite_input:
            top = float(np.finfo(np.float32).max)
            lims = [self.const(np.float32(-top)), self.const(np.float32(top))]
            lo, hi = self.op("Clip", [lo, *lims]), self.op("Clip", [hi, *lims])
        lo, hi = self.op(op_type, [lo], **attrs), self.op(op_type, [hi], **attrs)
        if nonneg:
            lo = self.op("Relu", [lo])
        return IValue("lh", lo, hi, v.shape, eps=rel / (1 - rel) * SLACK64,
                      tau=absolute / (1 - rel) * SLACK64, nonneg=nonneg)

    def monotone(self, v: IValue, fn_lo, fn_hi=None, shape=None, nonneg=None,
                 activation: str | None = None) -> IValue:
        """An exact nondecreasing map applied to lo and hi (MaxPool, ReduceMax, Clip): the
        pending widening commutes with it (x ↦ x + eps|x| + tau is increasing)."""
        w = self.lh(v, activation)
        fn_hi = fn_hi or fn_lo
        return replace(w, a=fn_lo(w.a), b=fn_hi(w.b), shape=tuple(shape or w.shape),
                       nonneg=w.nonneg if nonneg is None else nonneg)


# --------------------------------------------------------------------------------------------
# The driver


def unsupported_primitives(net) -> list[str]:
    """Names of the primitive classes of ``net`` that declare no onnxruntime interval rule
    (the contract's "ort_interval")."""
    return sorted({type(n.op).__name__ for n in net.nodes[1:] if not n.op.has("ort_interval")})


def multiply_adds(net) -> int:
    """Rough multiply-add count of one forward pass (affine fan-in × outputs; 1 per entry
    elsewhere)."""
    total = 0
    for n in net.nodes[1:]:
        fan_in = n.op.fan_in if isinstance(n.op, AffinePrimitive) else 1
        total += int(np.prod(n.shape)) * int(fan_in or 1)
    return total


class OrtIntervalEngine:
    """The interval graph of a network, with its onnxruntime session, reusable across boxes.

    ``nodes="output"`` materialises only the network output; ``"all"`` every node.
    ``nonneg_input`` builds the graph for boxes with lower bound ≥ 0 (one pass cheaper)."""

    def __init__(self, net, nodes: str = "output", nonneg_input: bool = False,
                 threads: int = 0) -> None:
        import onnxruntime as ort  # lazy: onnxruntime and onnx are heavy
        from onnx import TensorProto, helper

        missing = unsupported_primitives(net)
        if missing:
            raise FastIntervalUnavailable(
                f"no onnxruntime interval rule for {', '.join(missing)}")
        t0 = time.perf_counter()
        self.net_size = len(net.nodes)
        self.output = net.output
        self.input_shape = tuple(net.input_shape)
        self.nonneg_input = bool(nonneg_input)
        self.shapes = [tuple(n.shape) for n in net.nodes]
        b = IntervalGraphBuilder()
        values: list[IValue] = [IValue("lh", "x_lo", "x_hi", self.input_shape,
                                       nonneg=self.nonneg_input)]
        for node in net.nodes[1:]:
            values.append(node.op.emit_interval_onnx(b, *(values[i] for i in node.inputs)))
        want = list(range(1, len(net.nodes))) if nodes == "all" else [net.output]
        if net.output == 0:
            want = []
        outputs: list[str] = []
        self.values: dict[int, IValue] = {}
        for k in want:
            v = values[k]
            if tuple(v.shape) != self.shapes[k]:
                raise RuntimeError(f"interval graph shape {v.shape} != IR shape {self.shapes[k]}"
                                   f" at node {k}")
            names = []
            for name in (v.a, v.b):
                if name in ("x_lo", "x_hi"):
                    name = b.op("Identity", [name])
                names.append(name)
            v = replace(v, a=names[0], b=names[1])
            self.values[k] = v
            outputs += [n for n in names if n not in outputs]
        guard = None
        if b.guards:
            guard = b.op("Sum", b.guards) if len(b.guards) > 1 else b.guards[0]
            outputs.append(guard)
        self.guard_name = guard
        self.output_names = outputs
        f32 = TensorProto.FLOAT
        graph = helper.make_graph(
            b.nodes, "boundprop_interval",
            [helper.make_tensor_value_info(n, f32, list(self.input_shape))
             for n in ("x_lo", "x_hi")],
            [helper.make_tensor_value_info(n, f32, None) for n in outputs],
            initializer=b.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="boundprop.domains.interval_ort")
        model.ir_version = min(model.ir_version, 9)
        self.graph_nodes = len(b.nodes)
        self.build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ort.set_default_logger_severity(3)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = ort_threads(threads)
        opts.log_severity_level = 3
        # Large constants go in as OrtValues (no protobuf copy, no 2 GB limit); onnxruntime
        # requires them to outlive the session, so the engine keeps them.
        self._external = [ort.OrtValue.ortvalue_from_numpy(a) for a in b.external.values()]
        if self._external:
            opts.add_external_initializers(list(b.external), self._external)
        self._external_arrays = b.external
        self.session = ort.InferenceSession(model.SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"],
                                            disabled_optimizers=DISABLED_OPTIMIZERS)
        self.session_s = time.perf_counter() - t0

    def run(self, lower: np.ndarray, upper: np.ndarray) -> dict[int, tuple[np.ndarray,
                                                                          np.ndarray]]:
        """Bounds (float64, enclosing the real-arithmetic image) of the materialised nodes."""
        lower = np.asarray(lower, dtype=np.float64).reshape(self.input_shape)
        upper = np.asarray(upper, dtype=np.float64).reshape(self.input_shape)
        if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
            raise FastIntervalUnavailable("the box is unbounded")
        lo32, hi32 = down32(lower), up32(upper)
        if self.nonneg_input and np.any(lo32 < 0):
            raise ValueError("engine built for nonnegative boxes")
        outs = self.session.run(self.output_names, {"x_lo": lo32, "x_hi": hi32})
        got = dict(zip(self.output_names, outs))
        if self.guard_name is not None and not np.all(np.isfinite(got[self.guard_name])):
            raise FastIntervalUnavailable("float32 overflow in the interval pass")
        result = {}
        for k, v in self.values.items():
            a, b = got[v.a], got[v.b]
            if a.shape != self.shapes[k] or b.shape != self.shapes[k]:
                raise RuntimeError(f"node {k}: onnxruntime computed shape {a.shape}, the IR "
                                   f"says {self.shapes[k]}")
            result[k] = to_float64_bounds(v, a, b)
        return result


_ENGINES: dict[tuple, tuple] = {}


def get_engine(net, nodes: str = "output", nonneg_input: bool = False) -> OrtIntervalEngine:
    """The engine of ``net`` (built once per network object and mode, then reused)."""
    key = (id(net), nodes, bool(nonneg_input))
    hit = _ENGINES.get(key)
    if hit is not None and hit[0]() is net:
        return hit[1]
    eng = OrtIntervalEngine(net, nodes, nonneg_input)
    _ENGINES[key] = (weakref.ref(net), eng)
    weakref.finalize(net, _ENGINES.pop, key, None)  # the session goes with the network
    return eng


def interval_bounds_ort(net, input_set, nodes: str = "all"
                        ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Interval enclosures (real arithmetic) over the input set's bounding box, computed by
    onnxruntime in float32; one entry per IR node (None for nodes not materialised when
    ``nodes="output"``). Raises :class:`FastIntervalUnavailable` when it cannot."""
    if nodes not in ("all", "output"):
        raise BoundpropError("nodes must be 'all' or 'output'")
    s = input_set.fit(net.input_shape)
    lower, upper = np.asarray(s.lower, np.float64), np.asarray(s.upper, np.float64)
    if not (np.all(np.isfinite(lower)) and np.all(np.isfinite(upper))):
        raise FastIntervalUnavailable("the box is unbounded")
    eng = get_engine(net, nodes, nonneg_input=bool(np.all(down32(lower) >= 0)))
    got = eng.run(lower, upper)
    out: list = [None] * len(net.nodes)
    out[0] = (lower, upper)
    for k, bounds in got.items():
        out[k] = bounds
    return out


__all__ = ["FastIntervalUnavailable", "IValue", "IntervalGraphBuilder", "OrtIntervalEngine",
           "get_engine", "interval_bounds_ort", "multiply_adds", "unsupported_primitives"]
