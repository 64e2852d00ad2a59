"""Elementwise activations, one small class each.

Each activation is y_i = σ(x_i) with a scalar function σ; its abstract rules (derivative bounds
on an interval, relaxations) live on its class.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import special

from boundprop.ops.base import (
    ConversionContext,
    Primitive,
    Shape,
    Tensor,
    Value,
    as_str,
    attr,
    const_value,
    float_array,
    onnx_converter,
)

ACTIVATIONS: dict[str, type[Activation]] = {}


def _newton_root(f, df, x: float, steps: int = 60) -> float:
    for _ in range(steps):
        x -= f(x) / df(x)
    return x


_SQRT2PI = np.sqrt(2 * np.pi)
# argmin of x·Φ(x): root of Φ(x) + x φ(x), by Newton on its derivative φ(x)(2 − x²).
_GELU_ARGMIN = _newton_root(
    lambda x: 0.5 * (1 + special.erf(x / np.sqrt(2))) + x * np.exp(-x * x / 2) / _SQRT2PI,
    lambda x: np.exp(-x * x / 2) / _SQRT2PI * (2 - x * x), -0.75)


def _gelu_tanh_derivative(x: float) -> float:
    k = np.sqrt(2 / np.pi)
    t = np.tanh(k * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


_GELU_TANH_ARGMIN = _newton_root(
    _gelu_tanh_derivative, lambda x: (_gelu_tanh_derivative(x + 1e-6)
                                      - _gelu_tanh_derivative(x - 1e-6)) / 2e-6, -0.75, 40)


class Activation(Primitive):
    """Elementwise y = σ(x). Subclasses implement :meth:`fn` on float64 arrays."""

    family: ClassVar[str] = "activation"
    onnx_op: ClassVar[str] = ""

    def __init__(self, in_shape: Shape, **params: float) -> None:
        self.in_shapes, self.out_shape = (tuple(in_shape),), tuple(in_shape)
        self.params = {k: float(v) for k, v in params.items()}

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if cls.onnx_op:
            ACTIVATIONS[cls.onnx_op] = cls

    # Rounding of fn: "exact" (max/min/clip: no rounding), "linear" (one or two rounded
    # products/sums: a few ulp), or "elementary" (library exp/tanh/erf...).
    rounding: ClassVar[str] = "elementary"

    def fn(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def critical_points(self) -> tuple[float, ...]:
        """Points where σ may turn (local extrema, kinks); σ is monotone between them."""
        return ()

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        return self.fn(x)

    def interval(self, box):
        """Exact image of each [l, u]: σ is monotone between its critical points, so the extremes
        are among σ(l), σ(u) and σ at the critical points inside; widened by σ's rounding."""
        from boundprop.rounding import widen, widen_elementary

        lo, hi = box
        a, b = self.fn(lo), self.fn(hi)
        ylo, yhi = np.minimum(a, b), np.maximum(a, b)
        for xc in self.critical_points():
            inside = (lo < xc) & (xc < hi)
            if np.any(inside):
                fc = self.fn(np.full_like(lo, xc))
                ylo = np.where(inside, np.minimum(ylo, fc), ylo)
                yhi = np.where(inside, np.maximum(yhi, fc), yhi)
        if self.rounding == "exact":
            return ylo, yhi
        if self.rounding == "linear":
            return widen(ylo, yhi, 4 * 2.0**-53 * np.maximum(np.abs(ylo), np.abs(yhi)))
        return widen_elementary(ylo, yhi)

    def describe(self) -> str:
        return " ".join(f"{k}={v:g}" for k, v in self.params.items())


class Relu(Activation):
    kind = onnx_op = "Relu"

    def fn(self, x):
        return np.maximum(x, 0.0)

    rounding = "exact"


class LeakyRelu(Activation):
    kind = onnx_op = "LeakyRelu"

    def fn(self, x):
        a = self.params["alpha"]
        return np.where(x >= 0, x, a * x)

    rounding = "linear"

    def critical_points(self):
        return (0.0,) if self.params["alpha"] < 0 else ()


class Sigmoid(Activation):
    kind = onnx_op = "Sigmoid"

    def fn(self, x):
        return special.expit(x)


class Tanh(Activation):
    kind = onnx_op = "Tanh"

    def fn(self, x):
        return np.tanh(x)


class Softplus(Activation):
    """σ(x) = log(1 + eˣ)."""

    kind = onnx_op = "Softplus"

    def fn(self, x):
        return np.logaddexp(0.0, x)


class Softsign(Activation):
    kind = onnx_op = "Softsign"

    def fn(self, x):
        return x / (1.0 + np.abs(x))


class Elu(Activation):
    """σ(x) = x for x ≥ 0, α(eˣ − 1) otherwise."""

    kind = onnx_op = "Elu"

    def fn(self, x):
        return np.where(x >= 0, x, self.params["alpha"] * np.expm1(np.minimum(x, 0.0)))

    def critical_points(self):
        return (0.0,) if self.params["alpha"] < 0 else ()


