"""Soundness of the certified constants: every test tries to beat a certified ℓ, L or B with
honest samples (pairs of points, finite-difference Jacobians and Jacobian-vector products,
outputs) and fails if one does."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import boundprop as bp
from boundprop.constants import constants
from boundprop.sets import Box, InputSetError, L2Ball, LinfBall, default_input_set
from tests.conftest import (
    HEAVY_ENTRIES,
    activation_entries,
    model_id,
    needs_vnncomp,
    shipped_models,
    vnncomp_models,
)

NORMS = ("2", "inf", "1")
ORD = {"2": 2, "inf": np.inf, "1": 1}
# The float64 IR evaluation of a difference f(x) − f(y) carries a rounding error of a few ulp of
# the values involved; certified constants are about the real function.
REL = 1e-9


def model_set(net):
    try:
        return default_input_set(net)
    except InputSetError:
        return Box(np.zeros(net.input_shape), np.ones(net.input_shape))


def vnorm(v: np.ndarray, norm: str) -> np.ndarray:
    """p-norm of each sample (rows) of a stack of tensors."""
    return np.linalg.norm(v.reshape(v.shape[0], -1), ord=ORD[norm], axis=1)


def jvp(net, x: np.ndarray, v: np.ndarray, h: float) -> np.ndarray:
    """Central-difference J(x)·v for each row pair (x_i, v_i)."""
    return (net(x + h * v) - net(x - h * v)) / (2 * h)


def unit(rng, n: int, shape, norm: str) -> np.ndarray:
    v = rng.standard_normal((n, *shape))
    if norm == "inf":
        v = np.sign(v)
    return v / vnorm(v, norm).reshape((n,) + (1,) * len(shape))


def assert_constants_sound(net, s, c, norm: str, rng, n: int = 200, check_l: bool = True
                           ) -> dict:
    """Try to beat c.lipschitz, c.bound and (if finite) c.smoothness on the set s (or on
    Gaussian points at several scales when s is None). Returns the best empirical values."""
    shape = net.input_shape
    if s is None:
        x = np.concatenate([sc * rng.standard_normal((n // 4, *shape)) for sc in
                            (0.1, 1.0, 10.0, 100.0)])
        y = x + np.concatenate([sc * rng.standard_normal((n // 4, *shape)) for sc in
                                (1e-3, 0.1, 1.0, 10.0)])
    else:
        x, y = s.sample(n, rng), s.sample(n, rng)
        # close pairs as well: the difference quotient then approaches ‖J‖
        t = rng.random((n,) + (1,) * len(shape)) * 1e-3
        y = np.concatenate([y[: n // 2], x[n // 2:] + t[n // 2:] * (y[n // 2:] - x[n // 2:])])
    fx, fy = net(x), net(y)
    num = vnorm(fx - fy, norm)
    den = vnorm(x - y, norm)
    scale = vnorm(np.abs(fx) + np.abs(fy), norm)
    ok = den > 0
    ratio = np.where(ok, num / np.where(ok, den, 1), 0.0)
    bad = num > c.lipschitz * den * (1 + 1e-12) + REL * scale
    assert not np.any(bad), (f"pair beats ℓ = {c.lipschitz:.6g}: ratio {ratio[bad].max():.6g}")
    out = {"lipschitz": float(ratio.max())}
    if s is not None:
        fmax = vnorm(fx, norm).max()
        assert fmax <= c.bound * (1 + 1e-12), f"output norm {fmax:.6g} > B = {c.bound:.6g}"
        out["bound"] = float(fmax)
    if check_l and np.isfinite(c.smoothness):
        # L: ‖J(x)v − J(y)v‖ ≤ L‖x − y‖‖v‖, Jacobian-vector products by central differences.
        m = min(n, 60)
        v = unit(rng, m, shape, norm)
        xs, ys = x[:m], y[:m]
        if s is not None:
            ys = xs + 0.05 * (s.sample(m, rng) - xs)
        span = max(1.0, float(np.max(np.abs(xs))))
        h = 1e-4 * span
        d = vnorm(jvp(net, xs, v, h) - jvp(net, ys, v, h), norm)
        dx = vnorm(xs - ys, norm)
        # central-difference error: h²/6 sup‖f'''‖ per term; allow a relative slack
        slack = 1e-5 * vnorm(jvp(net, xs, v, h), norm) + 1e-7
        bad = d > c.smoothness * dx * (1 + 1e-9) + slack
        assert not np.any(bad), (f"Jacobian pair beats L = {c.smoothness:.6g}: "
                                 f"{(d / np.maximum(dx, 1e-300))[bad].max():.6g}")
        out["smoothness"] = float((d / np.maximum(dx, 1e-300)).max())
    return out


def fd_jacobian_norm(net, x: np.ndarray, norm: str, h: float = 1e-6) -> float:
    """‖J(x)‖_p of the central-difference Jacobian (all input directions, batched)."""
    shape = net.input_shape
    n = int(np.prod(shape))
    eye = np.eye(n).reshape(n, *shape)
    cols = (net(x[None] + h * eye) - net(x[None] - h * eye)) / (2 * h)
    jac = cols.reshape(n, -1).T
    return float(np.linalg.norm(jac, ord=ORD[norm]))


MODELS = shipped_models()
_CONV = {"lenet", "vgg", "cnn", "resnet", "ops_coverage"}


def _cases():
    """Every model × norm; ℓ2 of the convolutional models (certified conv norms: seconds
    each) runs by default on one of them and with ``-m slow`` on all; so do the models over
    HEAVY_ENTRIES activation entries (their local enclosures are a full CROWN pass)."""
    out = []
    for p in MODELS:
        big = activation_entries(p) > HEAVY_ENTRIES
        for norm in NORMS:
            heavy = big or norm == "2" and any(k in p.name for k in _CONV) and \
                p.name != "lenet.onnx"
            out.append(pytest.param(p, norm, id=f"{model_id(p)}-{norm}",
                                    marks=[pytest.mark.slow] if heavy else []))
    return out


@pytest.mark.parametrize(("path", "norm"), _cases())
def test_local_constants_sound(path, norm):
    net = bp.load(path)
    s = model_set(net)
    c = constants(net, s, norm)
    rng = np.random.default_rng(1)
    assert_constants_sound(net, s, c, norm, rng)
    assert c.lipschitz <= c.lipschitz_product
    if int(np.prod(net.input_shape)) <= 800:
        for x in s.sample(2, rng):
            j = fd_jacobian_norm(net, x, norm)
            assert j <= c.lipschitz * (1 + 1e-6) + 1e-9, f"FD ‖J‖ {j:.6g} > ℓ {c.lipschitz:.6g}"


@pytest.mark.parametrize(("path", "norm"), _cases())
def test_global_constants_sound(path, norm):
    net = bp.load(path)
    g = constants(net, None, norm)
    loc = constants(net, model_set(net), norm)
    assert_constants_sound(net, None, g, norm, np.random.default_rng(2), n=120)
    # the local constants are taken on a subset: never larger than the global ones
    assert loc.lipschitz_product <= g.lipschitz_product * (1 + 1e-9)
    assert loc.smoothness <= g.smoothness * (1 + 1e-9) or not np.isfinite(g.smoothness)


@needs_vnncomp()
@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("path", vnncomp_models(), ids=model_id)
def test_vnncomp_constants_sound(path, norm):
    net = bp.load(path)
    s = model_set(net)
    if isinstance(s, Box) and not np.isfinite(s.upper - s.lower).all():
        pytest.skip("no bounded set")
    lo, hi = s.lower, s.upper
    centre = 0.5 * (lo + hi)
    s = LinfBall(centre, 0.01 * float(np.max(hi - lo)) + 1e-3)
    c = constants(net, s, norm)
    assert_constants_sound(net, s, c, norm, np.random.default_rng(3), n=100)


def test_relu_smoothness_is_infinite_with_reason():
    net = bp.load(MODELS[0].parent / "mlp_relu.onnx")
    c = constants(net, None, "2")
    assert c.smoothness == float("inf")
    assert "Relu" in c.smoothness_reason and "jumps" in c.smoothness_reason
    assert np.isfinite(c.lipschitz)


def test_stable_relu_network_is_locally_smooth():
    """A tiny box where no ReLU can change phase: the network is affine there, L = 0."""
    net = bp.load(MODELS[0].parent / "mlp_relu.onnx")
    x = model_set(net).sample(1, np.random.default_rng(0))[0]
    c = constants(net, LinfBall(x, 1e-9), "2")
    assert c.smoothness == 0.0
    assert c.lipschitz <= constants(net, None, "2").lipschitz


def test_symbolic_values_give_the_numbers():
    """Substituting the certified values into the global formulas gives the certified numbers
    (the numbers are rounded up: equal to 1e-12 relative, never below)."""
    for name, norm in (("mlp_sigmoid.onnx", "2"), ("resnet_block.onnx", "inf"),
                       ("vgg_small_smooth_bn_train.onnx", "1")):
        net = bp.load(MODELS[0].parent / name)
        for s in (None, model_set(net)):
            c = constants(net, s, norm)
            for which, number in (("lipschitz", c.lipschitz), ("smoothness", c.smoothness),
                                  ("bound", c.bound)):
                expr = c.formula(which)
                value = float(sp.N(expr, 30)) if expr != sp.oo else float("inf")
                if not np.isfinite(number):
                    assert not np.isfinite(value)
                    continue
                assert value <= number <= value * (1 + 1e-12) + 1e-300, (name, which)


def test_free_batchnorm_epsilon():
    """L of a network with training-mode batch norm as a function of ε: the formula at the
    model's ε is the certified number, and it decreases as ε grows."""
    net = bp.load(MODELS[0].parent / "vgg_small_smooth_bn_train.onnx")
    c = constants(net, None, "inf")
    eps = sp.Symbol("eps_bn", nonnegative=True)
    f = c.formula("lipschitz", free=["eps_bn"])
    assert f.free_symbols == {eps}
    e0 = c.values[eps]
    assert float(f.subs(eps, e0)) == pytest.approx(c.lipschitz, rel=1e-9)
    vals = [float(f.subs(eps, e)) for e in (1e-4, 1e-2, 1.0, 1e2)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_enclosure_tighter_than_product_locally():
    net = bp.load(MODELS[0].parent / "mlp_784_100_100_10_relu.onnx")
    c = constants(net, model_set(net), "inf")
    assert c.lipschitz_enclosure is not None
    assert c.lipschitz_enclosure < c.lipschitz_product


# ---------------------------------------------------------------- random networks

from tests.test_random_graphs import FAMILIES, build  # noqa: E402

_COMMON = dict(deadline=None, database=None, print_blob=True,
               suppress_health_check=[HealthCheck.function_scoped_fixture,
                                      HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize("family", list(FAMILIES))
@settings(max_examples=25, **_COMMON)
@given(data=st.data(), norm=st.sampled_from(NORMS), local=st.booleans())
def test_random_graph_constants_sound(family, data, norm, local, tmp_path):
    import onnx

    g = build(data, family)
    path = tmp_path / "model.onnx"
    onnx.save(g.model(), str(path))
    net = bp.load(path)
    rng = np.random.default_rng(0)
    s = None
    if local:
        centre = rng.standard_normal(net.input_shape)
        s = (LinfBall(centre, float(rng.choice([0.01, 0.5])))
             if rng.random() < 0.7 else L2Ball(centre, 0.3))
    c = constants(net, s, norm)
    assert_constants_sound(net, s, c, norm, rng, n=60)


@pytest.mark.parametrize("args", [
    ["--wrt", "params", "--norm", "inf", "--radius", "0.1"],
    ["--loss", "squared", "--targets", "0"],
    ["--global", "--wrt", "params"],
    ["--free", "no_such_constant", "--symbolic"],
    ["--wrt", "params", "--radius", "-1"],
    ["--wrt", "params", "--radius", "0.1", "--loss", "squared", "--targets", "0"],
])
def test_certify_cli_errors_are_one_line(args, capsys):
    from boundprop.cli import main

    code = main(["certify", str(MODELS[0].parent / "mlp_sigmoid.onnx"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("boundprop: error:"), (code, err)


def test_certify_cli_table_and_certificate(tmp_path, capsys):
    import json

    from boundprop.cli import main

    cert = tmp_path / "c.json"
    code = main(["certify", str(MODELS[0].parent / "mlp_sigmoid.onnx"), "--symbolic",
                 "-o", str(cert)])
    out = capsys.readouterr().out
    assert code == 0 and "Lipschitz ℓ" in out and "where:" in out
    doc = json.loads(cert.read_text())
    for key in ("schema", "model", "input_set", "norm", "wrt", "output_bounds", "lipschitz",
                "smoothness", "bound", "layers", "method", "tool", "elapsed_s"):
        assert key in doc
    assert doc["lipschitz"] <= doc["lipschitz_product"]
