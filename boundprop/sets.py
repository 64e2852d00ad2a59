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

METADATA_KEY = "boundprop.input_set"


class InputSetError(BoundpropError):
    """An input set is malformed or does not fit the model."""


def _finite_array(name: str, a: Any) -> np.ndarray:
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputSetError(f"input set {name} is not numeric") from None
    if not np.all(np.isfinite(arr)):
        raise InputSetError(f"input set {name} contains NaN or infinite values")
    return arr


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
        lo, hi = _finite_array("lower bound", lower), _finite_array("upper bound", upper)
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
        rng = rng or np.random.default_rng()
        return self.lower_ + (self.upper_ - self.lower_) * rng.random((n, *self.shape))

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
        c = _finite_array("center", center)
        e = float(_finite_array("radius", eps))
        if e < 0:
            raise InputSetError(f"ℓ∞ ball radius {e:g} is negative")
        if clip is not None:
            clip = (float(clip[0]), float(clip[1]))
            if clip[0] > clip[1]:
                raise InputSetError(f"clip range {clip} is empty")
            if np.any(c + e < clip[0]) or np.any(c - e > clip[1]):
                raise InputSetError("the ℓ∞ ball does not meet the clip range: the set is empty")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "eps", e)
        object.__setattr__(self, "clip", clip)
        object.__setattr__(self, "shape", c.shape)

    @property
    def lower(self) -> np.ndarray:
        # Rounded outward: the box must contain the real ball.
        lo = np.nextafter(self.center - self.eps, -np.inf)
        return lo if self.clip is None else np.clip(lo, *self.clip)

    @property
    def upper(self) -> np.ndarray:
        hi = np.nextafter(self.center + self.eps, np.inf)
        return hi if self.clip is None else np.clip(hi, *self.clip)

    def fit(self, shape: tuple[int, ...]) -> LinfBall:
        return LinfBall(self._check_shape(self.center, shape, "center"), self.eps, self.clip)

    def sample(self, n: int, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng or np.random.default_rng()
        lo, hi = self.lower, self.upper
        return lo + (hi - lo) * rng.random((n, *self.shape))

    def to_json(self) -> dict[str, Any]:
        d = {"kind": "linf", "center": self.center.reshape(-1).tolist(), "eps": self.eps,
             "shape": list(self.shape)}
        if self.clip is not None:
            d["clip"] = list(self.clip)
        return d


@dataclass(frozen=True, eq=False)
class L2Ball(InputSet):
    """{x : ‖x − center‖₂ ≤ radius}."""

    center: np.ndarray
    radius: float

    def __init__(self, center: Any, radius: float):
        c = _finite_array("center", center)
        r = float(_finite_array("radius", radius))
        if r < 0:
            raise InputSetError(f"ℓ2 ball radius {r:g} is negative")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "shape", c.shape)

    @property
    def lower(self) -> np.ndarray:
        return np.nextafter(self.center - self.radius, -np.inf)

    @property
    def upper(self) -> np.ndarray:
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
        return self.center + (g * r).reshape((n, *self.shape))

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
    shape = shape or (tuple(doc["shape"]) if "shape" in doc else None)
    return s.fit(tuple(shape)) if shape is not None else s


def default_input_set(net) -> InputSet:
    """The input set a model declares in its metadata (``boundprop.input_set``)."""
    spec = net.metadata.get(METADATA_KEY)
    if not spec:
        raise InputSetError(f"{net.source}: the model declares no default input set (metadata "
                            f"'{METADATA_KEY}'); give one with --box, --linf, --l2 or --vnnlib")
    return input_set_from_json(spec, net.input_shape)
