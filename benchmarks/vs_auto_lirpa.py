"""boundprop vs auto_LiRPA: the same ONNX files and input boxes through boundprop (interval,
linear, and alpha when ``boundprop.analysis.METHODS`` has it) and auto_LiRPA (IBP, CROWN,
alpha-CROWN); bound widths, certified margins, times and peak memory in one table.

    python benchmarks/vs_auto_lirpa.py [--quick] [--models SUBSTR ...] [--no-lirpa]
                                       [--lirpa-python PATH] [--timeout S] [--no-memory]

Cases: every shared VNN-COMP 2021 network in ../shared/vnncomp2021 (skipped when absent) with
its first VNN-LIB property's first input box and spec rows C·y; every shipped model in models/
with its declared default input set (an ℓ2 ball or a clipped ℓ∞ ball replaced by its bounding
box, so that both tools see the same box); two seeded 784-200×6-10 sigmoid/tanh MLPs.

auto_LiRPA is a benchmark-only tool, never a dependency of boundprop: it runs in its own venv
(``--lirpa-python``, else $BOUNDPROP_LIRPA_PYTHON, else /work/lirpa-venv/bin/python) through
benchmarks/_lirpa_side.py in a subprocess per case, exchanging npz/JSON through a temp dir;
without the venv (or with ``--no-lirpa``) only boundprop's columns are filled. To build the venv
(torch < 2.9 for auto_LiRPA 0.7):

    python -m venv /work/lirpa-venv
    /work/lirpa-venv/bin/pip install torch==2.8.0 torchvision==0.23.0
    /work/lirpa-venv/bin/pip install --no-deps onnx2torch
    /work/lirpa-venv/bin/pip install onnx numpy packaging appdirs pyyaml tqdm graphviz
    git clone https://github.com/Verified-Intelligence/auto_LiRPA /work/auto_LiRPA_src
    /work/lirpa-venv/bin/pip install --no-deps -e /work/auto_LiRPA_src

Quantities: the mean output width mean(upper − lower) (for a VNN-LIB case, of the rows C·y of
its unsafe conjunctions A·y ≤ b), and for VNN-LIB cases the lowest certified margin
min(lower(A·y) − b) and how many rows are proven (margin > 0). Ratios: boundprop mean width /
auto_LiRPA mean width (> 1: boundprop looser), geometric mean over the models at the bottom.

Timing (same machine, same run, sequentially): boundprop's ``output_bounds`` /
``linear_function_bounds`` only (ONNX loading reported separately as "load");
auto_LiRPA's ``compute_bounds`` only, CPU, 2 torch threads (torch import not counted; onnx2torch
conversion + BoundedModule construction reported separately as "conversion"). A computation
that takes < 0.5 s is run 3 times and the best time kept, on both sides; bounds are the first
run's. alpha-CROWN runs with auto_LiRPA's default optimisation settings (recorded in the JSON).
Peak memory: boundprop's linear/alpha on the largest models in a fresh process
(benchmarks/_bp_peak_mem.py, ``ru_maxrss``); auto_LiRPA's process peak after each method.

auto_LiRPA computes in float32 and does not round outwards, so its bounds are not sound in
floating point; boundprop's are (real-arithmetic enclosures with outward rounding).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _vs_lirpa_report as rep
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's boundprop

import boundprop as bp  # noqa: E402
from boundprop import analysis  # noqa: E402
from boundprop.analysis import linear_function_bounds, output_bounds  # noqa: E402
from boundprop.sets import Box, default_input_set  # noqa: E402
from boundprop.vnnlib import load_vnnlib  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
VNN = ROOT.parent / "shared" / "vnncomp2021"
WORK = ROOT / "benchmarks" / "_work"
HERE = Path(__file__).resolve().parent
DEFAULT_VENV = "/work/lirpa-venv/bin/python"
OUT = ROOT / "benchmarks" / "results" / "vs_auto_lirpa"
HEADER = ("auto_LiRPA computes in float32 and does not round outwards: its bounds are not sound "
          "in floating point. boundprop's bounds enclose the real-arithmetic network with outward "
          "rounding.")
FAST_S = 0.5  # a computation faster than this is timed as the best of 3 runs (both tools)
# shared VNN-COMP 2021 networks: (name, onnx, vnnlib), the first property of each
SHARED = [
    ("mnistfc mnist-net_256x2", "mnistfc/mnist-net_256x2.onnx", "mnistfc/prop_0_0.03.vnnlib"),
    ("acasxu 1_1 prop_1", "acasxu/ACASXU_run2a_1_1_batch_2000.onnx", "acasxu/prop_1.vnnlib"),
    ("acasxu 2_1 prop_2", "acasxu/ACASXU_run2a_2_1_batch_2000.onnx", "acasxu/prop_2.vnnlib"),
    ("oval21 cifar_base_kw", "oval21/cifar_base_kw.onnx",
     "oval21/cifar_base_kw-img1598-eps0.0026143790849673205.vnnlib"),
    ("cifar10_resnet resnet_2b", "cifar10_resnet/resnet_2b.onnx",
     "cifar10_resnet/prop_0_eps_0.008.vnnlib"),
    ("verivital Convnet_maxpool", "verivital/Convnet_maxpool.onnx",
     "verivital/specs/maxpool_specs/prop_0_0.004.vnnlib"),
]
QUICK = ("mnist-net_256x2", "acasxu 1_1", "cifar_base_kw", "mlp_relu", "mlp_sigmoid", "lenet")
MEMORY = ("resnet_2b", "cifar_base_kw")  # the largest models: peak memory measured there
UNLIMITED_BUDGET = 1e15  # back-substitution work budget that no model here reaches


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
    """Each case: name, group, onnx path, and a vnnlib path, or 'declared' or 'random'."""
    out = []
    if VNN.is_dir():
        for name, onnx_rel, vnn_rel in SHARED:
            out.append(dict(name=name, group="vnncomp2021", onnx=VNN / onnx_rel,
                            vnnlib=VNN / vnn_rel))
    else:
        print(f"{VNN} absent: shared VNN-COMP networks skipped", file=sys.stderr)
    shipped = sorted((ROOT / "models").glob("*.onnx")) + sorted(
        (ROOT / "models").glob("*/*.onnx"))
    for p in shipped:
        out.append(dict(name=p.stem, group="models", onnx=p, declared=True))
    for act in ("Sigmoid", "Tanh"):
        out.append(dict(name=f"seeded 784-200×6-10 {act.lower()}", group="seeded",
                        onnx=WORK / f"lirpa_mlp_{act.lower()}_6x200.onnx", random=act))
    return out


def prepare(case: dict):
    """(net, box shaped as net.input_shape, set kind, C or None, b or None, load seconds);
    raises FileNotFoundError when a file is absent."""
    if case.get("random"):
        random_mlp(case["onnx"], case["random"])
    for k in ("onnx", "vnnlib"):
        if k in case and not Path(case[k]).exists():
            raise FileNotFoundError(str(case[k]))
    t = time.perf_counter()
    net = bp.load(case["onnx"])
    load_s = time.perf_counter() - t
    shape = net.input_shape
    n_in, n_out = int(np.prod(shape)), int(np.prod(net.output_shape))
    C = b = None
    if "vnnlib" in case:
        box, unsafe = load_vnnlib(case["vnnlib"], n_in, n_out).cases[0]
        C = np.vstack([a for a, _ in unsafe if len(a)])
        b = np.concatenate([bb for a, bb in unsafe if len(a)])
        s, kind = box.fit(shape), "vnnlib box"
    elif case.get("declared"):
        s = default_input_set(net).fit(shape)
        kind = s.to_json()["kind"]
        kind = "box" if kind == "box" else f"{kind} → box"
    else:
        x0 = np.random.default_rng(0).uniform(0, 1, shape)
        s, kind = Box(np.clip(x0 - 0.015, 0, 1), np.clip(x0 + 0.015, 0, 1)), "linf 0.015 → box"
    box = Box(np.asarray(s.lower, float).reshape(shape), np.asarray(s.upper, float).reshape(shape))
    return net, box, kind, C, b, load_s


def summarize(lower, upper, b) -> dict:
    lower, upper = np.asarray(lower, float).reshape(-1), np.asarray(upper, float).reshape(-1)
    d = {"mean_width": float(np.mean(upper - lower)), "lower": lower.tolist(),
         "upper": upper.tolist()}
    if b is not None:
        m = lower - b
        d.update(lowest_margin=float(m.min()), proven=int((m > 0).sum()), rows=len(m))
    return d


def best_time(fn):
    """(first result, best seconds): one run, or the best of 3 when a run takes < FAST_S."""
    times, first = [], None
    while True:
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
        first = out if first is None else first
        if times[0] >= FAST_S or len(times) == 3:
            return first, min(times)


def bp_methods() -> list[str]:
    return [m for m in rep.BP_METHODS if m in analysis.METHODS]


def boundprop_side(net, box, C, b) -> dict:
    res = {}
    for m in bp_methods():
        def run(m=m):
            if C is not None:
                return linear_function_bounds(net, box, C, method=m)
            ob = output_bounds(net, box, method=m)
            return ob.lower, ob.upper
        try:
            (lo, hi), dt = best_time(run)
            res[m] = dict(summarize(lo, hi, b), seconds=dt)
        except Exception as e:  # noqa: BLE001 - reported in the table
            res[m] = {"error": f"{type(e).__name__}: {e}".splitlines()[0][:200]}
    return res


def write_case(tmp: Path, onnx_path: Path, box: Box, C) -> Path:
    """The npz the helper subprocesses read: onnx path, box, C, onnxruntime's centre output."""
    import onnxruntime as ort
    case = tmp / "case.npz"
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x0 = ((box.lower + box.upper) / 2).astype(np.float32)
    y0 = sess.run(None, {sess.get_inputs()[0].name: x0})[0]
    arrs = dict(onnx=np.array(str(onnx_path)), lo=box.lower, hi=box.upper, y0=y0)
    if C is not None:
        arrs["C"] = C
    np.savez(case, **arrs)
    return case


