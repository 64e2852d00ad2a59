"""auto_LiRPA side of benchmarks/lipschitz_vs_anchors.py: its local ℓ∞ Lipschitz bound
max_i sup_{x∈box} ‖∇f_i(x)‖₁ (Shi et al. 2022, ``JacobianOP`` + ``GradNorm(norm=1)``, as in
auto_LiRPA's examples/vision/jacobian.py). Runs under the auto_LiRPA venv's Python, never
under boundprop's.

    python _lirpa_jacobian_side.py CASE.npz OUT.json

CASE.npz: the network as a chain of dense layers (``W0``, ``b0``, ``W1``, … with ``acts``, the
activation after each layer but the last: "Relu" | "Sigmoid" | "Tanh"), extracted from the ONNX
by boundprop with any input normalisation folded into the first layer (auto_LiRPA's Jacobian
graph fails on a normalisation module: anchors §6 item 9); ``lo``/``hi`` (the flat box);
``x0``/``y0`` (a point and boundprop's IR output there, to check the rebuilt module); ``dtype``.
OUT.json (rewritten after each output row, so a killed run keeps what finished): ``per_output``
(each row i's bound on sup ‖∇f_i‖₁), ``lipschitz`` (their max), ``seconds`` (all the
``compute_jacobian_bounds`` calls, module construction excluded), ``build_s``, versions.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np

THREADS = 2


def main() -> None:
    case_path, out_path = sys.argv[1], sys.argv[2]
    warnings.filterwarnings("ignore")
    import auto_LiRPA
    import torch
    import torch.nn as nn
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.jacobian import GradNorm, JacobianOP
    from auto_LiRPA.perturbations import PerturbationLpNorm

    torch.set_num_threads(THREADS)
    case = np.load(case_path, allow_pickle=False)
    dtype = torch.float64 if str(case["dtype"]) == "float64" else torch.float32
    torch.set_default_dtype(dtype)  # auto_LiRPA allocates its own tensors in the default dtype
    acts = [str(a) for a in case["acts"]]
    n_layers = len(acts) + 1
    mods: list = []
    for k in range(n_layers):
        W, b = case[f"W{k}"], case[f"b{k}"]
        lin = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(W))
            lin.bias.copy_(torch.tensor(b))
        mods.append(lin)
        if k < len(acts):
            mods.append({"Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "Tanh": nn.Tanh}[acts[k]]())
    model = nn.Sequential(*mods).to(dtype).eval()
    res: dict = {"versions": {"torch": torch.__version__, "auto_LiRPA": auto_LiRPA.__version__},
                 "torch_threads": THREADS, "dtype": str(dtype).replace("torch.", "")}

    def save():
        with open(out_path, "w") as f:
            json.dump(res, f)

    x0 = torch.tensor(case["x0"], dtype=dtype)[None]
    with torch.no_grad():
        err = float((model(x0)[0] - torch.tensor(case["y0"], dtype=dtype)).abs().max())
    res["rebuild_max_abs_diff"] = err
    lo = torch.tensor(case["lo"], dtype=dtype)[None]
    hi = torch.tensor(case["hi"], dtype=dtype)[None]
    n_out = int(case["W" + str(n_layers - 1)].shape[0])

    class LocalLipschitzWrapper(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model
            self.grad_norm = GradNorm(norm=1)

        def forward(self, x, mask):
            y = self.model(x)
            return self.grad_norm(JacobianOP.apply(y.matmul(mask), x))

    mask = torch.zeros(n_out, 1, dtype=dtype)
    mask[0, 0] = 1
    xc = (lo + hi) / 2
    t = time.perf_counter()
    bm = BoundedModule(LocalLipschitzWrapper(model), (BoundedTensor(xc), mask), device="cpu")
    res["build_s"] = time.perf_counter() - t
    save()
    x = BoundedTensor(xc, PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi))
    per, total = [], 0.0
    for i in range(n_out):
        mask.zero_()
        mask[i, 0] = 1
        t = time.perf_counter()
        ub = bm.compute_jacobian_bounds((x, mask), bound_lower=False)[1]
        total += time.perf_counter() - t
        per.append(float(ub.max()))
        res.update(per_output=per, seconds=total, lipschitz=max(per),
                   complete=len(per) == n_out)
        save()


if __name__ == "__main__":
    main()
