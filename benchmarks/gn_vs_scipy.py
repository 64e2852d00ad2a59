"""boundprop's Gauss-Newton solver against scipy.optimize.least_squares (trf and lm), on the
same problems, the same onnxruntime session and the same residual function, in one run.

Problems (targets are outputs of the model at a hidden point, so the optimal cost is 0):
  1. input reconstruction, models/mlp_784_100_100_10_relu.onnx (p = 784, q = 10; float64 graph)
  2. input reconstruction, models/lenet.onnx (p = 784, q = 10; Conv has no float64 kernel in
     onnxruntime, so the float32 graph)
  3. last-layer fit, models/mlp_784_100_100_10_relu.onnx, weight + bias of the last Gemm
     (p = 1010) on a batch of 32 inputs (q = 320; float64 graph)
  4. the same on 128 inputs (q = 1280 ≥ p: scipy's lm applies)

Goal: relative cost cost/cost0 ≤ 1e-8. Columns: iterations, sample evaluations (one point
of the variables evaluated once = one evaluation; scipy: nfev + p·njev for 2-point, 2p·njev
for 3-point), onnxruntime calls, seconds, final relative cost. scipy gets ``diff_step`` =
sqrt(eps) of the graph's dtype (refs/gn.md §1: its default step is wrong for float32 graphs),
the 2-point scheme, and ``x_scale="jac"`` for lm (its default since 1.16). ``lm`` refuses
problems with fewer residuals than variables (1–3): reported as n/a.

    python benchmarks/gn_vs_scipy.py
Writes benchmarks/results/gn_vs_scipy.json.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import scipy.optimize

from boundprop.gn.layers import last_layer_names
from boundprop.gn.oracle import Problem
from boundprop.gn.solver import solve
from boundprop.sets import default_input_set

ROOT = Path(__file__).resolve().parent.parent

TOL = 1e-8


def problems() -> list[tuple[str, dict]]:
    import boundprop as bp

    rng = np.random.default_rng(0)
    out = []
    for name, model in (("input reconstruction, MLP 784-100-100-10",
                         "models/mlp_784_100_100_10_relu.onnx"),
                        ("input reconstruction, LeNet", "models/lenet.onnx")):
        net = bp.load(ROOT / model)
        s = default_input_set(net)
        hidden = s.sample(1, rng)[0]
        start = s.sample(1, rng)[0]
        out.append((name, dict(model=ROOT / model, variables="input", targets=net(hidden),
                               x0=start)))
    model = ROOT / "models/mlp_784_100_100_10_relu.onnx"
    net = bp.load(model)
    names = last_layer_names(model)
    for n in (32, 128):  # q = 320 < p = 1010, and q = 1280 > p (where scipy's lm applies)
        X = default_input_set(net).sample(n, rng).reshape(n, -1)
        # targets: the outputs of the same network with the last layer perturbed
        probe = Problem(model, variables=names, inputs=X, targets=np.zeros((n, 10)))
        w_hidden = probe.w0 + 0.1 * rng.standard_normal(probe.p)
        Y = probe.outputs(w_hidden[None])[0]
        out.append((f"last-layer fit, MLP 784-100-100-10 ({n} samples)",
                    dict(model=model, variables=names, inputs=X, targets=Y)))
    return out


def run_boundprop(spec: dict, difference: str) -> dict:
    problem = Problem(spec["model"], variables=spec["variables"], targets=spec["targets"],
                      inputs=spec.get("inputs"), x0=spec.get("x0"), difference=difference)
    t0 = time.perf_counter()
    r = solve(problem, max_iter=100, tol=TOL)
    return {"iterations": r.nit, "evaluations": problem.forward_passes,
            "ort_calls": problem.ort_calls, "seconds": time.perf_counter() - t0,
            "relative_cost": r.cost / r.cost0, "dtype": problem.dtype, "p": problem.p,
            "q": problem.q, "status": r.message}


def run_scipy(spec: dict, method: str) -> dict:
    problem = Problem(spec["model"], variables=spec["variables"], targets=spec["targets"],
                      inputs=spec.get("inputs"), x0=spec.get("x0"))
    if method == "lm" and problem.q < problem.p:
        return {"note": "lm needs at least as many residuals as variables"}
    w0 = problem.w0.copy()
    cost0 = 0.5 * float(np.sum(problem.residuals(w0[None])[0] ** 2))
    calls = {"n": 0}

    def fun(w):
        calls["n"] += 1
        return problem.residuals(np.asarray(w, dtype=np.float64)[None])[0]

    target = TOL * cost0
    best = {"cost": cost0}

    def fun_tracked(w):
        r = fun(w)
        best["cost"] = min(best["cost"], 0.5 * float(r @ r))
        if best["cost"] <= target and "at" not in best:
            best["at"] = (calls["n"], time.perf_counter())
        return r

    t0 = time.perf_counter()
    kw = {"x_scale": "jac"} if method == "lm" else {}
    res = scipy.optimize.least_squares(fun_tracked, w0, method=method, diff_step=np.sqrt(
        problem.eps), ftol=1e-15, xtol=1e-15, gtol=1e-15, max_nfev=200 if method == "lm"
        else 100, **kw)
    total = time.perf_counter() - t0
    evals, secs = (best["at"][0], best["at"][1] - t0) if "at" in best else (calls["n"], total)
    return {"iterations": int(res.njev or 0), "evaluations": evals, "ort_calls": evals,
            "seconds": secs, "relative_cost": best["cost"] / cost0,
            "reached": "at" in best, "status": res.message}


def main() -> None:
    rows = []
    print(f"{'problem':<50} {'solver':<22} {'iter':>5} {'evals':>8} {'ort':>7} {'s':>8} "
          f"{'rel. cost':>10}")
    for name, spec in problems():
        for solver, fn in (("boundprop GN (central)", lambda s: run_boundprop(s, "central")),
                           ("boundprop GN (forward)", lambda s: run_boundprop(s, "forward")),
                           ("scipy trf", lambda s: run_scipy(s, "trf")),
                           ("scipy lm", lambda s: run_scipy(s, "lm"))):
            r = fn(spec)
            r.update(problem=name, solver=solver)
            rows.append(r)
            if "note" in r:
                print(f"{name:<50} {solver:<22} n/a: {r['note']}")
                continue
            print(f"{name:<50} {solver:<22} {r['iterations']:>5} {r['evaluations']:>8} "
                  f"{r['ort_calls']:>7} {r['seconds']:>8.2f} {r['relative_cost']:>10.2e}",
                  flush=True)
    out = ROOT / "benchmarks/results/gn_vs_scipy.json"
    out.write_text(json.dumps(rows, indent=1, default=str))
    print(f"written {out}")


if __name__ == "__main__":
    main()
