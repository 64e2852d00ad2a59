"""Input sets: boxes, ℓ∞ balls (optionally clipped to a box) and ℓ2 balls.

Every set knows its bounding box (``lower``/``upper``, what interval propagation starts from),
how to draw points from it (for audits and tests), and how to be written to and read from JSON
(certificates, and the default set a shipped model carries in its ONNX ``metadata_props`` under
``boundprop.input_set``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from boundprop.errors import BoundpropError
from boundprop.safe_io import json_safe

METADATA_KEY = "boundprop.input_set"


class InputSetError(BoundpropError):
    """An input set is malformed or does not fit the model."""


def _finite_array(name: str, a: Any) -> np.ndarray:
    """``a`` as a float64 array; a one-line :class:`InputSetError` if it is not real-valued or
    holds a NaN or an infinity (a set must be bounded and well defined)."""
    try:
        arr = np.asarray(a)
        if arr.dtype.kind not in "biuf":
            raise TypeError
        arr = arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputSetError(f"input set {name} is not real-valued ({type(a).__name__}); give "
                            "numbers") from None
    bad = ~np.isfinite(arr)
    if np.any(bad):
        k = int(np.argmax(bad.reshape(-1)))
        v = arr.reshape(-1)[k]
        at = "" if arr.ndim == 0 else f" at flat index {k}"
        raise InputSetError(f"input set {name} is not finite (NaN or ±inf){at}: {v}; the set "
                            "must be bounded: give finite numbers")
    return arr


def _scalar(name: str, x: Any) -> float:
    """A finite real number ``x`` (a radius): one-line error otherwise."""
    arr = _finite_array(name, x)
    if arr.size != 1:
        raise InputSetError(f"input set {name} must be one number, got an array of shape "
                            f"{arr.shape}")
    return float(arr.reshape(-1)[0])


def _clip_range(clip: Any) -> tuple[float, float] | None:
    """The clip range (lo, hi) of an ℓ∞ ball: two numbers, lo ≤ hi, never NaN; an infinite
    end is no clipping on that side, and (-inf, inf) is no clipping at all (None)."""
    if clip is None:
        return None
    try:
        if isinstance(clip, (str, bytes)) or len(clip) != 2:
            raise TypeError
        lo, hi = (float(v) for v in clip)
    except (TypeError, ValueError, OverflowError):
        raise InputSetError(f"clip range {clip!r} is not two numbers [LO, HI]") from None
    if np.isnan(lo) or np.isnan(hi):
        raise InputSetError(f"clip range [{lo}, {hi}] contains NaN; give two numbers LO ≤ HI")
    if lo > hi:
        raise InputSetError(f"clip range [{lo:g}, {hi:g}] is empty (LO > HI); give LO ≤ HI")
    if lo == -np.inf and hi == np.inf:
        return None
    return lo, hi


def _uniform_in(lo: np.ndarray, hi: np.ndarray, n: int, shape: tuple[int, ...],
                rng: np.random.Generator | None) -> np.ndarray:
    """n points uniform in the box [lo, hi]: lo·(1 − u) + hi·u, which cannot overflow when
    hi − lo does (a box [−1e308, 1e308]), clipped into the box against rounding."""
    rng = rng or np.random.default_rng()
    u = rng.random((n, *shape))
    return np.clip(lo * (1.0 - u) + hi * u, lo, hi)


class InputSet:
    """A set of network inputs. Subclasses give the bounding box and a sampler."""

    shape: tuple[int, ...]

    @property
    def lower(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def upper(self) -> np.ndarray:
        raise NotImplementedError

    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def fit(self, shape: tuple[int, ...]) -> InputSet:
        """This set with its arrays broadcast to the model input ``shape`` (checked)."""
        raise NotImplementedError

    def _check_shape(self, arr: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
        if arr.ndim == 0:
            return np.broadcast_to(arr, shape).copy()
        if arr.shape == shape:
            return arr
        if arr.size == int(np.prod(shape)):
            return arr.reshape(shape)
        raise InputSetError(f"input set {what} has shape {arr.shape} ({arr.size} values) but the "
                            f"model input has shape {shape} ({int(np.prod(shape))} values)")


@dataclass(frozen=True, eq=False)
class Box(InputSet):
    """{x : lower ≤ x ≤ upper}, entrywise; scalars broadcast."""

    lower_: Any
    upper_: Any

    def __init__(self, lower: Any, upper: Any) -> None:
        lo, hi = _finite_array("box lower bound", lower), _finite_array("box upper bound", upper)
        try:
            lo_b, hi_b = np.broadcast_arrays(lo, hi)
        except ValueError:
            raise InputSetError(f"box bounds of shapes {lo.shape} and {hi.shape} do not "
                                "broadcast together") from None
        if np.any(lo_b > hi_b):
            k = int(np.argmax((lo_b > hi_b).reshape(-1)))
            raise InputSetError(f"box lower bound > upper bound at flat index {k} "
                                f"({lo_b.reshape(-1)[k]:g} > {hi_b.reshape(-1)[k]:g}): the box "
                                "is empty")
        object.__setattr__(self, "lower_", lo_b.copy())
        object.__setattr__(self, "upper_", hi_b.copy())
        object.__setattr__(self, "shape", lo_b.shape)

    @property
    def lower(self) -> np.ndarray:
        return self.lower_

    @property
    def upper(self) -> np.ndarray:
        return self.upper_

    def fit(self, shape: tuple[int, ...]) -> Box:
        return Box(self._check_shape(self.lower_, shape, "lower bound"),
                   self._check_shape(self.upper_, shape, "upper bound"))

    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return _uniform_in(self.lower_, self.upper_, n, self.shape, rng)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "box", "lower": self.lower_.reshape(-1).tolist(),
                "upper": self.upper_.reshape(-1).tolist(), "shape": list(self.shape)}

    def __repr__(self) -> str:
        return f"Box(shape={self.shape}, lower∈[{self.lower_.min():g}, {self.lower_.max():g}], " \
               f"upper∈[{self.upper_.min():g}, {self.upper_.max():g}])"


@dataclass(frozen=True, eq=False)
class LinfBall(InputSet):
    """{x : ‖x − center‖∞ ≤ eps}, intersected with the box ``clip`` = (lo, hi) if given."""

    center: np.ndarray
    eps: float
    clip: tuple[float, float] | None = None

    def __init__(self, center: Any, eps: float, clip: tuple[float, float] | None = None):
        c = _finite_array("ℓ∞ ball center", center)
        e = _scalar("ℓ∞ ball radius", eps)
        if e < 0:
            raise InputSetError(f"ℓ∞ ball radius {e:g} is negative; give a radius ≥ 0")
        clip = _clip_range(clip)
        if clip is not None:
            with np.errstate(over="ignore"):
                out = (c + e < clip[0]) | (c - e > clip[1])
            if np.any(out):
                k = int(np.argmax(out.reshape(-1)))
                raise InputSetError(f"the ℓ∞ ball misses the clip range [{clip[0]:g}, "
                                    f"{clip[1]:g}] at flat index {k} (center "
                                    f"{c.reshape(-1)[k]:g}, radius {e:g}): the set is empty")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "eps", e)
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "shape", c.shape)

    @property
    def lower(self) -> np.ndarray:
        # Rounded outward: the box must contain the real ball.
        with np.errstate(over="ignore"):  # a huge radius: the box is infinite, still sound
            lo = np.nextafter(self.center - self.eps, -np.inf)
        return lo if self.clip is None else np.clip(lo, *self.clip)

    @property
    def upper(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            hi = np.nextafter(self.center + self.eps, np.inf)
        return hi if self.clip is None else np.clip(hi, *self.clip)

    def fit(self, shape: tuple[int, ...]) -> LinfBall:
        return LinfBall(self._check_shape(self.center, shape, "center"), self.eps, self.clip)

    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        return _uniform_in(self.lower, self.upper, n, self.shape, rng)

    def to_json(self) -> dict[str, Any]:
        d = {"kind": "linf", "center": self.center.reshape(-1).tolist(), "eps": self.eps,
             "shape": list(self.shape)}
        if self.clip is not None:
            d["clip"] = json_safe(list(self.clip))  # ±inf as "inf" / "-inf"
        return d


@dataclass(frozen=True, eq=False)
class L2Ball(InputSet):
    """{x : ‖x − center‖₂ ≤ radius}."""

    center: np.ndarray
    radius: float

    def __init__(self, center: Any, radius: float):
        c = _finite_array("ℓ2 ball center", center)
        r = _scalar("ℓ2 ball radius", radius)
        if r < 0:
            raise InputSetError(f"ℓ2 ball radius {r:g} is negative; give a radius ≥ 0")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "shape", c.shape)

    @property
    def lower(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.nextafter(self.center - self.radius, -np.inf)

    @property
    def upper(self) -> np.ndarray:
        with np.errstate(over="ignore"):
            return np.nextafter(self.center + self.radius, np.inf)

    def fit(self, shape: tuple[int, ...]) -> L2Ball:
        return L2Ball(self._check_shape(self.center, shape, "center"), self.radius)

    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Uniform in the ball (direction uniform on the sphere, radius ∝ U^(1/d))."""
        rng = rng or np.random.default_rng()
        d = int(np.prod(self.shape))
        g = rng.standard_normal((n, d))
        g /= np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-300)
        r = self.radius * rng.random((n, 1)) ** (1.0 / d)
        with np.errstate(over="ignore"):
            return np.clip(self.center + (g * r).reshape((n, *self.shape)), self.lower,
                           self.upper)

    def to_json(self) -> dict[str, Any]:
        return {"kind": "l2", "center": self.center.reshape(-1).tolist(),
                "radius": self.radius, "shape": list(self.shape)}