def lirpa_side(py: str, case: Path, b, timeout: float) -> dict:
    out = case.with_suffix(".json")
    out.unlink(missing_ok=True)
    timed_out, err = False, []
    try:
        p = subprocess.run([py, str(HERE / "_lirpa_side.py"), str(case), str(out)],
                           capture_output=True, text=True, timeout=timeout)
        err = p.stderr.strip().splitlines()[-1:] if p.returncode else []
    except subprocess.TimeoutExpired:
        timed_out = True
    raw = json.loads(out.read_text()) if out.exists() else {}
    why = err[0][:200] if err else "?"
    res = {k: raw[k] for k in ("versions", "alpha_settings", "torch_threads", "import_s",
                               "onnx2torch_s", "bounded_module_s", "peak_rss_mb_converted")
           if k in raw}
    res["conversion"] = raw.get("conversion", f"timeout ({timeout:g} s)" if timed_out
                                else f"helper failed: {why}")
    for m in rep.LIRPA_METHODS:
        r = raw.get(m)
        if r is None:
            res[m] = "not run"
        elif r.get("running"):
            res[m] = f"timeout ({timeout:g} s)" if timed_out else f"crashed: {why}"
        elif "error" in r:
            res[m] = f"error: {r['error']}"
        else:
            res[m] = dict(summarize(r["lower"], r["upper"], b), seconds=r["seconds"],
                          peak_rss_mb=r["peak_rss_mb"])
    return res


