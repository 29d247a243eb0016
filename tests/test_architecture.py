"""The package's shape: stages import only from the stages below them, no import cycles
(deferred imports included), small modules, and a light ``import hf_megadocs``."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_megadocs"
STAGES = ("generation", "corpora", "training", "hub", "analysis", "tuning", "jobs")
"""Bottom to top: a stage may import the shared modules and any stage before it."""
SHARED = (
    "hf_megadocs",
    "hf_megadocs.records",
    "hf_megadocs.adapters",
    "hf_megadocs.settings",
    "hf_megadocs.flags",
    "hf_megadocs.jsonl",
    "hf_megadocs.locks",
    "hf_megadocs.lifetime",
    "hf_megadocs.mapped_pages",
    "hf_megadocs.extras",
    "hf_megadocs.disk_full",
    "hf_megadocs.configs",
)
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == (
        "TYPE_CHECKING"
    )


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every hf_megadocs module ``name`` imports, at any depth (functions included), except
    under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    target = alias.name
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    found.add(target)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                for alias in child.names:
                    full = f"{base}.{alias.name}"
                    found.add(full if full in modules else base)
            visit(child)

    visit(ast.parse(path.read_text()))
    return {m for m in found if m.startswith("hf_megadocs") and m != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) & set(modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def strong(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                strong(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            strong(node)
    return cycles


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_no_import_cycles_even_through_deferred_imports():
    assert _cycles(_graph()) == []


def test_the_detector_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_stages_import_only_from_stages_below():
    wrong = []
    for module, imported in _graph().items():
        stage = _stage(module)
        if stage is None:
            continue  # the shared modules and the console-script dispatcher
        allowed = set(STAGES[: STAGES.index(stage) + 1])
        for target in imported:
            target_stage = _stage(target)
            if target_stage is None and target not in SHARED:
                wrong.append(f"{module} -> {target} (not a shared module)")
            elif target_stage is not None and target_stage not in allowed:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_modules_are_small_and_packages_say_what_they_do():
    too_long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert too_long == {}
    for stage in STAGES:
        docstring = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert docstring and len(docstring) > 100, stage


def test_import_registers_the_builder_without_heavy_libraries():
    code = (
        "import sys, datasets.load, hf_megadocs\n"
        "heavy = [m for m in ('torch', 'transformers', 'accelerate', 'vllm') if m in sys.modules]\n"
        "print(heavy, 'hf_megadocs' in datasets.load._PACKAGED_DATASETS_MODULES)\n"
        "import hf_megadocs.corpora.assembly, hf_megadocs.generation.store\n"
        "print([m for m in ('torch', 'transformers', 'accelerate', 'vllm') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines() == ["[] True", "[]"]
