"""auto_LiRPA side of benchmarks/tightness_vs_auto_lirpa.py; runs under the auto_LiRPA venv's
Python (torch, onnx2torch, auto_LiRPA), never under boundprop's.

    python _lirpa_side.py CASE.npz OUT.json

CASE.npz: ``onnx`` (path), ``lo``/``hi`` (the box, shaped as the model input incl. batch 1),
optionally ``C`` (K × n_out: bound C·y instead of y). OUT.json is rewritten after each method
(IBP, CROWN, alpha-CROWN) so that a caller that kills this process on a timeout keeps what
finished. Each entry: ``lower``/``upper`` (lists) and ``seconds``, or ``error`` (one line).
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np


def one_line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".strip().splitlines()
    return (s[0] if s else type(e).__name__)[:200]


def main() -> None:
    case_path, out_path = sys.argv[1], sys.argv[2]
    warnings.filterwarnings("ignore")
    import auto_LiRPA
    import onnx
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm
    from auto_LiRPA.optimized_bounds import default_optimize_bound_args
    from onnx2torch import convert

    torch.set_num_threads(max(1, torch.get_num_threads()))
    case = np.load(case_path, allow_pickle=False)
    res: dict = {"versions": {"torch": torch.__version__, "auto_LiRPA": auto_LiRPA.__version__,
                              "onnx": onnx.__version__},
                 "alpha_iterations": int(default_optimize_bound_args["iteration"])}

    def save():
        with open(out_path, "w") as f:
            json.dump(res, f)

    lo = torch.tensor(case["lo"], dtype=torch.float32)
    hi = torch.tensor(case["hi"], dtype=torch.float32)
    C = torch.tensor(case["C"], dtype=torch.float32)[None] if "C" in case.files else None
    try:
        model = convert(onnx.load(str(case["onnx"])))
        model.eval()
        x0 = (lo + hi) / 2
        with torch.no_grad():
            model(x0)
    except Exception as e:  # noqa: BLE001 - reported, not handled
        res["conversion"] = f"conversion failed: {one_line(e)}"
        save()
        return
    try:
        t = time.perf_counter()
        bm = BoundedModule(model, x0, device="cpu", verbose=False)
        res["bounded_module_s"] = time.perf_counter() - t
    except Exception as e:  # noqa: BLE001
        res["conversion"] = f"BoundedModule failed: {one_line(e)}"
        save()
        return
    res["conversion"] = "ok"
    save()
    for name, method in [("IBP", "IBP"), ("CROWN", "CROWN"), ("alpha-CROWN", "CROWN-Optimized")]:
        res[name] = {"running": True}
        save()
        try:
            bx = BoundedTensor(x0, PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi))
            t = time.perf_counter()
            with torch.set_grad_enabled(method == "CROWN-Optimized"):
                lb, ub = bm.compute_bounds(x=(bx,), method=method, C=C)
            dt = time.perf_counter() - t
            res[name] = {"lower": lb.detach().reshape(-1).tolist(),
                         "upper": ub.detach().reshape(-1).tolist(), "seconds": dt}
        except Exception as e:  # noqa: BLE001
            res[name] = {"error": one_line(e)}
        save()


if __name__ == "__main__":
    main()
