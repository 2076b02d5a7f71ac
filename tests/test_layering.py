"""The layer rules of the package (README "Architecture"), checked on the import statements.

    errors, config, files, runtime      shared, small; import nothing of charrnn's but each other
    text                                bytes -> ids (tokenizers, corpora, labelled examples)
    models                              nn.Modules built from a config
    checkpoint                          files of models + tokenizers
    decoding                            one decoding engine (sampling, beam search) over any step
    tasks                               what is specific to a task (validation may decode)
    training                            the one loop (knows the Task interface)
    api                                 the Python API over all of it
    diagnostics                         numbers about a model's insides (gradients, memory,
                                        surprisal, neurons); drawing them is the cli's
    serve                               the HTTP server over the API (FastAPI; never prints)
    display                             rich drawings of training shared by the cli and
                                        charrnn.train (draws on the console it is given)
    cli                                 the only place that prints, parses options, uses typer/rich

A layer may import the layers above it, never one below; nothing imports the cli; the
core never prints; there is no import cycle between modules.
"""

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "charrnn"

# Layer of each top-level part of the package; a part may import parts of a lower number
# (and modules of its own part).
LAYERS = {
    "errors": 0, "config": 1, "files": 1, "runtime": 1, "kinds": 1,
    "task_configs": 1.5,  # the task models' architectures, built on config's checks
    "text": 2,
    "models": 3,
    "checkpoint": 4,
    "decoding": 5,
    "tasks": 6,
    "training": 7,
    "api": 8, "export": 8, "diagnostics": 8,
    "serve": 8.5,
    "display": 8.8,  # rich renderings that charrnn.train shows too
    "cli": 9, "__main__": 10, "__init__": 10,
}
COMMAND_LAYER = {"cli", "__main__"}
FORBIDDEN_IN_CORE = {"typer", "click", "rich"}
RICH_ALLOWED = {"display"}  # draws with rich on a console it is given; still no typer or click


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(source: str, module: str, is_package: bool, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules ``source`` (the text of ``module``) imports: ``from .x
    import y`` gives both package.x and package.x.y (y may be a module). With
    ``top_level_only``, imports inside functions (lazy ones) are left out."""
    package = module if is_package else module.rpartition(".")[0]
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module:  # "from . import x" imports the submodule x, not the package again
                names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


def _imports_of(path: Path, top_level_only: bool = False) -> set[str]:
    return _imports(path.read_text(), _module_name(path), path.name == "__init__.py", top_level_only)


MODULES = sorted(p for p in PKG.rglob("*.py"))
CORE = [p for p in MODULES if _module_name(p).split(".")[1:2] and _module_name(p).split(".")[1] not in COMMAND_LAYER]


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_part_has_a_layer():
    parts = {_part(_module_name(p)) for p in MODULES}
    assert parts <= set(LAYERS), parts - set(LAYERS)
    assert {"text", "models", "tasks", "decoding", "training", "cli"} <= parts


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_a_module_imports_only_its_own_layer_and_those_above(path):
    bad = _upward(path.read_text(), _module_name(path)) if path.name != "__init__.py" else [
        n for n in _imports_of(path) if n.startswith("charrnn.") and _part(n) != _part(_module_name(path))
        and _part(n) in LAYERS and LAYERS[_part(n)] >= LAYERS[_part(_module_name(path))]]
    assert not bad, f"{_module_name(path)} imports {bad}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: _module_name(p))
def test_core_module_does_not_import_the_command_layer(path):
    forbidden = FORBIDDEN_IN_CORE - ({"rich"} if _part(_module_name(path)) in RICH_ALLOWED else set())
    bad = {n for n in _imports_of(path) if n.split(".")[0] in forbidden or n.startswith("charrnn.cli")}
    assert not bad, f"{_module_name(path)} imports {bad}"


def test_core_does_not_print():
    for path in CORE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                pytest.fail(f"{_module_name(path)}:{node.lineno} calls print")


def test_no_import_cycle():
    """Module-level imports form no cycle (imports inside functions are lazy and excluded)."""
    known = {_module_name(p) for p in MODULES}
    graph = {_module_name(p): {n for n in _imports_of(p, top_level_only=True) if n in known and n != _module_name(p)}
             for p in MODULES}
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in trail:
                pytest.fail("import cycle: " + " -> ".join(trail[trail.index(nxt):] + [nxt]))
            if nxt not in done:
                visit(nxt, trail + [nxt])
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start, [start])


def _upward(source: str, module: str) -> list[str]:
    me = _part(module)
    return sorted(n for n in _imports(source, module, False)
                  if n.startswith("charrnn.") and _part(n) in LAYERS and _part(n) != me and LAYERS[_part(n)] >= LAYERS[me])


def test_the_layer_rule_catches_an_upward_import():
    """The rule above can fail: a text module importing training, or models importing
    tasks, is caught; importing a layer above is not."""
    assert _upward("from ..training import loop\n", "charrnn.text.probe") == ["charrnn.training", "charrnn.training.loop"]
    assert _upward("from ..tasks.base import Task\n", "charrnn.models.probe")
    assert _upward("from ..text.io import read_text\nfrom ..errors import CorpusError\n", "charrnn.tasks.probe") == []