def bp_subprocess(case: Path, method: str, timeout: float, budget: float | None = None) -> dict:
    """benchmarks/_bp_peak_mem.py on one case: seconds, memory and bounds, in a fresh process."""
    cmd = [sys.executable, str(HERE / "_bp_peak_mem.py"), str(case), method]
    try:
        p = subprocess.run(cmd + ([f"{budget:g}"] if budget else []), capture_output=True,
                           text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout ({timeout:g} s)"}
    if p.returncode:
        return {"error": (p.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def bp_memory(case: Path, name: str, timeout: float) -> list[dict]:
    """boundprop's linear/alpha peak memory on one case, each in a fresh process."""
    out = []
    for m in [m for m in bp_methods() if m != "interval"]:
        r = bp_subprocess(case, m, timeout)
        r.pop("lower", None), r.pop("upper", None)
        out.append({"case": name, "tool": "boundprop", **r, "method": m})
    return out


def budget_check(case: Path, row: dict, b, timeout: float) -> dict | None:
    """Where linear is looser than CROWN: linear again without a work budget (every node
    back-substituted), to tell the budget's share of the gap from the relaxations'."""
    crown = (row.get("auto_LiRPA") or {}).get("CROWN")
    if not (rep.ok(crown) and (rep.ratio(row["boundprop"].get("linear"), crown) or 0)
            > 1 + rep.REL_TOL):
        return None
    r = bp_subprocess(case, "linear", timeout, UNLIMITED_BUDGET)
    if "error" in r:
        return {"work_budget": UNLIMITED_BUDGET, **r}
    d = dict(summarize(r["lower"], r["upper"], b), seconds=r["seconds"],
             work_budget=UNLIMITED_BUDGET, peak_mb=r["peak_mb"], delta_mb=r["delta_mb"])
    d["ratio_vs_CROWN"] = rep.ratio(d, crown)
    return d


def lirpa_memory(row: dict) -> list[dict]:
    """auto_LiRPA's process peak after each method (cumulative: ru_maxrss never decreases),
    over its peak after conversion."""
    lr = row.get("auto_LiRPA") or {}
    base = lr.get("peak_rss_mb_converted")
    out = []
    for m in ("CROWN", "alpha-CROWN"):
        r = lr.get(m)
        if base is not None and rep.ok(r):
            out.append({"case": row["case"], "tool": "auto_LiRPA", "method": m,
                        "seconds": r["seconds"], "peak_mb": r["peak_rss_mb"],
                        "delta_mb": r["peak_rss_mb"] - base})
    return out


def selected(args) -> list[dict]:
    cs = cases()
    if args.quick:
        cs = [c for c in cs if any(q in c["name"] for q in QUICK)]
    if args.models:
        cs = [c for c in cs if any(f.lower() in (c["name"] + " " + Path(c["onnx"]).name).lower()
                                   for f in args.models)]
    return cs


def run_case(case: dict, args, have_lirpa: bool, tmp: Path, memory: list) -> dict | None:
    try:
        net, box, kind, C, b, load_s = prepare(case)
    except FileNotFoundError as e:
        print(f"skipped {case['name']}: {e} absent", file=sys.stderr)
        return None
    except Exception as e:  # noqa: BLE001 - a model boundprop cannot load is reported
        print(f"skipped {case['name']}: boundprop cannot load it: {e}", file=sys.stderr)
        return None
    row = {"case": case["name"], "group": case["group"], "set": kind,
           "onnx": os.path.relpath(case["onnx"], ROOT),
           "vnnlib": os.path.relpath(case["vnnlib"], ROOT) if "vnnlib" in case else None,
           "load_s": load_s, "boundprop": boundprop_side(net, box, C, b)}
    npz = write_case(tmp, Path(case["onnx"]), box, C)
    if have_lirpa:
        row["auto_LiRPA"] = lirpa_side(args.lirpa_python, npz, b, args.timeout)
        row["linear_unlimited_budget"] = budget_check(npz, row, b, args.timeout)
    if not args.no_memory and any(m in case["name"] for m in MEMORY):
        memory += bp_memory(npz, case["name"], args.timeout) + lirpa_memory(row)
    row["ratios"] = rep.ratios(row)
    return row


def settings(rows: list[dict], args, have_lirpa: bool) -> dict:
    """What ran how: methods, auto_LiRPA version and alpha-CROWN options, boundprop's alpha
    defaults (the module constants of boundprop.domains.alpha), timing policy, machine load."""
    lr = [r["auto_LiRPA"] for r in rows if r.get("auto_LiRPA", {}).get("alpha_settings")]
    try:
        from boundprop.domains import alpha as bp_alpha_mod
        bp_alpha = {k: v for k, v in vars(bp_alpha_mod).items() if k.isupper()
                    and isinstance(v, (int, float, str, tuple))}
    except ImportError:
        bp_alpha = None
    return {"boundprop_methods": bp_methods(), "boundprop_alpha_settings": bp_alpha or None,
            "auto_LiRPA": bool(have_lirpa and not args.no_lirpa),
            "auto_LiRPA_versions": lr[0]["versions"] if lr else None,
            "alpha_CROWN_settings": lr[0]["alpha_settings"] if lr else None,
            "torch_threads": lr[0].get("torch_threads") if lr else None,
            "timing": f"bound computation only; best of 3 when a run takes < {FAST_S} s",
            "timeout_s": args.timeout, "load_average_at_end": os.getloadavg(),
            "boundprop_commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                               capture_output=True, text=True,
                                               cwd=ROOT).stdout.strip() or None,
            "cpus": os.cpu_count()}


def markdown(rows, sus, memory, st, wall_s) -> list[str]:
    a = st["alpha_CROWN_settings"]
    lines = [HEADER, "",
             "Cells: w = mean output width (of C·y for VNN-LIB cases), m = lowest certified "
             "margin (rows proven > 0), time of the bound computation. Ratios: boundprop mean "
             "width / auto_LiRPA mean width (> 1: boundprop looser).", ""]
    if a:
        lines += [f"auto_LiRPA {st['auto_LiRPA_versions']}, CPU, {st['torch_threads']} torch "
                  f"threads; α-CROWN with its defaults: {a.get('iteration')} iterations, "
                  f"{a.get('optimizer')}, lr_alpha {a.get('lr_alpha')}, lr_decay "
                  f"{a.get('lr_decay')}, early_stop_patience {a.get('early_stop_patience')}, "
                  f"fix_interm_bounds {a.get('fix_interm_bounds')}.", ""]
    ba = st["boundprop_alpha_settings"]
    if ba and "alpha" in st["boundprop_methods"]:
        lines += [f"boundprop alpha with its defaults: {ba.get('DEFAULT_ITERATIONS')} iterations, "
                  f"Adam, learning rate {ba.get('DEFAULT_LEARNING_RATE')}, decay "
                  f"{ba.get('LR_DECAY')}; intermediate rows optimised when a pass costs ≤ "
                  f"{ba.get('INTERMEDIATE_WORK', 0):.0e} multiply-adds.", ""]
    lines += rep.table(rows, st["boundprop_methods"])
    lines += ["", "Where boundprop is looser than its auto_LiRPA counterpart (bound by bound, "
              f"relative tolerance {rep.REL_TOL:g}):", ""] + rep.suspicious_lines(sus)
    if memory:
        lines += ["", "Peak memory: the process's peak resident set (ru_maxrss, incl. imports and "
                  "loading) and the bound computation's own: boundprop's tracemalloc peak (fresh "
                  "process per method), auto_LiRPA's RSS growth over its converted model "
                  "(cumulative over its methods).", ""] + rep.memory_lines(memory)
    lines += ["", f"Total wall time of this run: {wall_s:.0f} s."]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lirpa-python", default=os.environ.get("BOUNDPROP_LIRPA_PYTHON",
                                                             DEFAULT_VENV))
    ap.add_argument("--no-lirpa", action="store_true", help="boundprop's columns only")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--models", nargs="+", help="cases whose name or file contains any of these")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds for the auto_LiRPA subprocess of one case (all three methods)")
    ap.add_argument("--out", default=str(OUT), help="writes OUT.json and OUT.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    have_lirpa = not args.no_lirpa and Path(args.lirpa_python).exists()
    if not have_lirpa and not args.no_lirpa:
        print(f"auto_LiRPA venv not found at {args.lirpa_python}: boundprop's columns only. "
              "Build it as in this script's docstring, then pass --lirpa-python or set "
              "BOUNDPROP_LIRPA_PYTHON.", file=sys.stderr)
    rows, memory = [], []
    with tempfile.TemporaryDirectory() as td:
        for case in selected(args):
            row = run_case(case, args, have_lirpa, Path(td), memory)
            if row:
                rows.append(row)
                print(f"done {case['name']} ({time.perf_counter() - t0:.0f} s)",
                      file=sys.stderr, flush=True)
    sus, st = rep.suspicious(rows), settings(rows, args, have_lirpa)
    wall = time.perf_counter() - t0
    md = markdown(rows, sus, memory, st, wall)
    print("\n".join(md))
    cmd = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT)]
                               + sys.argv[1:])
    out = {"header": HEADER, "command": cmd, "wall_s": wall, "settings": st,
           "geomeans": rep.geomeans(rows), "boundprop_looser": sus, "memory": memory,
           "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out + ".json").write_text(json.dumps(out, indent=1) + "\n")
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print(f"\nwrote {os.path.relpath(args.out, ROOT)}.json and .md")


if __name__ == "__main__":
    main()
