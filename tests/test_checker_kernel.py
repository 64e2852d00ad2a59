"""The checker's trust boundary: its kernel imports only the standard library, numpy, scipy,
jsonschema and boundprop.exact (no prover code), and every prover function a check calls is
listed in ``CheckResult.trusted``."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import boundprop.checker.kernel as kernel
from boundprop.checker import check
from boundprop.importer import model_digest
from tests.conftest import MODELS

ALLOWED = {"numpy", "scipy", "jsonschema", "fractions", "boundprop.exact"}


def _imports(path: Path) -> list[str]:
    """Every module the file imports (absolute names; ``from . import x`` counts as relative)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append("." * node.level + (node.module or ""))
    return out


def _allowed(name: str) -> bool:
    if name.startswith("."):
        return False
    top = name.split(".")[0]
    if top in sys.stdlib_module_names and top != "boundprop":
        return True
    return any(name == a or name.startswith(a + ".") for a in ALLOWED)


def test_kernel_imports_no_prover_code():
    found = _imports(Path(kernel.__file__))
    assert found, "no imports parsed"
    bad = [m for m in found if not _allowed(m)]
    assert not bad, f"the checker kernel imports {bad}: only {sorted(ALLOWED)} and the stdlib"


def test_import_parser_sees_prover_imports(tmp_path):
    f = tmp_path / "k.py"
    f.write_text("import os\nfrom boundprop.constants import x\nfrom . import y\n"
                 "def f():\n    import boundprop.ops\n")
    assert [m for m in _imports(f) if not _allowed(m)] == ["boundprop.constants", ".",
                                                           "boundprop.ops"]


def test_kernel_digest_is_the_importers():
    for path in sorted(MODELS.glob("*.onnx")):
        assert kernel.model_digest(path) == model_digest(path), path


def test_kernel_digest_with_external_data(tmp_path):
    import onnx

    m = onnx.load(MODELS / "mlp_tanh.onnx")
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, path, save_as_external_data=True, all_tensors_to_one_file=False,
                    size_threshold=0)
    assert kernel.model_digest(path) == model_digest(path)
    weight = next(p for p in tmp_path.iterdir() if p.suffix != ".onnx")
    before = kernel.model_digest(path)
    weight.write_bytes(weight.read_bytes()[::-1])  # a swapped weight file changes the digest
    assert kernel.model_digest(path) != before
    assert kernel.model_digest(path) == model_digest(path)


def test_trusted_functions_listed(tmp_path):
    import boundprop as bp
    from boundprop.sets import default_input_set

    net = bp.load(MODELS / "mlp_tanh.onnx")
    cert = tmp_path / "c.json"
    bp.certify(net, default_input_set(net)).save(cert)
    r = check(cert, MODELS / "mlp_tanh.onnx")
    assert any("importer.load" in t for t in r.trusted)
    assert any("output_bounds" in t for t in r.trusted)
    assert r.to_json()["trusted"] == r.trusted
    assert {i.how for i in r.items if i.name == "output samples"} == {"recomputed"}


def test_kernel_digest_finds_attribute_and_subgraph_tensors(tmp_path):
    """External data of Constant attributes and of tensors inside If branches count too."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    def const(out, name, value):
        return helper.make_node("Constant", [], [out], value=numpy_helper.from_array(value, name))

    rng = np.random.default_rng(0)
    vec = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in ("t", "e")]
    branches = [helper.make_graph([const(n, f"{n}v", rng.random(4, dtype=np.float32))],
                                  n, [], [v]) for n, v in zip(("t", "e"), vec)]
    nodes = [const("b", "bv", rng.random(4, dtype=np.float32)),
             const("c", "cv", np.array(True)),
             helper.make_node("If", ["c"], ["z"], then_branch=branches[0],
                              else_branch=branches[1]),
             helper.make_node("MatMul", ["x", "W"], ["y0"]),
             helper.make_node("Add", ["y0", "b"], ["y1"]),
             helper.make_node("Add", ["y1", "z"], ["y"])]
    x, y = (helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4]) for n in ("x", "y"))
    g = helper.make_graph(nodes, "g", [x], [y],
                          [numpy_helper.from_array(rng.random((4, 4), dtype=np.float32), "W")])
    m = helper.make_model(g)
    convert_model_to_external_data(m, all_tensors_to_one_file=False, size_threshold=0,
                                   convert_attribute=True)
    onnx.save_model(m, tmp_path / "m.onnx")
    assert {"tv", "ev", "bv", "W"} <= {p.name for p in tmp_path.iterdir()}
    assert kernel.model_digest(tmp_path / "m.onnx") == model_digest(tmp_path / "m.onnx")
    (tmp_path / "tv").write_bytes(b"\0" * 16)  # a subgraph's weight file changed
    assert kernel.model_digest(tmp_path / "m.onnx") == model_digest(tmp_path / "m.onnx")
