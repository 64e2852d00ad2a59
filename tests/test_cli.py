"""CLI polish: every command documents itself with examples, takes --json, and keeps the exit
code contract (0 ok, 1 negative verdict, 2 bad input)."""

from __future__ import annotations

import argparse
import importlib
import json

import pytest

from boundprop import __version__
from boundprop.cli import DEFERRED_COMMANDS, build_parser, main
from tests.conftest import MODELS

COMMANDS = ["certify", "check", "audit", "report", "compare", "inspect", "verify"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_has_examples_and_json(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--json" in out


@pytest.mark.parametrize("cmd", ["certify", "check", "audit", "compare", "verify"])
def test_quiet_exists(cmd):
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    opts = {o for a in sub.choices[cmd]._actions for o in a.option_strings}
    assert "--quiet" in opts


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and __version__ in capsys.readouterr().out


def test_usage_error_is_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["certify"])
    assert e.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_ops_and_inspect_json(capsys):
    assert main(["ops", "--json"]) == 0
    assert "Gemm" in json.loads(capsys.readouterr().out)
    assert main(["inspect", str(MODELS / "mlp_relu.onnx"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["nodes"]


def test_deferred_commands_are_listed_as_their_modules_register_them():
    """`boundprop --help` lists a deferred command before importing its module: the listed
    help line is the one the module's register(sub) gives, for every command it adds."""
    sub = argparse.ArgumentParser().add_subparsers()
    for module in {module for module, _ in DEFERRED_COMMANDS.values()}:
        importlib.import_module(module).register(sub)
    registered = {action.dest: action.help for action in sub._get_subactions()}
    assert registered == {name: line for name, (_, line) in DEFERRED_COMMANDS.items()}


def test_deferred_command_parses_like_a_registered_one(capsys):
    with pytest.raises(SystemExit) as e:
        main(["audit", "c.json", "m.onnx", "--samples", "-3"])
    assert e.value.code == 2
    assert "boundprop audit: error: argument --samples: '-3' must be ≥ 0" in capsys.readouterr().err


def test_ops_rules_matrix(capsys):
    """`boundprop ops --rules`: one row per IR primitive, one column per rule of the contract
    (x where declared), a legend; --json gives the same as rows."""
    from boundprop.ops.contract import RULES

    assert main(["ops", "--rules"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["primitive", "family"]
    assert len(lines[0].split()) == 2 + len(RULES)
    dense = next(line.split() for line in lines if line.startswith("Dense "))
    assert dense[1] == "affine" and set(dense[2:]) <= {"x", "."} and "x" in dense[2:]
    assert all(any(f"{name}:" in line for line in lines) for name in RULES)
    assert main(["ops", "--rules", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["primitive"]: r for r in rows}
    assert by_name["Dense"]["rules"]["interval"] is True
    assert all(set(r["rules"]) == set(RULES) for r in rows)
