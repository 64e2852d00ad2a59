"""Gauss-Newton through onnxruntime, three ways (copy what you need).

1. Input reconstruction: find x with f(x) = y for a shipped MLP.
2. Last-layer fit: refit the last Gemm of the 784-100-100-10 MLP to new targets on a batch.
3. The same reconstruction with the certified safeguard: each iteration also computes the
   gradient step certified by boundprop's smoothness constants on a ball of radius ρ, and takes
   it when it beats the GN step (so the decrease is guaranteed even if the FD Jacobian is bad).

    python examples/gn_fit.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.gn import Problem, certified_step, fit_layers, reconstruct_input, solve
from boundprop.sets import default_input_set

MODELS = Path(__file__).resolve().parent.parent / "models"


def line(h: dict) -> None:
    print(f"  iter {h['iteration']:>3}  cost {h['cost']:.3e}  step {h.get('step_norm', 0):.2e}"
          f"  passes {h['forward_passes']:>6}  ort calls {h['ort_calls']:>4}"
          + (f"  [{h['step_kind']}]" if h.get("step_kind") else ""))


def main() -> None:
    rng = np.random.default_rng(0)

    model = MODELS / "mlp_tanh.onnx"
    net = bp.load(model)
    s = default_input_set(net)
    x_hidden, x_start = s.sample(2, rng)
    y = net(x_hidden)
    print(f"1. reconstruct an input of {model.name} from its output {np.round(y, 3)}")
    r = reconstruct_input(model, y, x0=x_start, tol=1e-12, callback=line)
    miss = np.linalg.norm(net(r.x.reshape(net.input_shape)) - y)
    print(f"   {r.message}; |f(x) - y| = {miss:.2e} in {r.seconds:.2f} s\n")

    model = MODELS / "mlp_784_100_100_10_relu.onnx"
    net = bp.load(model)
    X = default_input_set(net).sample(16, rng).reshape(16, -1)
    Y = np.eye(10)[rng.integers(0, 10, 16)] * 5.0  # new targets: scaled one-hot
    print(f"2. refit the last layer of {model.name} on 16 inputs to one-hot targets")
    r = fit_layers(model, X, Y, tol=1e-12, callback=line)
    print(f"   {r.message}: cost {r.cost0:.3e} -> {r.cost:.3e}\n")

    model = MODELS / "mlp_tanh.onnx"
    net = bp.load(model)
    problem = Problem(model, variables="input", targets=y, x0=x_start)
    safeguard = certified_step(problem, radius=0.5)
    print("3. reconstruction with the certified gradient step as a safeguard (ρ = 0.5)")
    r = solve(problem, tol=1e-12, certified_step=safeguard, callback=line)
    print(f"   {r.message}; certified L_F on the last ball: {safeguard.state['smooth']:.4g}")


if __name__ == "__main__":
    main()
