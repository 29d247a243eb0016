"""Benchmarks and recipes are scripts no unit test runs: check every hf_megadocs name they
import (deferred imports included) still exists, so a move in the package cannot strand them."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("recipes/*.py")])


def _package_imports(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hf_megadocs")
        for alias in node.names
    ]


def test_there_are_scripts_to_check():
    assert any(p.parent.name == "benchmarks" for p in SCRIPTS)
    assert any(p.parent.name == "recipes" for p in SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_imported_name_exists(script: Path):
    missing = [
        f"from {module} import {name}"
        for module, name in _package_imports(script)
        if not hasattr(importlib.import_module(module), name)
    ]
    assert not missing, f"{script.name} imports names that no longer exist: {missing}"
