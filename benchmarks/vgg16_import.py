"""VGG16 import benchmark: onnxruntime vs the boundprop importer on a ~138M-parameter network.

Builds torch VGG16 (configuration D: 13 conv3x3+ReLU, 5 MaxPool, classifier
25088-4096-4096-1000 with ReLU and Dropout) with random weights in eval mode, exports it to ONNX
for input [1, 3, 224, 224] into ``benchmarks/_work/`` (skipped if the file exists), then measures,
each in a fresh subprocess so that the peak RSS belongs to that measurement alone:

* ``ort``       onnxruntime session creation + forward pass (median of N runs after one warmup);
* ``boundprop`` ``bp.load(path)`` time, float64 ``net(x)`` time, max relative error of the IR
                output vs onnxruntime (max|a-b| / max|b|);
* ``cli``       wall time of ``boundprop inspect PATH``.

Peak memory is ``resource.getrusage(...).ru_maxrss`` (KiB on Linux) at the end of each
subprocess, reported in MB. Results are printed as a Markdown table and written as JSON to
``benchmarks/results/vgg16_import.json``.

Examples::

    python benchmarks/vgg16_import.py               # TorchScript export (embedded weights)
    python benchmarks/vgg16_import.py --dynamo      # also the dynamo export (external data)
    python benchmarks/vgg16_import.py --skip-boundprop
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
WORK = HERE / "_work"
RESULTS = HERE / "results" / "vgg16_import.json"
INPUT_SHAPE = (1, 3, 224, 224)
SEED = 0

# VGG16 = configuration "D" of Simonyan & Zisserman: numbers are conv widths, "M" a 2x2 max pool.
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


# --------------------------------------------------------------------------- model + export


def build_vgg16():
    import torch
    import torch.nn as nn

    class VGG16(nn.Module):
        def __init__(self, num_classes: int = 1000) -> None:
            super().__init__()
            layers: list[nn.Module] = []
            c_in = 3
            for v in CFG_D:
                if v == "M":
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    layers += [nn.Conv2d(c_in, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                    c_in = v
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(),
                nn.Linear(4096, num_classes),
            )
            for m in self.modules():  # He init keeps activations O(1) through 16 layers
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0.0, 0.01)
                    nn.init.zeros_(m.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.avgpool(self.features(x))
            x = torch.flatten(x, 1)
            return self.classifier(x)

    torch.manual_seed(SEED)
    return VGG16().eval()


def model_bytes(path: Path) -> int:
    """Size of the .onnx file plus any external-data files next to it that it references."""
    import onnx

    total = path.stat().st_size
    m = onnx.load(str(path), load_external_data=False)
    locations = set()
    for t in m.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    locations.add(e.value)
    return total + sum((path.parent / loc).stat().st_size for loc in locations)


def worker_export(path: Path, args) -> dict:
    """Export VGG16 with ``args.exporter`` in {"torchscript", "dynamo"} unless ``path`` exists.

    Runs in a subprocess like the measurements: on Linux a child's ru_maxrss starts from the
    parent's RSS at fork/exec time, so the orchestrating process must stay small.
    """
    kind = args.exporter
    info: dict = {"exporter": kind, "path": os.path.relpath(path, REPO)}
    if path.exists() and not args.force_export:
        info.update(export_seconds=None, skipped=True, bytes=model_bytes(path))
        return info
    import torch

    model = build_vgg16()
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.zeros(INPUT_SHAPE)
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "torchscript":
            torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=13,
                              input_names=["input"], output_names=["logits"])
        else:
            # The dynamo exporter writes weights as external data (<name>.data) for large models.
            torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=True)
    dt = time.perf_counter() - t0
    info.update(export_seconds=dt, skipped=False, parameters=n_params, bytes=model_bytes(path),
                files=sorted(p.name for p in path.parent.glob(path.name + "*")),
                torch=torch.__version__)
    return info


# --------------------------------------------------------------------------- workers (subprocess)


def peak_mb() -> float:
    # ru_maxrss is KiB on Linux (bytes on macOS).
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def worker_baseline(_path: Path, _args) -> dict:
    import numpy as np  # noqa: F401
    import onnx  # noqa: F401

    return {}


def worker_ort(path: Path, args) -> dict:
    import numpy as np
    import onnxruntime as ort

    x = np.load(args.input).astype(np.float32)
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    t_session = time.perf_counter() - t0
    feed = {sess.get_inputs()[0].name: x}
    sess.run(None, feed)  # warmup
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        y = sess.run(None, feed)[0]
        times.append(time.perf_counter() - t0)
    np.save(args.output, y.astype(np.float64))
    return {"session_s": t_session, "forward_s": statistics.median(times), "forward_runs_s": times,
            "output_shape": list(y.shape), "onnxruntime": ort.__version__}


def worker_boundprop(path: Path, args) -> dict:
    import numpy as np

    t0 = time.perf_counter()
    try:
        import boundprop as bp
    except Exception as exc:  # noqa: BLE001 - report any import failure verbatim
        return {"error": f"boundprop is missing or not importable: {type(exc).__name__}: {exc}"}
    t_import = time.perf_counter() - t0
    x = np.load(args.input).astype(np.float64)
    t0 = time.perf_counter()
    net = bp.load(str(path))
    t_load = time.perf_counter() - t0
    rss_after_load = peak_mb()
    times = []
    y = None
    for _ in range(args.eval_repeats):
        t0 = time.perf_counter()
        y = np.asarray(net(x), dtype=np.float64)
        times.append(time.perf_counter() - t0)
    out: dict = {"import_s": t_import, "load_s": t_load, "peak_mb_after_load": rss_after_load,
                 "eval_s": statistics.median(times), "eval_runs_s": times,
                 "output_shape": list(y.shape), "boundprop": getattr(bp, "__version__", None)}
    if args.reference and Path(args.reference).exists():
        ref = np.load(args.reference)
        out["max_rel_err_vs_ort"] = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
    try:
        summary = net.summary()
        out["summary_lines"] = len(summary.splitlines())
    except Exception as exc:  # noqa: BLE001
        out["summary_error"] = f"{type(exc).__name__}: {exc}"
    return out


def cli_command(path: Path) -> list[str]:
    exe = shutil.which("boundprop")
    if exe:
        return [exe, "inspect", str(path)]
    shim = "import sys; from boundprop.cli import main; sys.argv[0] = 'boundprop'; sys.exit(main())"
    return [sys.executable, "-c", shim, "inspect", str(path)]


def worker_cli(path: Path, _args) -> dict:
    # This worker only spawns the CLI; RUSAGE_CHILDREN then holds the CLI's own peak RSS.
    cmd = cli_command(path)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    wall = time.perf_counter() - t0
    r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = {"wall_s": wall, "returncode": proc.returncode, "command": cmd,
           "cli_peak_mb": r / 1024.0 if sys.platform != "darwin" else r / 2**20,
           "stdout_lines": len(proc.stdout.splitlines())}
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["(no stderr)"])[-1]
        if "No module named 'boundprop" in proc.stderr:
            out["error"] = f"boundprop is missing or not importable: {err}"
        else:
            out["error"] = f"exit {proc.returncode}: {err}"
    return out


WORKERS = {"export": worker_export, "baseline": worker_baseline, "ort": worker_ort,
           "boundprop": worker_boundprop, "cli": worker_cli}


def run_worker(args) -> int:
    kind, path = args.worker
    res = WORKERS[kind](Path(path), args)
    res["peak_mb"] = peak_mb()
    print("@@RESULT@@" + json.dumps(res))
    return 0


def measure(kind: str, path: Path, extra: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(path), *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            res = json.loads(line[len("@@RESULT@@"):])
            res["process_wall_s"] = wall
            return res
    tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
    return {"error": f"worker exited {proc.returncode}: {tail}", "process_wall_s": wall}


# --------------------------------------------------------------------------- reporting


def fmt_s(v) -> str:
    return "—" if v is None else (f"{v * 1e3:.1f} ms" if v < 1 else f"{v:.2f} s")


def fmt_mb(v) -> str:
    return "—" if v is None else f"{v:.0f} MB"


def table(results: dict) -> str:
    rows = ["| model | measurement | time | peak RSS | notes |", "|---|---|---|---|---|"]
    for tag, r in results["models"].items():
        ex = r["export"]
        if "error" in ex:
            rows.append(f"| {tag} | export | — | — | {ex['error']} |")
            continue
        note = f"{ex['bytes'] / 1e6:.0f} MB" + (" (existing file)" if ex.get("skipped") else "")
        peak = None if ex.get("skipped") else ex.get("peak_mb")
        rows.append(f"| {tag} | export | {fmt_s(ex.get('export_seconds'))} | {fmt_mb(peak)} | "
                    f"{note} |")
        b = r.get("baseline", {})
        rows.append(f"| {tag} | python+numpy+onnx baseline | — | {fmt_mb(b.get('peak_mb'))} | |")
        o = r.get("ort", {})
        if "error" in o:
            rows.append(f"| {tag} | onnxruntime | — | — | {o['error']} |")
        else:
            rows.append(f"| {tag} | onnxruntime session | {fmt_s(o.get('session_s'))} | "
                        f"{fmt_mb(o.get('peak_mb'))} | |")
            rows.append(f"| {tag} | onnxruntime forward (median) | {fmt_s(o.get('forward_s'))} |"
                        f" | fp32, {len(o.get('forward_runs_s', []))} runs |")
        p = r.get("boundprop")
        if p is None:
            pass
        elif "error" in p:
            rows.append(f"| {tag} | boundprop | — | — | {p['error']} |")
        else:
            rows.append(f"| {tag} | `bp.load` | {fmt_s(p.get('load_s'))} | "
                        f"{fmt_mb(p.get('peak_mb_after_load'))} | "
                        f"import {fmt_s(p.get('import_s'))} |")
            err = p.get("max_rel_err_vs_ort")
            rows.append(f"| {tag} | `net(x)` float64 | {fmt_s(p.get('eval_s'))} | "
                        f"{fmt_mb(p.get('peak_mb'))} | max rel err vs ORT "
                        f"{'—' if err is None else f'{err:.2e}'} |")
        c = r.get("cli")
        if c is None:
            pass
        elif "error" in c:
            rows.append(f"| {tag} | `boundprop inspect` | {fmt_s(c.get('wall_s'))} | — | "
                        f"{c['error']} |")
        else:
            rows.append(f"| {tag} | `boundprop inspect` | {fmt_s(c.get('wall_s'))} | "
                        f"{fmt_mb(c.get('cli_peak_mb'))} | wall time incl. interpreter start |")
    return "\n".join(rows)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Export VGG16 to ONNX and time onnxruntime vs the boundprop importer.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Each measurement runs in its own subprocess; peak RSS is ru_maxrss.",
    )
    ap.add_argument("--dynamo", action="store_true",
                    help="also export with the dynamo exporter (external data) and measure it")
    ap.add_argument("--only-dynamo", action="store_true",
                    help="measure only the dynamo export (implies --dynamo)")
    ap.add_argument("--force-export", action="store_true", help="re-export even if files exist")
    ap.add_argument("--skip-boundprop", action="store_true",
                    help="only export + onnxruntime (no bp.load / net(x) / CLI)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="onnxruntime timed forward passes after one warmup (default 3)")
    ap.add_argument("--eval-repeats", type=int, default=1,
                    help="boundprop float64 net(x) evaluations; the median is reported (default 1)")
    ap.add_argument("--timeout", type=float, default=3600.0,
                    help="per-measurement subprocess timeout in seconds (default 3600)")
    ap.add_argument("--work-dir", type=Path, default=WORK, help=f"default {WORK}")
    ap.add_argument("--results", type=Path, default=RESULTS, help=f"default {RESULTS}")
    # internal: run one measurement in this (fresh) process
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--reference", help=argparse.SUPPRESS)
    ap.add_argument("--exporter", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        return run_worker(args)

    import numpy as np

    work = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    inp = work / "vgg16_input.npy"
    np.save(inp, np.random.default_rng(SEED).uniform(0.0, 1.0, INPUT_SHAPE).astype(np.float32))

    kinds = ["torchscript"]
    if args.dynamo or args.only_dynamo:
        kinds = ["dynamo"] if args.only_dynamo else ["torchscript", "dynamo"]

    from importlib.metadata import version

    results: dict = {
        "benchmark": "vgg16_import",
        "input_shape": list(INPUT_SHAPE),
        "environment": {
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "numpy": np.__version__, "onnx": version("onnx"),
            "onnxruntime": version("onnxruntime"), "torch": version("torch"),
        },
        "models": {},
    }
    for kind in kinds:
        path = work / f"vgg16_{kind}.onnx"
        print(f"[export] {kind}: {path}")
        ex_args = ["--exporter", kind] + (["--force-export"] if args.force_export else [])
        entry: dict = {"export": measure("export", path, ex_args, args.timeout)}
        ex = entry["export"]
        if "error" in ex:
            print(f"[export] {kind} failed: {ex['error']}")
            results["models"][kind] = entry
            continue
        if ex["skipped"]:
            print(f"[export] {path.name} exists, export skipped ({ex['bytes'] / 1e6:.0f} MB)")
        else:
            print(f"[export] {kind}: {ex['export_seconds']:.1f} s, {ex['bytes'] / 1e6:.0f} MB "
                  f"in {ex['files']}, peak RSS {ex['peak_mb']:.0f} MB")
        ref = work / f"vgg16_{kind}_ort_out.npy"
        common = ["--input", str(inp), "--repeats", str(args.repeats),
                  "--eval-repeats", str(args.eval_repeats)]
        print(f"[measure] {kind}: baseline")
        entry["baseline"] = measure("baseline", path, common, args.timeout)
        print(f"[measure] {kind}: onnxruntime")
        entry["ort"] = measure("ort", path, [*common, "--output", str(ref)], args.timeout)
        if not args.skip_boundprop:
            print(f"[measure] {kind}: boundprop load + eval")
            entry["boundprop"] = measure("boundprop", path, [*common, "--reference", str(ref)],
                                         args.timeout)
            if "error" in entry["boundprop"] and "missing" in entry["boundprop"]["error"]:
                print(f"[measure] {entry['boundprop']['error']} -- skipping the CLI measurement")
            else:
                print(f"[measure] {kind}: boundprop inspect CLI")
                entry["cli"] = measure("cli", path, common, args.timeout)
        for k in ("baseline", "ort", "boundprop", "cli"):
            if k in entry and "error" in entry[k]:
                print(f"[measure] {kind}/{k}: {entry[k]['error']}")
        results["models"][kind] = entry

    print()
    print(table(results))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
