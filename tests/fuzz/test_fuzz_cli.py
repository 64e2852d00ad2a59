"""Fuzzing the command line: subcommands × options × hostile values (negative scientific
numbers, nan, '', long paths, a device, FIFOs, folders, dangling symlinks, the command's own
inputs as its output).

Every run happens in a private folder: the "device" is a private character-device node made
with mknod (1, 3: the null device) so that a tool replacing it destroys nothing outside the
test; without mknod the device values are left out. Checked for every argument vector:

- the contract (exit 0/1/2, one-line error, no traceback, time limit);
- the command's input files are unchanged, the device node is still a device, no temporary
  file is left behind, and a ``certify -o`` target is absent, unchanged or complete JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from tests.fuzz import corpus
from tests.fuzz.harness import MODES, contract_violation, fuzz, output_violation, run_cli

NUMBERS = ["-1e-3", "-1e308", "1e309", "nan", "-nan", "inf", "-inf", "0", "-0", "", "1e-320",
           "abc", "2147483648", "99999999999999999999999", "1", "0.5", "-1", "0x10", "1_0",
           "1e", " 1", "\u0661"]
INTS = ["0", "-1", "1", "3", "1e3", "nan", "", "2147483648", "99999999999999999999"]
# @name: a file of the private folder (see _pool); anything else is passed as is.
PATHS = ["@model", "@tanh", "@cert", "@cert_tanh", "@x_npy", "@y_npy", "@nan_npy", "@obj_npy",
         "@bad_npy", "@big_npy", "@txt", "@vnnlib", "@empty", "@folder", "@fifo", "@device",
         "@dangling", "@link_model", "@missing", "@long", "@deep", "", "-", "--", "-1e-3",
         "nan", "/nonexistent/x.onnx", "/dev/null"]  # /dev/null only ever as an input
OUTS = ["@new_json", "@old_json", "@model", "@cert", "@folder", "@fifo", "@device",
        "@dangling", "@link_old", "@in_missing_folder", "@new_html", "@new_md", "@new_npy",
        "@long", ""]
SHAPES = ["1,3", "1x3", "0", "-1,3", "1,,3", "2147483648", "a", "", "1,3,1,1,1,1,1,1"]

COMMANDS = {
    "certify": (["@model"], {"--box": ["num", "num"], "--linf": ["path|num", "num"],
                             "--l2": ["path|num", "num"], "--vnnlib": ["path"],
                             "--clip": ["num", "num"], "--method": ["choice"],
                             "--execution": ["choice"], "--norm": ["choice"],
                             "--wrt": ["choice"], "--radius": ["num"], "--loss": ["choice"],
                             "--targets": ["path|num"], "--global": [], "--symbolic": [],
                             "--latex": [], "--free": ["name"], "-o": ["out"], "--json": [],
                             "--quiet": [], "--input-shape": ["shape"], "--input": ["name"],
                             "--output": ["name"]}),
    "inspect": (["@model"], {"--input-shape": ["shape"], "--input": ["name"],
                             "--output": ["name"], "--json": []}),
    "check": (["@cert", "@model"], {"--verbose": [], "--json": [], "--quiet": []}),
    "audit": (["@cert", "@model"], {"--samples": ["int"], "--steps": ["int"],
                                    "--seed": ["int"], "--json": [], "--quiet": [],
                                    "--no-progress": []}),
    "report": (["@cert"], {"-o": ["out"], "--model": ["path"], "--audit": ["path"],
                           "--max-outputs": ["int"], "--json": []}),
    "compare": (["@model", "@tanh"], {"--norm": ["choice"], "--global": [],
                                      "--method": ["choice"], "--json": [], "--quiet": [],
                                      "-o": ["out"], "--plot": ["out"]}),
    "gn": (["@model"], {"--targets": ["path"], "--variables": ["name"], "--inputs": ["path"],
                        "--x0": ["path"], "--loss": ["choice"], "--regularization": ["num"],
                        "--max-iter": ["int"], "--tol": ["num"], "--damping": ["choice"],
                        "--subspace": ["int"], "--dtype": ["choice"],
                        "--difference": ["choice"], "--certified-radius": ["num"],
                        "-o": ["out"], "--json": [], "--quiet": []}),
    "ops": ([], {"--json": []}),
    "verify": (["@model", "@vnnlib"], {"--timeout": ["num"], "-o": ["out"], "--proof": ["out"],
                                       "--method": ["choice"], "--seed": ["int"], "--json": [],
                                       "--quiet": [], "--progress": [],
                                       "--input-shape": ["shape"]}),
}
OUTPUT_OPTIONS = ("-o", "--plot", "--proof")
CHOICES = ["2", "inf", "1", "interval", "linear", "alpha", "real", "float32", "input", "params",
           "squared", "cross_entropy", "lm", "grad_norm", "auto", "float64", "central",
           "forward", "", "nan"]
NAMES = ["x", "y", "W1", "input", "last", "eps_bn", "", "nonexistent", "-", "a" * 300]


def _value(kind: str) -> st.SearchStrategy[str]:
    return {"num": st.sampled_from(NUMBERS), "int": st.sampled_from(INTS),
            "path": st.sampled_from(PATHS), "out": st.sampled_from(OUTS),
            "choice": st.sampled_from(CHOICES), "name": st.sampled_from(NAMES),
            "shape": st.sampled_from(SHAPES),
            "path|num": st.sampled_from(PATHS + NUMBERS[:8])}[kind]


@st.composite
def argvs(draw):
    """An argument vector: a subcommand, its positionals (usually sane, sometimes hostile) and
    0–4 of its options with hostile values."""
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    positional, options = COMMANDS[cmd]
    argv = [cmd]
    for p in positional:
        argv.append(p if draw(st.integers(0, 3)) else draw(st.sampled_from(PATHS)))
    for opt in draw(st.lists(st.sampled_from(sorted(options)), max_size=4, unique=True)):
        argv.append(opt)
        argv.extend(draw(_value(k)) for k in options[opt])
    if draw(st.integers(0, 9)) == 0:  # an unknown option or a stray word
        argv.insert(draw(st.integers(1, len(argv))), draw(st.sampled_from(
            ["--zzz", "-", "--", "extra", "-o"])))
    return argv


def _npy_with_header(path: Path, shape: tuple[int, ...]) -> None:
    """A .npy file whose header claims ``shape`` but holds 16 bytes (a lying header)."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") +
                     header.encode() + b"\0" * 16)


