"""auto_LiRPA side of benchmarks/vs_auto_lirpa.py; runs under the auto_LiRPA venv's Python
(torch, onnx2torch, auto_LiRPA), never under boundprop's.

    python _lirpa_side.py CASE.npz OUT.json

CASE.npz: ``onnx`` (path), ``lo``/``hi`` (the box, shaped as the model input incl. batch),
``y0`` (onnxruntime's output at the box centre, to check the conversion), optionally ``C``
(K × n_out: bound C·y instead of y). OUT.json is rewritten after each step so that a caller
that kills this process on a timeout keeps what finished. Each method entry: ``lower``/``upper``
(lists), ``seconds`` (bound computation only, best of up to 3 runs when a run takes < 0.5 s),
``peak_rss_mb`` (process peak after it), or ``error`` (one line).

Torch runs on CPU with 2 threads; alpha-CROWN uses auto_LiRPA's default optimisation settings
(recorded in OUT.json as ``alpha_settings``).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

import numpy as np

THREADS = 2
UPGRADE_OPSET = 13
FAST_S = 0.5  # a run faster than this is repeated (best of 3), as on boundprop's side
ALPHA_KEYS = ("iteration", "lr_alpha", "optimizer", "lr_decay", "early_stop_patience",
              "start_save_best", "keep_best", "fix_interm_bounds", "init_alpha")


def one_line(e: BaseException) -> str:
    s = f"{type(e).__name__}: {e}".strip().splitlines()
    return (s[0] if s else type(e).__name__)[:200]


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def convert_model(path: str, x0, y0):
    """(torch module, note): onnx2torch's conversion, retried after an ONNX opset upgrade when
    the file's opset is too old for onnx2torch; raises with a one-line reason."""
    import onnx
    import torch
    from onnx import version_converter
    from onnx2torch import convert

    m = onnx.load(path)
    try:
        model, note = convert(m), "ok"
    except Exception as e:  # noqa: BLE001 - retried once, else reported
        try:
            model = convert(version_converter.convert_version(m, UPGRADE_OPSET))
            note = f"ok after opset upgrade to {UPGRADE_OPSET} ({one_line(e)[:80]})"
        except Exception:  # noqa: BLE001
            raise RuntimeError(f"onnx2torch: {one_line(e)}") from e
    model.eval()
    with torch.no_grad():
        y = model(x0).detach().numpy().reshape(-1)
    ref = np.asarray(y0, float).reshape(-1)
    if y.shape != ref.shape:
        raise RuntimeError(f"converted output shape {y.shape} != onnxruntime's {ref.shape}")
    err = float(np.max(np.abs(y - ref)))
    if err > 1e-3 * (1 + float(np.max(np.abs(ref)))):
        raise RuntimeError(f"converted model disagrees with onnxruntime at the box centre "
                           f"(max |diff| {err:.3g})")
    return model, note


def timed_bounds(bm, bx, method: str, C):
    import torch
    times, first = [], None
    while True:
        t = time.perf_counter()
        with torch.set_grad_enabled(method == "CROWN-Optimized"):
            lb, ub = bm.compute_bounds(x=(bx,), method=method, C=C)
        times.append(time.perf_counter() - t)
        first = first or (lb, ub)
        if times[0] >= FAST_S or len(times) == 3:
            return first, min(times)


def main() -> None:
    case_path, out_path = sys.argv[1], sys.argv[2]
    warnings.filterwarnings("ignore")
    t0 = time.perf_counter()
    import auto_LiRPA
    import onnx
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor, PerturbationLpNorm

    torch.set_num_threads(THREADS)
    res: dict = {"versions": {"torch": torch.__version__, "auto_LiRPA": auto_LiRPA.__version__,
                              "onnx": onnx.__version__}, "torch_threads": THREADS,
                 "import_s": time.perf_counter() - t0}

    def save():
        with open(out_path, "w") as f:
            json.dump(res, f)

    case = np.load(case_path, allow_pickle=False)
    lo = torch.tensor(case["lo"], dtype=torch.float32)
    hi = torch.tensor(case["hi"], dtype=torch.float32)
    C = torch.tensor(case["C"], dtype=torch.float32)[None] if "C" in case.files else None
    x0 = (lo + hi) / 2
    t = time.perf_counter()
    try:
        model, note = convert_model(str(case["onnx"]), x0, case["y0"])
    except Exception as e:  # noqa: BLE001 - reported, not handled
        res["conversion"] = str(e) if isinstance(e, RuntimeError) else one_line(e)
        save()
        return
    res["onnx2torch_s"] = time.perf_counter() - t
    t = time.perf_counter()
    try:
        bm = BoundedModule(model, x0, device="cpu", verbose=False)
    except Exception as e:  # noqa: BLE001
        res["conversion"] = f"auto_LiRPA BoundedModule: {one_line(e)}"
        save()
        return
    res["bounded_module_s"] = time.perf_counter() - t
    res["conversion"] = note
    opts = bm.bound_opts.get("optimize_bound_args", {})
    res["alpha_settings"] = {k: opts[k] for k in ALPHA_KEYS if k in opts}
    res["peak_rss_mb_converted"] = peak_mb()
    save()
    for name, method in [("IBP", "IBP"), ("CROWN", "CROWN"), ("alpha-CROWN", "CROWN-Optimized")]:
        res[name] = {"running": True}
        save()
        try:
            bx = BoundedTensor(x0, PerturbationLpNorm(norm=np.inf, x_L=lo, x_U=hi))
            (lb, ub), dt = timed_bounds(bm, bx, method, C)
            res[name] = {"lower": lb.detach().reshape(-1).tolist(),
                         "upper": ub.detach().reshape(-1).tolist(), "seconds": dt,
                         "peak_rss_mb": peak_mb()}
        except Exception as e:  # noqa: BLE001
            res[name] = {"error": one_line(e)}
        save()


if __name__ == "__main__":
    main()
