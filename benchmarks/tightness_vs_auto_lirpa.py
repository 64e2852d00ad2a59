"""Tightness side by side with auto_LiRPA: the same ONNX files, the same input boxes, through
boundprop (interval, linear) and auto_LiRPA (IBP, CROWN, alpha-CROWN).

    python benchmarks/tightness_vs_auto_lirpa.py [--lirpa-python PATH] [--timeout S]
                                                  [--json OUT.json]

auto_LiRPA is a benchmark-only tool, never a dependency of boundprop: it runs in its own venv
(``--lirpa-python``, else $BOUNDPROP_LIRPA_PYTHON, else /work/lirpa-venv/bin/python) through
benchmarks/_lirpa_side.py in a subprocess, exchanging npz/JSON through a temp dir. Without the
venv only boundprop's columns are printed. To build the venv (torch < 2.9 for auto_LiRPA 0.7):

    python -m venv /work/lirpa-venv
    /work/lirpa-venv/bin/pip install torch==2.8.0 torchvision==0.23.0
    /work/lirpa-venv/bin/pip install --no-deps onnx2torch
    /work/lirpa-venv/bin/pip install onnx numpy packaging appdirs pyyaml tqdm graphviz
    git clone https://github.com/Verified-Intelligence/auto_LiRPA /work/auto_LiRPA_src
    /work/lirpa-venv/bin/pip install --no-deps -e /work/auto_LiRPA_src

Quantities: for a plain input set, the mean output width mean(upper − lower); for a VNN-LIB
case, the rows C·y of the property's unsafe conjunctions (A·y ≤ b): the lowest margin
min(lower(A·y) − b) (> 0 refutes that conjunction) and how many rows are proven, plus the mean
width of the C·y rows (for the ratio columns). Ratios are boundprop linear / auto_LiRPA (> 1:
boundprop looser).

Caveat printed with the table: auto_LiRPA computes in float32 and does not round outwards, so
its bounds are not sound in floating point; boundprop's are (real-arithmetic enclosures with
outward rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import boundprop as bp
from boundprop.analysis import linear_function_bounds, output_bounds
from boundprop.sets import Box, LinfBall, default_input_set
from boundprop.vnnlib import load_vnnlib

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
WORK = ROOT / "benchmarks" / "_work"
HELPER = Path(__file__).resolve().parent / "_lirpa_side.py"
DEFAULT_VENV = "/work/lirpa-venv/bin/python"
HEADER = ("auto_LiRPA computes in float32 and does not round outwards: its bounds are not sound "
          "in floating point. boundprop's bounds enclose the real-arithmetic network with outward "
          "rounding.")


def random_mlp(path: Path, act: str, seed: int = 0, widths=(784,) + (200,) * 6 + (10,)) -> None:
    """A seeded 784-200×6-10 MLP (weights N(0,1)/sqrt(fan_in)·2, biases N(0,0.1)), ONNX."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits, cur = [], [], "x"
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        w = (rng.standard_normal((a, b)) / np.sqrt(a) * 2).astype(np.float32)
        c = (rng.standard_normal(b) * 0.1).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(c, f"B{i}")]
        nodes += [helper.make_node("MatMul", [cur, f"W{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"B{i}"], [f"a{i}"])]
        cur = f"a{i}"
        if i < len(widths) - 2:
            nodes.append(helper.make_node(act, [cur], [f"h{i}"]))
            cur = f"h{i}"
    nodes.append(helper.make_node("Identity", [cur], ["y"]))
    g = helper.make_graph(nodes, f"mlp_{act.lower()}_6x200", [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, widths[-1]])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(m, str(path))


def cases() -> list[dict]:
    """Each case: name, onnx path, and either ('vnnlib', file) or ('set', builder)."""
    out = []
    mn = VNN / "mnistfc"
    for eps in ("0.03", "0.05"):
        out.append(dict(name=f"mnist-net_256x2 prop_0 ε={eps}", onnx=mn / "mnist-net_256x2.onnx",
                        vnnlib=mn / f"prop_0_{eps}.vnnlib"))
    for m in ("mlp_sigmoid", "mlp_tanh", "mlp_relu"):
        out.append(dict(name=f"{m} (declared set)", onnx=ROOT / "models" / f"{m}.onnx",
                        declared=True))
    for act in ("Sigmoid", "Tanh"):
        out.append(dict(name=f"random 784-200×6-10 {act.lower()} ε=0.015",
                        onnx=WORK / f"lirpa_mlp_{act.lower()}_6x200.onnx", random=act))
    out.append(dict(name="oval21 cifar_base_kw img1598", onnx=VNN / "oval21/cifar_base_kw.onnx",
                    vnnlib=VNN / "oval21/cifar_base_kw-img1598-eps0.0026143790849673205.vnnlib"))
    out.append(dict(name="cifar10_resnet resnet_2b prop_0",
                    onnx=VNN / "cifar10_resnet/resnet_2b.onnx",
                    vnnlib=VNN / "cifar10_resnet/prop_0_eps_0.008.vnnlib"))
    return out


def prepare(case: dict):
    """(net, box of net.input_shape, C or None, b or None), or raises FileNotFoundError."""
    if case.get("random"):
        random_mlp(case["onnx"], case["random"])
    for k in ("onnx", "vnnlib"):
        if k in case and not Path(case[k]).exists():
            raise FileNotFoundError(str(case[k]))
    net = bp.load(case["onnx"])
    n_in, n_out = int(np.prod(net.input_shape)), int(np.prod(net.output_shape))
    if "vnnlib" in case:
        prop = load_vnnlib(case["vnnlib"], n_in, n_out)
        box, unsafe = prop.cases[0]
        C = np.vstack([a for a, _ in unsafe if len(a)])
        b = np.concatenate([bb for a, bb in unsafe if len(a)])
        return net, box.fit(net.input_shape), C, b
    if case.get("declared"):
        s = default_input_set(net).fit(net.input_shape)
    else:
        x0 = np.random.default_rng(0).uniform(0, 1, net.input_shape)
        s = LinfBall(x0, 0.015, clip=(0, 1)).fit(net.input_shape)
    return net, s, None, None


def as_box(s, shape) -> Box:
    """The input set as a box; both tools get this box (every set here is a box or a clipped
    ℓ∞ ball, which is its own bounding box)."""
    return Box(np.asarray(s.lower, float).reshape(shape), np.asarray(s.upper, float).reshape(shape))


def summarize(lower, upper, b) -> dict:
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    d = {"mean_width": float(np.mean(upper - lower)), "lower": lower.tolist(),
         "upper": upper.tolist()}
    if b is not None:
        m = lower - b
        d.update(lowest_margin=float(m.min()), proven=int((m > 0).sum()), rows=len(m))
    return d


def boundprop_side(net, s, C, b) -> dict:
    res = {}
    for method in ("interval", "linear"):
        t = time.perf_counter()
        if C is not None:
            lo, hi = linear_function_bounds(net, s, C, method=method)
        else:
            ob = output_bounds(net, s, method=method)
            lo, hi = ob.lower.reshape(-1), ob.upper.reshape(-1)
        dt = time.perf_counter() - t
        res[method] = dict(summarize(lo, hi, b), seconds=dt)
    return res


def lirpa_side(py: str, onnx_path: Path, box: Box, C, b, timeout: float, tmp: Path) -> dict:
    case = tmp / "case.npz"
    out = tmp / "out.json"
    if out.exists():
        out.unlink()
    arrs = dict(onnx=np.array(str(onnx_path)), lo=box.lower.astype(np.float64),
                hi=box.upper.astype(np.float64))
    if C is not None:
        arrs["C"] = C
    np.savez(case, **arrs)
    timed_out = False
    try:
        p = subprocess.run([py, str(HELPER), str(case), str(out)], capture_output=True,
                           text=True, timeout=timeout)
        err = p.stderr.strip().splitlines()[-1:] if p.returncode else []
    except subprocess.TimeoutExpired:
        timed_out, err = True, []
    raw = json.loads(out.read_text()) if out.exists() else {}
    res = {"conversion": raw.get("conversion", f"helper failed: {err[0] if err else '?'}"),
           "versions": raw.get("versions"), "alpha_iterations": raw.get("alpha_iterations")}
    for m in ("IBP", "CROWN", "alpha-CROWN"):
        r = raw.get(m)
        if r is None:
            res[m] = "timeout" if timed_out and res["conversion"] == "ok" else "not run"
        elif r.get("running"):
            res[m] = (f"timeout ({timeout:g} s)" if timed_out
                      else f"crashed: {err[0] if err else '?'}")
        elif "error" in r:
            res[m] = f"error: {r['error']}"
        else:
            res[m] = dict(summarize(r["lower"], r["upper"], b), seconds=r["seconds"])
    return res


def fmt(r, vnn: bool) -> str:
    if not isinstance(r, dict):
        return str(r)
    q = (f"{r['lowest_margin']:+.4g} ({r['proven']}/{r['rows']})" if vnn
         else f"{r['mean_width']:.4g}")
    return f"{q}, {r['seconds']:.2f} s"


def looser(bp_r, l_r) -> str:
    """In how many bounds (lower and upper of each output/row) boundprop linear is looser than
    the auto_LiRPA method, and by how much at most."""
    if not (isinstance(bp_r, dict) and isinstance(l_r, dict)):
        return "—"
    gap = np.concatenate([np.asarray(bp_r["upper"]) - np.asarray(l_r["upper"]),
                          np.asarray(l_r["lower"]) - np.asarray(bp_r["lower"])])
    n = int((gap > 1e-6 * (1 + np.abs(np.asarray(l_r["upper"] + l_r["lower"])))).sum())
    return f"{n}/{len(gap)}" + (f" (max {gap.max():.3g})" if n else "")


def ratio(bp_r, l_r) -> str:
    if not (isinstance(bp_r, dict) and isinstance(l_r, dict)) or l_r["mean_width"] <= 0:
        return "—"
    return f"{bp_r['mean_width'] / l_r['mean_width']:.3g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lirpa-python", default=os.environ.get("BOUNDPROP_LIRPA_PYTHON",
                                                             DEFAULT_VENV))
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds for the auto_LiRPA subprocess of one case (all three methods)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/tightness_vs_auto_lirpa.json"))
    args = ap.parse_args()
    have_lirpa = Path(args.lirpa_python).exists()
    print(HEADER)
    if not have_lirpa:
        print(f"auto_LiRPA venv not found at {args.lirpa_python}: boundprop's columns only. "
              "Build it as in this script's docstring, then pass --lirpa-python or set "
              "BOUNDPROP_LIRPA_PYTHON.")
    rows, meta = [], {}
    with tempfile.TemporaryDirectory() as td:
        for case in cases():
            try:
                net, s, C, b = prepare(case)
            except FileNotFoundError as e:
                print(f"skipped {case['name']}: {e} absent", file=sys.stderr)
                continue
            s = as_box(s, net.input_shape)
            row = {"case": case["name"], "onnx": os.path.relpath(case["onnx"], ROOT),
                   "vnnlib": os.path.relpath(case["vnnlib"], ROOT) if "vnnlib" in case else None,
                   "boundprop": boundprop_side(net, s, C, b)}
            if have_lirpa:
                lr = lirpa_side(args.lirpa_python, case["onnx"], s, C,
                                b, args.timeout, Path(td))
                meta["versions"] = lr.pop("versions") or meta.get("versions")
                meta["alpha_iterations"] = lr.pop("alpha_iterations") or meta.get(
                    "alpha_iterations")
                row["auto_LiRPA"] = lr
            rows.append(row)
            print(f"done {case['name']}", file=sys.stderr, flush=True)
    print()
    print("Cells: mean output width (or, for VNN-LIB cases, lowest margin lower bound and rows "
          "proven > 0), seconds. Ratios: boundprop linear mean width / auto_LiRPA mean width "
          "(of C·y for VNN-LIB cases).")
    if meta.get("alpha_iterations"):
        print(f"alpha-CROWN: auto_LiRPA defaults ({meta['alpha_iterations']} iterations, Adam, "
              f"lr_alpha 0.5). Versions: {meta.get('versions')}.")
    print()
    print("| case | bp interval | bp linear | LiRPA IBP | LiRPA CROWN | LiRPA α-CROWN "
          "| linear/CROWN | linear/α-CROWN |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        vnn = r["vnnlib"] is not None
        bpr = r["boundprop"]
        lr = r.get("auto_LiRPA") or {}
        conv = lr.get("conversion", "no venv")
        cells = [fmt(bpr["interval"], vnn), fmt(bpr["linear"], vnn)]
        if conv == "ok":
            cells += [fmt(lr[m], vnn) for m in ("IBP", "CROWN", "alpha-CROWN")]
            cells += [ratio(bpr["linear"], lr["CROWN"]), ratio(bpr["linear"], lr["alpha-CROWN"])]
        else:
            cells += [conv, "", "", "", ""]
        print(f"| {r['case']} | " + " | ".join(cells) + " |")
    print("\nBounds (lower and upper per output or C·y row) where boundprop linear is looser "
          "than auto_LiRPA:\n")
    print("| case | vs CROWN | vs α-CROWN |")
    print("|---|---|---|")
    for r in rows:
        lr = r.get("auto_LiRPA") or {}
        if lr.get("conversion") == "ok":
            print(f"| {r['case']} | {looser(r['boundprop']['linear'], lr['CROWN'])} | "
                  f"{looser(r['boundprop']['linear'], lr['alpha-CROWN'])} |")
    out = {"header": HEADER, "timeout_s": args.timeout, **meta, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nwrote {os.path.relpath(args.json, ROOT)}")


if __name__ == "__main__":
    main()