def _pool(folder: Path, seed_dir: Path) -> dict[str, str]:
    """The private folder's files, by @name."""
    folder.mkdir(parents=True, exist_ok=True)
    f = {k: folder / v for k, v in {
        "model": "relu.onnx", "tanh": "tanh.onnx", "cert": "cert.json",
        "cert_tanh": "cert_tanh.json", "x_npy": "x.npy", "y_npy": "y.npy", "nan_npy": "nan.npy",
        "obj_npy": "obj.npy", "bad_npy": "bad.npy", "big_npy": "big.npy", "txt": "x.txt",
        "vnnlib": "p.vnnlib", "empty": "empty.json", "folder": "folder", "fifo": "fifo",
        "device": "null", "dangling": "dangling.json", "link_model": "link.onnx",
        "missing": "missing.onnx", "new_json": "new.json", "old_json": "old.json",
        "link_old": "link_old.json", "in_missing_folder": "nofolder/out.json",
        "new_html": "new.html", "new_md": "new.md", "new_npy": "new.npy"}.items()}
    for name in ("relu", "tanh"):
        (folder / f"{name}.onnx").write_bytes((seed_dir / f"{name}.onnx").read_bytes())
    f["cert"].write_bytes((seed_dir / "relu_box_2.json").read_bytes())
    f["cert_tanh"].write_bytes((seed_dir / "tanh_box_2.json").read_bytes())
    np.save(f["x_npy"], np.full((1, corpus.N_IN), 0.25))
    np.save(f["y_npy"], np.zeros((1, corpus.N_OUT)))
    np.save(f["nan_npy"], np.full((1, corpus.N_IN), np.nan))
    np.save(f["obj_npy"], np.array([{"a": 1}], dtype=object), allow_pickle=True)
    f["bad_npy"].write_bytes(b"\x93NUMPY garbage")
    _npy_with_header(f["big_npy"], (2**40,))
    f["txt"].write_text("0.1 0.2 nan\n")
    f["vnnlib"].write_text(corpus.vnnlib_seed())
    f["empty"].write_text("")
    f["folder"].mkdir()
    os.mkfifo(f["fifo"])
    try:
        os.mknod(f["device"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except (OSError, AttributeError):
        f.pop("device")
    os.symlink(folder / "absent" / "x.json", f["dangling"])
    os.symlink(f["model"], f["link_model"])
    f["old_json"].write_text('{"old": true}')
    os.symlink(f["old_json"], f["link_old"])
    out = {f"@{k}": str(v) for k, v in f.items()}
    out["@long"] = str(folder / ("a" * 300 + ".json"))
    out["@deep"] = str(folder) + "/x" * 3000
    return out


def _digest(path: str) -> str | None:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _after(argv: list[str], real: list[str], pool: dict[str, str], folder: Path,
           before: dict[str, str | None], listing: set[str], o) -> tuple[str | None, str]:
    """What the run broke beyond the exit contract, if anything."""
    outs = {real[i + 1] for i, a in enumerate(argv[:-1]) if a in OUTPUT_OPTIONS}
    written = {os.path.realpath(p) for p in outs}  # an output may be reached by a symlink too
    ins = {os.path.realpath(real[i]) for i in range(1, len(argv))
           if argv[i - 1] not in OUTPUT_OPTIONS and real[i]}  # the command's own inputs
    for name, path in pool.items():
        target = os.path.realpath(path)
        if (target in written and target not in ins) or name in (
                "@new_json", "@new_html", "@new_md", "@new_npy"):
            continue
        if before.get(name) is not None and _digest(path) != before[name]:
            what = "an input" if target in ins else "not an output"
            return f"{name} ({what}) was changed", " ".join(argv)
    if "@device" in pool and not stat.S_ISCHR(os.lstat(pool["@device"]).st_mode):
        return "device node replaced", " ".join(argv)
    for i, a in enumerate(argv[:-1]):
        if a == "-o" and argv[0] == "certify" and argv[i + 1] in ("@new_json", "@old_json"):
            old = b'{"old": true}' if argv[i + 1] == "@old_json" else None
            bad = output_violation(Path(real[i + 1]), old, o.code)
            if bad:
                return bad, " ".join(argv)
    stems = {Path(p).stem for p in outs}
    extra = [n for n in os.listdir(folder) if n not in listing and
             not any(n.startswith(s) for s in stems if s)]
    if extra:
        return f"leftover file {extra[0][:40]}", " ".join(argv)
    return None, ""


@pytest.mark.parametrize("mode", MODES)
def test_cli_argument_vectors(mode, seed_dir, tmp_path):
    counter = [0]

    def prop(argv):
        counter[0] += 1
        folder = tmp_path / f"run{counter[0]}"
        pool = _pool(folder, seed_dir)
        real = [pool.get(a, a) for a in argv]
        if any(a == "@device" for a in argv) and "@device" not in pool:
            return "", ""
        before = {k: _digest(v) for k, v in pool.items()}
        listing = set(os.listdir(folder))
        o = run_cli(real)
        kind = contract_violation(o)
        if kind:
            return kind, f"{' '.join(argv)} → {o.exception or o.err[-600:]}"
        kind, detail = _after(argv, real, pool, folder, before, listing, o)
        if not kind:
            shutil.rmtree(folder, ignore_errors=True)  # kept when something broke
        return kind, detail

    fuzz("cli_argv", mode, argvs(), prop, smoke=100)


def test_output_checks_can_fail(tmp_path):
    """The output oracle: a half-written JSON target is caught, an unchanged one is not."""
    p = tmp_path / "o.json"
    p.write_text('{"a": [1, 2')
    assert output_violation(p, None, 0)
    p.write_text('{"old": true}')
    assert output_violation(p, b'{"old": true}', 2) is None
    assert output_violation(tmp_path / "absent.json", None, 2) is None
    assert json.loads('{"old": true}')
