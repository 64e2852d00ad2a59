"""Interval (IBP) speed benchmark: the onnxruntime float32 interval engine vs a forward pass.

For torch VGG16 at 224×224 (exported by ``benchmarks/vgg16_import.py`` into
``benchmarks/_work/``; the export is skipped when the file exists),
``models/vgg_small_relu.onnx``, the 784-100-100-10 MLP and three smooth MLPs
784-2048-2048-2048-2048-10 (Sigmoid, Tanh, Softplus; seeded Gaussian weights / √fan-in, written
to ``benchmarks/_work/`` — 14 M multiply-adds, above ``analysis.AUTO_ORT_MULTIPLY_ADDS``), each
measurement in a fresh subprocess (peak RSS = ``resource.getrusage(...).ru_maxrss`` at its end,
so it belongs to that measurement alone):

* ``forward``   onnxruntime float32 forward pass of the model: session creation, median of N
                runs after one warmup (CPUExecutionProvider, default threads and optimisations);
* ``interval``  ``boundprop.domains.interval_ort``: graph build and session creation (one-time,
                reported separately), then the interval pass (output bounds) — median of N
                after one warmup — and, in the same process after its peak RSS is taken, N
                *paired* runs alternating forward and interval (the ratio of those medians is
                robust to other load on the machine);
* ``all_nodes`` the same engine materialising every node's bounds (what
                ``analysis.interval_bounds`` returns), median of N;
* ``numpy``     ``analysis.interval_bounds(..., engine="numpy")``, float64, once;
* ``auto``      ``analysis.interval_bounds(...)`` with the default engine="auto", once: the
                engine it chose is "numpy" when its output bounds equal the numpy ones bit for
                bit, "onnxruntime" otherwise.

The box is the model's input ± 2/255 clipped to [0, 1] for VGG16 (its saved random input) and
the smooth MLPs (a seeded uniform input), the model's default input set otherwise. The output
bounds of both engines are compared (the onnxruntime ones must contain the numpy ones up to
numpy's 1e-14 margin; the width ratio's mean, median and max are reported). Prints a Markdown
table; writes ``benchmarks/results/interval_speed.json``.

    python benchmarks/interval_speed.py                 # every model
    python benchmarks/interval_speed.py --models mlp_sigmoid_2048 mlp_tanh_2048 mlp_softplus_2048
    python benchmarks/interval_speed.py --models vgg16 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
RESULTS = HERE / "results" / "interval_speed.json"
VGG16 = WORK / "vgg16_torchscript.onnx"
MODELS = {
    "vgg16": VGG16,
    "vgg_small_relu": REPO / "models" / "vgg_small_relu.onnx",
    "mlp_784_100_100_10": REPO / "models" / "mlp_784_100_100_10_relu.onnx",
}
SMOOTH_MLPS = {f"mlp_{act.lower()}_2048": act for act in ("Sigmoid", "Tanh", "Softplus")}
MODELS.update({tag: WORK / f"{tag}.onnx" for tag in SMOOTH_MLPS})
SMOOTH_WIDTHS = (784, 2048, 2048, 2048, 2048, 10)
EPS = 2.0 / 255.0


def peak_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def _box(tag: str, net=None):
    """(lower, upper) float64 arrays of the benchmark box."""
    import numpy as np

    import boundprop as bp
    from boundprop.sets import Box, InputSetError, default_input_set

    if tag == "vgg16" or tag in SMOOTH_MLPS:
        x = np.load(WORK / f"{'vgg16' if tag == 'vgg16' else 'mlp'}_input.npy").astype(
            np.float64)
        return np.clip(x - EPS, 0.0, 1.0), np.clip(x + EPS, 0.0, 1.0)
    net = net or bp.load(str(MODELS[tag]))
    try:
        s = default_input_set(net)
    except InputSetError:
        s = Box(np.zeros(net.input_shape), np.ones(net.input_shape))
    return s.lower, s.upper


def _forward_session(path: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _forward_feed(sess, tag: str, lower):
    import numpy as np

    x = np.load(WORK / "vgg16_input.npy") if tag == "vgg16" else (
        np.load(WORK / "mlp_input.npy") if tag in SMOOTH_MLPS else lower)
    return {sess.get_inputs()[0].name: np.asarray(x, np.float32).reshape(
        [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape])}


def write_smooth_mlp(tag: str) -> None:
    """The smooth MLP ``tag`` (Gemm + activation layers, seeded) as ONNX, if not written yet."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    path = MODELS[tag]
    if path.exists():
        return
    rng = np.random.default_rng(12)
    nodes, inits, cur = [], [], "x"
    for i, (n_in, n_out) in enumerate(zip(SMOOTH_WIDTHS[:-1], SMOOTH_WIDTHS[1:])):
        w = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
        b = (0.1 * rng.standard_normal(n_out)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        nodes.append(helper.make_node("Gemm", [cur, f"w{i}", f"b{i}"], [f"z{i}"], transB=1))
        cur = f"z{i}"
        if n_out != SMOOTH_WIDTHS[-1]:
            nodes.append(helper.make_node(SMOOTH_MLPS[tag], [cur], [f"a{i}"]))
            cur = f"a{i}"
    graph = helper.make_graph(
        nodes, tag, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 784])],
        [helper.make_tensor_value_info(cur, TensorProto.FLOAT, [1, SMOOTH_WIDTHS[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warmup
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


# --------------------------------------------------------------------------- workers


def worker_export(args) -> dict:
    sys.path.insert(0, str(HERE))
    import vgg16_import

    ns = argparse.Namespace(exporter="torchscript", force_export=False)
    return vgg16_import.worker_export(VGG16, ns)


def worker_forward(args) -> dict:
    tag, path = args.tag, MODELS[args.tag]
    lower, _ = _box(tag)  # VGG16: no IR is loaded here, so the peak RSS is onnxruntime's
    t0 = time.perf_counter()
    sess = _forward_session(path)
    session_s = time.perf_counter() - t0
    feed = _forward_feed(sess, tag, lower)
    runs = _timed(lambda: sess.run(None, feed), args.repeats)
    return {"session_s": session_s, "forward_s": statistics.median(runs), "runs_s": runs}


def worker_interval(args) -> dict:
    import numpy as np

    import boundprop as bp
    from boundprop.domains.interval_ort import OrtIntervalEngine, down32

    tag, path = args.tag, MODELS[args.tag]
    t0 = time.perf_counter()
    net = bp.load(str(path))
    load_s = time.perf_counter() - t0
    lower, upper = _box(tag, net)
    nodes = "all" if args.all_nodes else "output"
    eng = OrtIntervalEngine(net, nodes, nonneg_input=bool(np.all(down32(lower) >= 0)))
    result: dict = {}
    runs = _timed(lambda: result.update(out=eng.run(lower, upper)), args.repeats)
    out = {"load_s": load_s, "build_s": eng.build_s, "session_s": eng.session_s,
           "graph_nodes": eng.graph_nodes, "interval_s": statistics.median(runs),
           "runs_s": runs, "peak_mb_engine": peak_mb()}
    if args.output:
        lo, hi = result["out"][net.output]
        np.save(args.output, np.stack([lo, hi]))
    if not args.all_nodes:
        # Paired runs: forward and interval alternate, so background load hits both alike.
        sess = _forward_session(path)
        feed = _forward_feed(sess, tag, lower)
        sess.run(None, feed)
        fwd, itv = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            sess.run(None, feed)
            fwd.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            eng.run(lower, upper)
            itv.append(time.perf_counter() - t0)
        out.update(paired_forward_s=statistics.median(fwd), paired_interval_s=statistics.median(
            itv), paired_ratio=statistics.median(itv) / statistics.median(fwd))
    return out


def worker_numpy(args) -> dict:
    import numpy as np

    import boundprop as bp
    from boundprop.analysis import interval_bounds
    from boundprop.sets import Box

    tag, path = args.tag, MODELS[args.tag]
    net = bp.load(str(path))
    lower, upper = _box(tag, net)
    t0 = time.perf_counter()
    b = interval_bounds(net, Box(lower, upper), engine="numpy")
    dt = time.perf_counter() - t0
    if args.output:
        lo, hi = b[net.output]
        np.save(args.output, np.stack([lo, hi]))
    return {"numpy_s": dt}


def worker_auto(args) -> dict:
    """``interval_bounds`` with its default engine; which one ran is read off the bounds."""
    import numpy as np

    import boundprop as bp
    from boundprop.analysis import interval_bounds
    from boundprop.sets import Box

    tag, path = args.tag, MODELS[args.tag]
    net = bp.load(str(path))
    lower, upper = _box(tag, net)
    t0 = time.perf_counter()
    b = interval_bounds(net, Box(lower, upper))
    dt = time.perf_counter() - t0
    out: dict = {"auto_s": dt}
    if args.output and Path(args.output).exists():
        lo, hi = b[net.output]
        nlo, nhi = np.load(args.output)
        same = bool(np.array_equal(lo, nlo) and np.array_equal(hi, nhi))
        out["engine"] = "numpy" if same else "onnxruntime"
    return out


WORKERS = {"export": worker_export, "forward": worker_forward, "interval": worker_interval,
           "numpy": worker_numpy, "auto": worker_auto}


def measure(kind: str, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            res = json.loads(line[len("@@RESULT@@"):])
            res["process_wall_s"] = time.perf_counter() - t0
            return res
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"worker exited {proc.returncode}: {tail}"}


# --------------------------------------------------------------------------- reporting


def fmt_t(v) -> str:
    if v is None:
        return "—"
    if v < 1e-3:
        return f"{v * 1e6:.0f} µs"
    return f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s"


def fmt_mb(v) -> str:
    return "—" if v is None else f"{v:.0f} MB"


def compare(ort_file: Path, np_file: Path) -> dict:
    import numpy as np

    if not (ort_file.exists() and np_file.exists()):
        return {}
    (lo, hi), (nlo, nhi) = np.load(ort_file), np.load(np_file)
    tiny = 1e-9 * (1 + np.maximum(np.abs(nlo), np.abs(nhi)))
    w, nw = hi - lo, nhi - nlo
    pos = nw > 0
    return {"encloses_numpy": bool(np.all(lo <= nlo + tiny) and np.all(hi >= nhi - tiny)),
            "width_ratio_median": float(np.median(w[pos] / nw[pos])) if pos.any() else None,
            "width_ratio_mean": float(np.mean(w[pos] / nw[pos])) if pos.any() else None,
            "width_ratio_max": float(np.max(w[pos] / nw[pos])) if pos.any() else None,
            "median_width": float(np.median(w))}


def table(results: dict) -> str:
    rows = ["| model | forward (median) | interval (median) | ratio | paired ratio | "
            "all nodes | build + session | numpy float64 | numpy / forward | auto: engine, time "
            "| width vs numpy | peak RSS fwd / interval / numpy |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for tag, r in results["models"].items():
        f, i, a, n, au = (r.get(k, {}) for k in ("forward", "interval", "all_nodes", "numpy",
                                                 "auto"))
        err = next((x["error"] for x in (f, i, a, n) if "error" in x), None)
        if err:
            rows.append(f"| {tag} | error: {err} |" + " |" * 11)
            continue
        fw, it = f.get("forward_s"), i.get("interval_s")
        ratio = f"{it / fw:.2f}×" if fw and it else "—"
        paired = i.get("paired_ratio")
        c = r.get("compare", {})
        width = (f"×{c['width_ratio_mean']:.4f} mean, ×{c['width_ratio_median']:.4f} median, "
                 f"×{c['width_ratio_max']:.4f} max"
                 + ("" if c.get("encloses_numpy") else " (NOT enclosing)")
                 if c.get("width_ratio_median") else "—")
        npr = f"{n['numpy_s'] / fw:.0f}×" if n.get("numpy_s") and fw else "—"
        rows.append(
            f"| {tag} | {fmt_t(fw)} | {fmt_t(it)} | {ratio} | "
            f"{'—' if paired is None else f'{paired:.2f}×'} | {fmt_t(a.get('interval_s'))} | "
            f"{fmt_t(i.get('build_s'))} + {fmt_t(i.get('session_s'))} | "
            f"{fmt_t(n.get('numpy_s'))} | {npr} | "
            f"{au.get('engine', '—')}, {fmt_t(au.get('auto_s'))} | {width} | "
            f"{fmt_mb(f.get('peak_mb'))} / {fmt_mb(i.get('peak_mb_engine'))} / "
            f"{fmt_mb(n.get('peak_mb'))} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--repeats", type=int, default=5, help="timed runs after one warmup")
    ap.add_argument("--skip-numpy", action="store_true", help="skip the float64 numpy pass")
    ap.add_argument("--timeout", type=float, default=3600.0)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--tag", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--all-nodes", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        res = WORKERS[args.worker](args)
        res["peak_mb"] = peak_mb()
        print("@@RESULT@@" + json.dumps(res))
        return 0

    from importlib.metadata import version

    import numpy as np

    WORK.mkdir(parents=True, exist_ok=True)
    inp = WORK / "vgg16_input.npy"
    if not inp.exists():  # the same input vgg16_import.py writes (seed 0)
        np.save(inp, np.random.default_rng(0).uniform(0.0, 1.0, (1, 3, 224, 224)).astype(
            np.float32))
    if not (WORK / "mlp_input.npy").exists():
        np.save(WORK / "mlp_input.npy", np.random.default_rng(1).uniform(0.0, 1.0, (1, 784))
                .astype(np.float32))
    results: dict = {
        "benchmark": "interval_speed", "box": f"input ± {EPS:.6f} clipped to [0, 1] (vgg16); "
        "default input set (others)", "repeats": args.repeats,
        "environment": {"python": platform.python_version(), "platform": platform.platform(),
                        "cpu_count": os.cpu_count(), "numpy": np.__version__,
                        "onnxruntime": version("onnxruntime"), "onnx": version("onnx")},
        "models": {}}
    common = ["--repeats", str(args.repeats)]
    for tag in args.models:
        entry: dict = {}
        if tag == "vgg16":
            print("[export] vgg16 (skipped if the file exists)")
            entry["export"] = measure("export", [], args.timeout)
            if "error" in entry["export"]:
                print(f"[export] failed: {entry['export']['error']}")
                results["models"][tag] = entry
                continue
        if tag in SMOOTH_MLPS:
            write_smooth_mlp(tag)
        ort_out, np_out = WORK / f"interval_{tag}_ort.npy", WORK / f"interval_{tag}_numpy.npy"
        for f in (ort_out, np_out):
            f.unlink(missing_ok=True)
        print(f"[measure] {tag}: forward")
        entry["forward"] = measure("forward", ["--tag", tag, *common], args.timeout)
        print(f"[measure] {tag}: interval (output) + paired runs")
        entry["interval"] = measure("interval", ["--tag", tag, "--output", str(ort_out),
                                                 *common], args.timeout)
        print(f"[measure] {tag}: interval (all nodes)")
        entry["all_nodes"] = measure("interval", ["--tag", tag, "--all-nodes", *common],
                                     args.timeout)
        if not args.skip_numpy:
            print(f"[measure] {tag}: numpy float64 interval")
            entry["numpy"] = measure("numpy", ["--tag", tag, "--output", str(np_out)],
                                     args.timeout)
            print(f"[measure] {tag}: interval_bounds, engine=\"auto\"")
            entry["auto"] = measure("auto", ["--tag", tag, "--output", str(np_out)],
                                    args.timeout)
        entry["compare"] = compare(ort_out, np_out)
        for k, v in entry.items():
            if isinstance(v, dict) and "error" in v:
                print(f"[measure] {tag}/{k}: {v['error']}")
        results["models"][tag] = entry

    print()
    print(table(results))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
