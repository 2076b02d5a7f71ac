"""The core never imports the command layer (typer, rich, the cli and progress modules)."""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "charrnn"
COMMAND_LAYER = {"cli", "progress", "__main__"}
FORBIDDEN = {"typer", "click", "rich", "charrnn.cli", "charrnn.progress"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from .cli import x / from . import cli
                base = "charrnn" + ("." + node.module if node.module else "")
                names.add(base)
                names |= {f"{base}.{a.name}" for a in node.names}
            elif node.module:
                names.add(node.module)
    return names


CORE = sorted(p for p in PKG.glob("*.py") if p.stem not in COMMAND_LAYER)


def test_there_is_a_core():
    assert {"model", "data", "training", "generation", "checkpoint", "evaluation"} <= {p.stem for p in CORE}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.stem)
def test_core_module_does_not_import_the_command_layer(path):
    bad = {n for n in _imports(path) if n.split(".")[0] in FORBIDDEN or n in FORBIDDEN}
    assert not bad, f"{path.name} imports {bad}"


def test_core_does_not_print():
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                pytest.fail(f"{path.name}:{node.lineno} calls print")
