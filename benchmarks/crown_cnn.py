"""Linear (CROWN-style) bounds on CNNs and ResNets: wall and CPU time, output width / lowest
margin, peak memory (ru_maxrss of a fresh subprocess per model) and which nodes were
linear-bounded (``OutputBounds.layers[k].method``).

    python benchmarks/crown_cnn.py [model-name ...]     # one JSON line per model

Shipped models use their declared input set (as tests/golden); the vnncomp2021 cases
(``../shared/vnncomp2021``, skipped when absent) use their first vnnlib property.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VNN = ROOT.parent / "shared" / "vnncomp2021"
CASES = {
    "lenet": (ROOT / "models/lenet.onnx", None),
    "resnet_block": (ROOT / "models/resnet_block.onnx", None),
    "torch_resnet_tiny_dynamo": (ROOT / "models/torch_resnet_tiny_dynamo.onnx", None),
    "vgg_small_relu": (ROOT / "models/vgg_small_relu.onnx", None),
    "cifar_base_kw": (VNN / "oval21/cifar_base_kw.onnx",
                      VNN / "oval21/cifar_base_kw-img1598-eps0.0026143790849673205.vnnlib"),
    "resnet_2b": (VNN / "cifar10_resnet/resnet_2b.onnx",
                  VNN / "cifar10_resnet/prop_0_eps_0.008.vnnlib"),
}


def measure(name: str) -> dict:
    """One model, in this process."""
    import boundprop as bp
    from boundprop.analysis import linear_function_bounds
    from boundprop.sets import default_input_set
    from boundprop.vnnlib import load_vnnlib

    onnx, prop = CASES[name]
    net = bp.load(onnx)
    out: dict = {"model": name}
    if prop is None:
        s = default_input_set(net)
    else:
        n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
        box, unsafe = load_vnnlib(prop, n_in, n_out).cases[0]
        s = box.fit(net.input_shape)
        c = np.vstack([a for a, _ in unsafe if len(a)])
        b = np.concatenate([bb for a, bb in unsafe if len(a)])
    t, cpu = time.perf_counter(), time.process_time()
    ob = bp.output_bounds(net, s, method="linear")
    out["seconds"] = round(time.perf_counter() - t, 3)
    out["cpu_seconds"] = round(time.process_time() - cpu, 3)
    out["mean_width"] = float(np.mean(ob.upper - ob.lower))
    methods = [getattr(layer, "method", "?") for layer in ob.layers]
    out["methods"] = {m: methods.count(m) for m in sorted(set(methods))}
    if prop is not None:
        t = time.perf_counter()
        lo, _ = linear_function_bounds(net, s, c)
        out["spec_seconds"] = round(time.perf_counter() - t, 3)
        out["lowest_margin"] = float((lo - b).min())
    out["peak_MiB"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def main(argv: list[str]) -> None:
    if len(argv) == 2 and argv[0] == "--one":
        print(json.dumps(measure(argv[1])))
        return
    for name in argv or list(CASES):
        onnx, _ = CASES[name]
        if not onnx.exists():
            print(json.dumps({"model": name, "skipped": f"{onnx} absent"}))
            continue
        r = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True,
                           text=True, cwd=ROOT)
        print(r.stdout.strip() or r.stderr.strip()[-2000:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
