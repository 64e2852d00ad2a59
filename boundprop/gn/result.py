"""The outcome of a Gauss-Newton solve (:class:`Result`), in boundprop's names and in those of
``scipy.optimize.OptimizeResult`` as ``scipy.optimize.least_squares`` fills it (``x``, ``nfev``,
``nit``, ``status``, ``message``, ``success``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Result", "Status", "status_code"]

# Integer status of a stop message, by message prefix (first match wins). 0..3 and -2 are
# scipy.optimize.least_squares' codes: 0 the evaluation limit (here the iteration limit),
# 1 gtol (first-order: zero gradient, or no measurable predicted decrease), 2 ftol (a cost
# criterion: relative cost ≤ tol, or the cost at the graph's rounding level), 3 xtol (a step
# the graph cannot resolve), -2 stopped by the callback. scipy has no code for a solver that
# stalls; -3 (no trial decreased the cost) and -4 (a non-finite cost or gradient) extend its
# range below 0, where ``success`` is False as for scipy's failures.
STATUS_CODES: tuple[tuple[str, int], ...] = (
    ("converged: stationary", 1),
    ("converged: relative cost", 2),
    ("converged: noise floor", 2),
    ("converged: small step", 3),
    ("max_iter", 0),
    ("stopped by callback", -2),
    ("stalled: non-finite", -4),
    ("stalled", -3),
)


def status_code(message: str) -> int:
    """The integer status of a stop message (table ``STATUS_CODES``)."""
    for prefix, code in STATUS_CODES:
        if message.startswith(prefix):
            return code
    raise ValueError(f"no status code for the stop message {message!r}")


class Status(int):
    """Why the solve stopped: an int, scipy.optimize.least_squares' status code (see
    ``STATUS_CODES``; > 0 means converged), carrying its message.

    Before the scipy names, ``Result.status`` was the message string; a Status still compares
    equal to its message (``status == "max_iter"``), has ``startswith``, and prints as it
    (``str``, ``format``, f-strings). It hashes as its int, so use ``message`` as a dict key."""

    message: str

    def __new__(cls, message: str) -> Status:
        status = super().__new__(cls, status_code(message))
        status.message = message
        return status

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.message == other
        return int(self) == other

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = int.__hash__

    def startswith(self, prefix, *bounds) -> bool:
        """``message.startswith``."""
        return self.message.startswith(prefix, *bounds)

    def __str__(self) -> str:
        return self.message

    def __format__(self, spec: str) -> str:
        return self.message if spec == "" else format(int(self), spec)

    def __repr__(self) -> str:
        return f"Status({int(self)}, {self.message!r})"

    def __reduce__(self):
        return Status, (self.message,)


@dataclass
class Result:
    """Outcome of :func:`boundprop.gn.solver.solve`.

    scipy's names (``scipy.optimize.OptimizeResult`` of ``least_squares``): ``x`` the final
    point (flat, float64); ``nit`` the iterations run; ``nfev`` the point evaluations (forward
    passes) the solve made; ``status`` an int (:class:`Status`: 1 stationary, 2 cost
    criterion, 3 small step, 0 iteration limit, -2 stopped by the callback, -3 stalled, -4
    non-finite cost or gradient); ``message`` why it stopped ("converged: relative cost <=
    tol", "converged: noise floor", "converged: small step", "converged: stationary",
    "stalled: ...", "max_iter", "stopped by callback"; meanings in the solver's docstring);
    ``success`` = status > 0 (a convergence test was met); ``cost`` the final objective f(x).

    boundprop's names, kept as aliases: ``w`` = x, ``iterations`` = nit, ``forward_passes`` =
    nfev, ``converged`` = success; ``status`` compares equal to ``message`` as it did when it
    was that string.

    ``nfev``/``ort_calls`` are what the problem's counters increased by during the solve (so
    a problem used before still reports this solve's cost); ``cost0`` is f at the start;
    ``gamma`` the γ the next iteration would start from.

    ``history`` has one dict per iteration: iteration, cost (after the iteration), step_norm,
    gamma and damping (= 1/γ) of the step taken (or of the last trial when none was accepted),
    rho (GN ratio actual/predicted; None for a gradient step), accepted, step_kind ("gn",
    "gradient" or None), trials (GN trial points evaluated), grad_norm (‖g‖ of the objective at
    the iteration's start; projected in the subspace method), forward_passes, ort_calls and
    seconds (cumulative since the solve started); with ``certified_step`` also certified_t and
    gradient_cost; with grad_norm damping gamma_hat (γ̂ of the step taken, γ = γ̂/‖g‖)."""

    x: np.ndarray
    cost: float
    cost0: float
    nit: int
    message: str
    history: list[dict] = field(default_factory=list)
    nfev: int = 0
    ort_calls: int = 0
    seconds: float = 0.0
    loss: str = "squared"
    method: str = "full"
    damping: str = "lm"
    gamma: float | None = None

    @property
    def status(self) -> Status:
        """scipy's int status, equal to ``message`` as a string too (:class:`Status`)."""
        return Status(self.message)

    @property
    def success(self) -> bool:
        """status > 0: a convergence test was met."""
        return self.status > 0

    @property
    def converged(self) -> bool:
        """Alias of ``success``."""
        return self.success

    @property
    def w(self) -> np.ndarray:
        """Alias of ``x``."""
        return self.x

    @property
    def iterations(self) -> int:
        """Alias of ``nit``."""
        return self.nit

    @property
    def forward_passes(self) -> int:
        """Alias of ``nfev``."""
        return self.nfev

    def to_json(self) -> dict:
        """A JSON-serializable dict (w as a list; non-finite floats as None): boundprop's keys
        (w, iterations, status as the message, forward_passes, converged, …) and scipy's
        (nit, nfev, message, success, status_code: the int status)."""
        d = {"w": np.asarray(self.x, dtype=np.float64).tolist(), "cost": self.cost,
             "cost0": self.cost0, "iterations": self.nit, "status": self.message,
             "history": self.history, "forward_passes": self.nfev,
             "ort_calls": self.ort_calls, "seconds": self.seconds, "loss": self.loss,
             "method": self.method, "damping": self.damping, "gamma": self.gamma,
             "converged": self.success, "nit": self.nit, "nfev": self.nfev,
             "message": self.message, "success": self.success,
             "status_code": int(self.status)}
        return _jsonable(d)


def _jsonable(x):
    """``x`` with numpy scalars/arrays as Python numbers/lists and non-finite floats as None."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(float(x)) else None
    return x
