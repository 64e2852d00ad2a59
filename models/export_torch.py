"""Export small networks with *real* exporters (torch TorchScript, torch dynamo, skl2onnx).

Run as ``python models/export_torch.py``. Every fixture is written next to this file;
seeds are fixed, so re-running reproduces the same weights (the serialised bytes may still
differ across exporter versions).

Each file gets two ``metadata_props`` entries:

* ``boundprop.input_set``   -- JSON, e.g. ``{"kind": "box", "lower": 0.0, "upper": 1.0}``
  (scalars broadcast over the input tensor);
* ``boundprop.description`` -- one line: exporter + what the fixture exercises.

Every file is verified here: ``onnx.checker.check_model`` (by path, so external data is
checked too), onnxruntime output vs the torch / sklearn output (rtol 1e-4, atol 1e-5), and
the op census is printed. A Markdown table suitable for models/README.md is printed last.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn

HERE = Path(__file__).resolve().parent
RTOL, ATOL = 1e-4, 1e-5
BOX01 = {"kind": "box", "lower": 0.0, "upper": 1.0}
BOXPM1 = {"kind": "box", "lower": -1.0, "upper": 1.0}


# --------------------------------------------------------------------------- networks


def _randomize_bn(module: nn.Module, gen: torch.Generator) -> None:
    """Give every BatchNorm non-trivial affine parameters and running statistics."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            n = m.num_features
            with torch.no_grad():
                m.weight.copy_(1.0 + 0.2 * torch.randn(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                m.running_var.copy_(0.5 + torch.rand(n, generator=gen))


class SmallCNN(nn.Module):
    """Conv-BN-ReLU-MaxPool-Conv-ReLU-AvgPool-flatten(view)-Linear-ReLU-Linear(10)."""

    def __init__(self, adaptive: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.pool2 = nn.AdaptiveAvgPool2d((2, 2)) if adaptive else nn.AvgPool2d(4)
        self.fc1 = nn.Linear(16 * 2 * 2, 32)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.bn1(self.conv1(x))))
        x = self.pool2(torch.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)
        return self.fc2(torch.relu(self.fc1(x)))


class MLP(nn.Module):
    def __init__(self, sizes: list[int], act: type[nn.Module] | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(act() if act is not None else nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + x)


class TinyResNet(nn.Module):
    def __init__(self, c: int = 8, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.relu = nn.ReLU()
        self.block1 = BasicBlock(c)
        self.block2 = BasicBlock(c)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.stem(x)))
        x = self.block2(self.block1(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(x)


class TinyVGGSmooth(nn.Module):
    """Conv-BN-Softplus-AvgPool x2, flatten, Linear-Softplus-Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.Softplus(),
            nn.AvgPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.Softplus(),
            nn.AvgPool2d(2),
        )
        self.classifier = nn.Sequential(nn.Linear(8 * 4 * 4, 16), nn.Softplus(), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = x.view(x.size(0), -1)
        return self.classifier(x)


# --------------------------------------------------------------------------- helpers


def op_census(model: onnx.ModelProto) -> dict[str, int]:
    """Op-type counts of the main graph (and of subgraphs / local functions, if any)."""
    counts: collections.Counter[str] = collections.Counter()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            std = node.domain in ("", "ai.onnx")
            key = node.op_type if std else f"{node.domain}.{node.op_type}"
            counts[key] += 1
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    visit(attr.g)
                for g in attr.graphs:
                    visit(g)

    visit(model.graph)
    for fn in model.functions:
        for node in fn.node:
            counts[f"fn:{node.op_type}"] += 1
    return dict(sorted(counts.items()))


def default_opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return imp.version
    return -1


def add_metadata(model: onnx.ModelProto, input_set: dict, description: str) -> None:
    entries = {"boundprop.input_set": json.dumps(input_set), "boundprop.description": description}
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in entries.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))


def finalize(
    path: Path,
    input_set: dict,
    description: str,
    external_location: str | None = None,
) -> None:
    """Load an exported file, attach metadata, save it (embedded or as external data)."""
    model = onnx.load(str(path))  # loads external data too, if any
    add_metadata(model, input_set, description)
    if external_location is None:
        stray = [p for p in path.parent.glob(path.name + ".data")]
        onnx.save_model(model, str(path), save_as_external_data=False)
        for p in stray:
            p.unlink()
    else:
        loc = path.parent / external_location
        if loc.exists():
            loc.unlink()
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=external_location,
            size_threshold=0,
        )
        os.chmod(loc, 0o644)  # onnx writes the sidecar 0600


def verify(path: Path, x: np.ndarray, expected: np.ndarray, full_check: bool = True) -> dict:
    """check_model (by path), ORT vs reference, op census. Returns a report dict."""
    onnx.checker.check_model(str(path), full_check=full_check)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    got = sess.run(None, feed)
    y = got[0]
    if y.shape != expected.shape:
        raise AssertionError(f"{path.name}: ORT shape {y.shape} != reference {expected.shape}")
    np.testing.assert_allclose(y, expected, rtol=RTOL, atol=ATOL, err_msg=path.name)
    model = onnx.load(str(path), load_external_data=False)
    info = {
        "file": str(path.relative_to(HERE)),
        "opset": default_opset(model),
        "inputs": [(i.name, list(np.shape(x))) for i in sess.get_inputs()],
        "outputs": [(o.name, o.shape) for o in sess.get_outputs()],
        "ops": op_census(model),
        "n_initializers": len(model.graph.initializer),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "max_abs_err": float(np.max(np.abs(y.astype(np.float64) - expected))),
        "metadata": {p.key: p.value for p in model.metadata_props},
    }
    size = path.stat().st_size
    ext = [p for p in path.parent.iterdir() if p.suffix == ".data"] if path.parent != HERE else []
    info["bytes"] = size + sum(p.stat().st_size for p in ext)
    print(f"\n== {info['file']}  ({info['bytes'] / 1024:.1f} KiB, opset {info['opset']}, "
          f"producer {info['producer']})")
    print(f"   inputs {info['inputs']}  outputs {info['outputs']}")
    print(f"   ops {info['ops']}")
    print(f"   ORT vs reference max|diff| = {info['max_abs_err']:.3g}")
    return info


def export_torchscript(model, x, path: Path, opset: int, **kw) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=opset,
            input_names=["input"], output_names=["logits"], **kw,
        )


def export_dynamo(model, x, path: Path, opset: int | None = None, optimize: bool = True) -> None:
    """Dynamo export with the weights embedded (no ``.data`` sidecar)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = {} if opset is None else {"opset_version": opset}
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False,
                          optimize=optimize, **kw)


def torch_ref(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(x).detach().numpy().astype(np.float64)


def rand_box(gen: torch.Generator, shape, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(*shape, generator=gen)


# --------------------------------------------------------------------------- fixtures


def build_cnn_torchscript() -> dict:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = SmallCNN(adaptive=True)
    _randomize_bn(model, gen)
    model.eval()
    x = rand_box(gen, (1, 3, 16, 16))
    path = HERE / "torch_cnn_torchscript.onnx"
    export_torchscript(model, x, path, opset=13)
    finalize(path, BOX01, "torch TorchScript exporter (opset 13, constant folding): eval BN "
             "folded into Conv, Relu, MaxPool, AdaptiveAvgPool->AveragePool, x.view(x.size(0),-1) "
             "-> Constant [1,-1] + Reshape, Gemm")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_cnn_dynamo() -> dict:
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(1)
    model = SmallCNN(adaptive=True)
    _randomize_bn(model, gen)
    model.eval()
    x = rand_box(gen, (1, 3, 16, 16))
    path = HERE / "torch_cnn_dynamo.onnx"
    export_dynamo(model, x, path)
    finalize(path, BOX01, "torch dynamo exporter (opset 20, optimized): eval BN folded into "
             "Conv, Relu, MaxPool, AdaptiveAvgPool->AveragePool, view -> Reshape(allowzero=1) with "
             "an initializer shape, Gemm; per-node metadata_props and value_info")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_mlp_dynamo_external() -> dict:
    torch.manual_seed(2)
    gen = torch.Generator().manual_seed(2)
    model = MLP([6, 16, 16, 3]).eval()
    x = rand_box(gen, (1, 6))
    folder = HERE / "torch_mlp_dynamo_external"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir()
    path = folder / "torch_mlp_dynamo_external.onnx"
    export_dynamo(model, x, path)
    finalize(path, BOX01, "torch dynamo exporter, weights re-saved as ONNX external data "
             "(one .data file, size_threshold=0): Gemm/ReLU MLP 6-16-16-3",
             external_location="torch_mlp_dynamo_external.onnx.data")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_gelu_torchscript() -> dict:
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    model = MLP([8, 32, 32, 4], act=nn.GELU).eval()
    x = rand_box(gen, (1, 8))
    path = HERE / "torch_mlp_gelu_torchscript.onnx"
    export_torchscript(model, x, path, opset=17)
    finalize(path, BOX01, "torch TorchScript exporter (opset 17): exact nn.GELU lowered to the "
             "Div/Erf/Add/Mul/Mul pattern, Gemm")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_gelu_dynamo() -> dict:
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(3)
    model = MLP([8, 32, 32, 4], act=nn.GELU).eval()
    x = rand_box(gen, (1, 8))
    path = HERE / "torch_mlp_gelu_dynamo.onnx"
    export_dynamo(model, x, path)
    model_proto = onnx.load(str(path))
    ops = op_census(model_proto)
    what = "Gelu op (opset 20)" if "Gelu" in ops else "Erf pattern"
    finalize(path, BOX01, f"torch dynamo exporter: exact nn.GELU emitted as {what}, Gemm")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_resnet_dynamo() -> dict:
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)
    model = TinyResNet()
    _randomize_bn(model, gen)
    model.eval()
    x = rand_box(gen, (1, 3, 16, 16))
    path = HERE / "torch_resnet_tiny_dynamo.onnx"
    export_dynamo(model, x, path)
    finalize(path, BOX01, "torch dynamo exporter (opset 20, optimized): tiny ResNet, two basic "
             "blocks with skip Add, eval BN folded into Conv, Relu, global avg pool -> ReduceMean "
             "(axes input) + Reshape, Gemm")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_resnet_dynamo_noopt() -> dict:
    """Same network and weights as torch_resnet_tiny_dynamo, exported with optimize=False."""
    torch.manual_seed(4)
    gen = torch.Generator().manual_seed(4)
    model = TinyResNet()
    _randomize_bn(model, gen)
    model.eval()
    x = rand_box(gen, (1, 3, 16, 16))
    path = HERE / "torch_resnet_tiny_dynamo_noopt.onnx"
    export_dynamo(model, x, path, optimize=False)
    finalize(path, BOX01, "torch dynamo exporter with optimize=False: unfolded eval "
             "BatchNormalization, zero Conv bias built by Shape(weight)->Expand and "
             "CastLike->Expand chains, Constant nodes, skip Add, ReduceMean, Reshape, Gemm")
    return verify(path, x.numpy(), torch_ref(model, x))


def build_vgg_smooth_bn_train() -> dict:
    torch.manual_seed(5)
    gen = torch.Generator().manual_seed(5)
    model = TinyVGGSmooth()
    _randomize_bn(model, gen)
    model.train()
    x = rand_box(gen, (4, 3, 16, 16))
    # Reference first, on a copy: a training-mode forward updates the running statistics.
    with torch.no_grad():
        ref = copy.deepcopy(model).train()(x).numpy().astype(np.float64)
    path = HERE / "torch_vgg_smooth_bn_train_torchscript.onnx"
    export_torchscript(model, x, path, opset=15,
                       training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False)
    finalize(path, BOX01, "torch TorchScript exporter (opset 15, TrainingMode.TRAINING, no "
             "constant folding): BatchNormalization training_mode=1 (batch statistics; 3 "
             "outputs, the running mean/var ones dangling), Softplus, AveragePool, "
             "view -> Constant/Unsqueeze/Concat/Reshape chain, input batch 4")
    return verify(path, x.numpy(), ref)


def build_sklearn_mlp() -> dict:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    rng = np.random.default_rng(6)
    X = rng.uniform(-1.0, 1.0, size=(256, 8))
    W = rng.normal(size=(8, 2))
    Y = np.tanh(X @ W) + 0.1 * np.sin(3.0 * X[:, :2])
    reg = MLPRegressor(hidden_layer_sizes=(16, 16), activation="tanh", max_iter=300,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
    onx = to_onnx(reg, initial_types=[("input", FloatTensorType([1, 8]))],
                  target_opset={"": 17, "ai.onnx.ml": 3})
    path = HERE / "sklearn_mlp_regressor.onnx"
    onnx.save_model(onx, str(path))
    finalize(path, BOXPM1, "skl2onnx to_onnx (opset 17) of MLPRegressor(16,16,tanh), 2 targets: "
             "Cast, MatMul/Add/Tanh chain, static batch 1; skl2onnx ends with Reshape(-1,1) so "
             "the real output is [2,1] while the declared output is [1,1] (sklearn-onnx#474)")
    x = rng.uniform(-1.0, 1.0, size=(1, 8)).astype(np.float32)
    ref = reg.predict(x.astype(np.float64)).reshape(1, -1)
    # skl2onnx's MLPRegressor converter reshapes the [1, n_targets] prediction to (-1, 1) and
    # declares the output as [1, 1]: the file is kept exactly as the exporter wrote it, so the
    # strict (full_check) shape inference disagrees with the declared output shape.
    try:
        onnx.checker.check_model(str(path), full_check=True)
        strict = "ok"
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        strict = str(exc).strip().splitlines()[-1]
    print(f"   [sklearn] strict full_check: {strict}")
    info = verify(path, x, ref.reshape(-1, 1), full_check=False)
    info["full_check"] = strict
    return info


BUILDERS = {
    "torch_cnn_torchscript": build_cnn_torchscript,
    "torch_cnn_dynamo": build_cnn_dynamo,
    "torch_mlp_dynamo_external": build_mlp_dynamo_external,
    "torch_mlp_gelu_torchscript": build_gelu_torchscript,
    "torch_mlp_gelu_dynamo": build_gelu_dynamo,
    "torch_resnet_tiny_dynamo": build_resnet_dynamo,
    "torch_resnet_tiny_dynamo_noopt": build_resnet_dynamo_noopt,
    "torch_vgg_smooth_bn_train_torchscript": build_vgg_smooth_bn_train,
    "sklearn_mlp_regressor": build_sklearn_mlp,
}


def readme_table(infos: list[dict]) -> str:
    import skl2onnx

    rows = ["| file | exporter | opset | input shape | ops | default set |",
            "|---|---|---|---|---|---|"]
    for info in infos:
        f = info["file"]
        if f.startswith("sklearn"):
            exporter = f"skl2onnx {skl2onnx.__version__}"
        elif "dynamo" in f:
            exporter = f"torch {torch.__version__} dynamo"
            if "noopt" in f:
                exporter += " (optimize=False)"
            elif "external" in f:
                exporter += " + onnx external data"
        else:
            exporter = f"torch {torch.__version__} TorchScript"
        shape = "x".join(str(d) for d in info["inputs"][0][1])
        ops = ", ".join(f"{k}×{v}" if v > 1 else k for k, v in info["ops"].items())
        s = json.loads(info["metadata"]["boundprop.input_set"])
        dset = f"box [{s['lower']}, {s['upper']}]"
        rows.append(f"| `{f}` | {exporter} | {info['opset']} | [{shape}] | {ops} | {dset} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("only", nargs="*", metavar="NAME",
                    help=f"fixtures to build (default: all): {', '.join(BUILDERS)}")
    ap.add_argument("--json", type=Path, help="also write the verification report as JSON")
    args = ap.parse_args(argv)
    unknown = [n for n in args.only if n not in BUILDERS]
    if unknown:
        ap.error(f"unknown fixture(s) {unknown}; choose from {list(BUILDERS)}")
    torch.set_num_threads(1)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    names = args.only or list(BUILDERS)
    infos = [BUILDERS[n]() for n in names]
    total = sum(i["bytes"] for i in infos)
    print(f"\nTotal size: {total / 1024:.1f} KiB")
    print("\n" + readme_table(infos))
    if args.json:
        args.json.write_text(json.dumps(infos, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