def input_set_from_json(doc: dict[str, Any] | str, shape: tuple[int, ...] | None = None
                        ) -> InputSet:
    """Parse a set written by ``to_json`` (or a model's metadata); fit it to ``shape``."""
    if isinstance(doc, str):
        try:
            doc = json.loads(doc)
        except json.JSONDecodeError as e:
            raise InputSetError(f"input set is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or "kind" not in doc:
        raise InputSetError("input set must be a JSON object with a 'kind' (box, linf, l2)")
    kind = doc["kind"]
    try:
        if kind == "box":
            s: InputSet = Box(doc["lower"], doc["upper"])
        elif kind == "linf":
            s = LinfBall(doc["center"], doc["eps"], doc.get("clip"))
        elif kind == "l2":
            s = L2Ball(doc["center"], doc["radius"])
        else:
            raise InputSetError(f"unknown input set kind '{kind}' (box, linf, l2)")
    except KeyError as e:
        raise InputSetError(f"input set of kind '{kind}' lacks the field {e}") from None
    shape = shape or (_json_shape(doc["shape"]) if "shape" in doc else None)
    return s.fit(tuple(shape)) if shape is not None else s


def _json_shape(shape: Any) -> tuple[int, ...]:
    """A shape read from JSON: a list of non-negative integers (one-line error otherwise)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                              and 0 <= d < 2**31 for d in shape):
        raise InputSetError(f"input set shape {str(shape)[:60]} is not a list of non-negative "
                            "integers")
    return tuple(shape)


def default_input_set(net) -> InputSet:
    """The input set a model declares in its metadata (``boundprop.input_set``)."""
    spec = net.metadata.get(METADATA_KEY)
    if not spec:
        raise InputSetError(f"{net.source}: the model declares no default input set (metadata "
                            f"'{METADATA_KEY}'); give one with --box, --linf, --l2 or --vnnlib")
    return input_set_from_json(spec, net.input_shape)
