"""``bp.certify``: output bounds and ℓ, L, B constants of a network as one
:class:`boundprop.certificate.Certificate`."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from boundprop.analysis import output_bounds
from boundprop.certificate import Certificate
from boundprop.constants import constants, objective_constants
from boundprop.errors import BoundpropError
from boundprop.ir import Network
from boundprop.sets import InputSet


def _check_options(norm: str, wrt: str, method: str, param_radius: float) -> None:
    """One-line errors for options :func:`certify` does not know (a NaN radius would make
    every parameter-ball constant NaN)."""
    for name, value, known in (("norm", norm, ("2", "inf", "1")), ("wrt", wrt, ("input", "params")),
                               ("method", method, ("interval", "linear", "alpha"))):
        if value not in known:
            raise BoundpropError(f"unknown {name} {value!r}; use one of {', '.join(known)}")
    try:
        rho = float(param_radius)
    except (TypeError, ValueError):
        raise BoundpropError(f"parameter radius {param_radius!r} is not a number") from None
    if not (np.isfinite(rho) and rho >= 0):
        raise BoundpropError(f"parameter radius {rho:g} must be a finite number ≥ 0")


def certify(net: Network, input_set: InputSet | None = None, norm: str = "2",
            wrt: str = "input", method: str = "linear", param_radius: float = 0.0,
            loss: str | None = None, targets: Any = None, reduction: str = "mean",
            free: list[str] | tuple[str, ...] = (), symbolic: bool = True) -> Certificate:
    """Certify ``net``: output bounds over ``input_set`` and ℓ, L, B in the p-norm ``norm``
    (``"2"``, ``"inf"``, ``"1"``), w.r.t. the input (global when ``input_set`` is None, local
    otherwise) or, with ``wrt="params"``, w.r.t. the dense/conv parameters in a ball of radius
    ``param_radius`` for inputs in ``input_set``. With ``loss`` (``"squared"`` or
    ``"cross_entropy"``) and ``targets``, also the objective's constants and the certified step
    size 1/L. ``free``: named constants kept symbolic in the formulas (e.g. ``["eps_bn"]``)."""
    t0 = time.perf_counter()
    _check_options(norm, wrt, method, param_radius)
    s = None if input_set is None else input_set.fit(net.input_shape)
    layers = None
    lower = upper = None
    if s is not None and wrt == "input":
        ob = output_bounds(net, s, method=method)
        layers, lower, upper = ob.layers, ob.lower, ob.upper
    c = constants(net, s, norm=norm, intervals=method, symbolic=symbolic, layers=layers,
                  wrt=wrt, param_radius=param_radius)
    if wrt == "params" and c.output_box is not None:
        lower, upper = c.output_box
    objective = None
    if loss is not None:
        if wrt != "params":
            raise BoundpropError("a loss applies to constants w.r.t. the parameters "
                                 "(wrt='params')")
        if targets is None:
            raise BoundpropError(f"the {loss} loss needs targets")
        objective = objective_constants(c, loss, np.asarray(targets), reduction)
    if free and symbolic:
        known = set()
        for which in ("lipschitz", "smoothness", "bound"):
            known |= {str(x) for x in getattr(c, f"{which}_formula").free_symbols}
        missing = [f for f in free if f not in known]
        if missing:
            raise BoundpropError(f"no constant named {', '.join(missing)} in the formulas; "
                                 f"they use: {', '.join(sorted(known))}")
    model = {"path": net.source, "sha256": net.sha256, "input": net.input_name,
             "output": net.output_name, "input_shape": list(net.input_shape),
             "output_shape": list(net.output_shape)}
    return Certificate(model, s, c.norm, wrt, method, lower, upper, c, objective,
                       tuple(free), time.perf_counter() - t0)