class Selu(Activation):
    kind = onnx_op = "Selu"

    def fn(self, x):
        a, g = self.params["alpha"], self.params["gamma"]
        return g * np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0)))

    def critical_points(self):
        return (0.0,) if self.params["alpha"] * self.params["gamma"] < 0 else ()


class Celu(Activation):
    kind = onnx_op = "Celu"

    def fn(self, x):
        a = self.params["alpha"]
        return np.maximum(x, 0.0) + np.minimum(0.0, a * np.expm1(np.minimum(x, 0.0) / a))


class Gelu(Activation):
    """Exact GELU x Φ(x) (approximate="none") or its tanh approximation."""

    kind = onnx_op = "Gelu"

    def __init__(self, in_shape: Shape, approximate: str = "none") -> None:
        super().__init__(in_shape)
        self.approximate = approximate

    def fn(self, x):
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x**3)))
        return 0.5 * x * (1.0 + special.erf(x / np.sqrt(2.0)))

    def describe(self) -> str:
        return "" if self.approximate == "none" else "tanh approximation"

    def critical_points(self):
        return (_GELU_TANH_ARGMIN if self.approximate == "tanh" else _GELU_ARGMIN,)


class Erf(Activation):
    kind = onnx_op = "Erf"

    def fn(self, x):
        return special.erf(x)


class HardSigmoid(Activation):
    """σ(x) = max(0, min(1, αx + β))."""

    kind = onnx_op = "HardSigmoid"

    def fn(self, x):
        return np.clip(self.params["alpha"] * x + self.params["beta"], 0.0, 1.0)

    rounding = "linear"


class HardSwish(Activation):
    kind = onnx_op = "HardSwish"

    def fn(self, x):
        return x * np.clip(x / 6.0 + 0.5, 0.0, 1.0)

    rounding = "linear"

    def critical_points(self):
        return (-1.5,)


class Clip(Activation):
    """σ(x) = min(max(x, lo), hi); ReLU6 is Clip(0, 6)."""

    kind = onnx_op = "Clip"

    def fn(self, x):
        return np.clip(x, self.params["lo"], self.params["hi"])

    rounding = "exact"


class PRelu(Activation):
    """Leaky ReLU with a constant slope array broadcast against the input."""

    kind = "PRelu"

    def __init__(self, in_shape: Shape, slope: np.ndarray) -> None:
        super().__init__(in_shape)
        from boundprop.ops.affine import lift

        self.slope_raw = float_array(slope)
        if np.broadcast_shapes(in_shape, self.slope_raw.shape) != tuple(in_shape):
            raise ValueError(f"slope of shape {self.slope_raw.shape} does not broadcast to "
                             f"{in_shape}")
        self.slope = lift(self.slope_raw, len(in_shape))

    def fn(self, x):
        return np.where(x >= 0, x, self.slope * x)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"slope": self.slope_raw}

    rounding = "linear"

    def critical_points(self):
        return (0.0,)


# Default attribute values, per ONNX op.
_DEFAULTS: dict[str, dict[str, float]] = {
    "LeakyRelu": {"alpha": 0.01},
    "Elu": {"alpha": 1.0},
    "Celu": {"alpha": 1.0},
    "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
    "HardSigmoid": {"alpha": 0.2, "beta": 0.5},
}


@onnx_converter(*[op for op in ACTIVATIONS if op not in ("Gelu", "Clip")])
def convert_activation(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if not isinstance(x, Tensor):
        raise ctx.fail("activation input must be computed from the network input")
    params = {k: float(attr(node, k, v)) for k, v in _DEFAULTS.get(node.op_type, {}).items()}
    return [ctx.emit(ACTIVATIONS[node.op_type](x.shape, **params), [x])]


@onnx_converter("Gelu")
def convert_gelu(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    approximate = as_str(attr(node, "approximate", "none"))
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"Gelu approximate='{approximate}' is not supported")
    return [ctx.emit(Gelu(x.shape, approximate), [x])]


@onnx_converter("Clip")
def convert_clip(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    if ctx.opset < 11:
        lo, hi = attr(node, "min", -np.inf), attr(node, "max", np.inf)
    else:
        def bound(i, default):
            if len(args) > i and args[i] is not None:
                return float(const_value(ctx, args[i], "Clip bound").reshape(-1)[0])
            return default
        lo, hi = bound(1, -np.inf), bound(2, np.inf)
    if lo > hi:
        raise ctx.fail(f"Clip min {lo} > max {hi}")
    return [ctx.emit(Clip(x.shape, lo=lo, hi=hi), [x])]


@onnx_converter("PRelu")
def convert_prelu(ctx: ConversionContext, node, args: list[Value]) -> list[Value]:
    x = args[0]
    slope = const_value(ctx, args[1], "PRelu slope")
    try:
        return [ctx.emit(PRelu(x.shape, slope), [x])]
    except ValueError as e:
        raise ctx.fail(str(e)) from None
