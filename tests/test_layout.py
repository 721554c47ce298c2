"""The house's layout holds: every module imports only from its own layer or the layers below it, and no
import circle ties modules together (imports inside `if TYPE_CHECKING:` are type-only and do not count).
Read from the source with `ast`, nothing is imported; docs/tests.md ("Layout") draws the same picture."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "topreward"

#: bottom to top; a module may import from its own layer and the ones below. The key is the first part of
#: the module's path inside the package (a folder or a top-level module).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "basics",
        (
            "_version", "extras", "atomic", "config", "prompts", "rewards", "metrics", "video", "episode",
            "sampling", "groundtruth", "result", "worklog", "plot", "ray_setup", "tiny",
        ),
    ),  # fmt: skip
    ("data", ("datasets", "sim", "calibration")),
    ("engine", ("backends",)),
    ("below the methods", ("task_text", "provenance", "stream")),
    ("methods", ("scorers",)),
    ("uses", ("annotate", "bench", "serve", "rl", "train", "view")),
    ("command line", ("cli",)),
    ("public face", ("__init__", "weights", "client")),  # re-exports and kept import paths only
)
LEVEL = {room: i for i, (_, rooms) in enumerate(LAYERS) for room in rooms}
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    """Dotted name (without the `topreward.` prefix; a package as its folder name) -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _type_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The package modules an import statement loads (a name imported from a package that is a submodule
    counts as that submodule)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        assert not node.level, f"{module}: relative import; the package uses absolute imports only"
        # `from pkg import name`: the submodule `pkg.name` when it is one, else `pkg` itself
        names = [
            f"{node.module}.{a.name}"
            if f"{node.module}.{a.name}".removeprefix("topreward.") in MODULES
            else node.module or ""
            for a in node.names
        ]
    found = []
    for name in names:
        if not (name == "topreward" or name.startswith("topreward.")):
            continue
        inner = name.removeprefix("topreward").lstrip(".") or "__init__"
        while inner and inner not in MODULES:
            inner = inner.rpartition(".")[0]
        if inner:
            found.append(inner)
    return found


def _imports(module: str) -> set[str]:
    """Every package module `module` imports at run time, at module level or inside functions."""
    tree = ast.parse(MODULES[module].read_text())
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update(_targets(module, node))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    out.discard(module)
    # a submodule importing its own package's face is the package loading itself, not an edge
    return {m for m in out if not module.startswith(m + ".")}


GRAPH = {m: _imports(m) for m in MODULES}


def _room(module: str) -> str:
    return module.split(".")[0]


def test_every_module_has_a_layer():
    rooms = {_room(m) for m in MODULES}
    assert rooms - set(LEVEL) == set(), "add these rooms to LAYERS (and to docs/tests.md, Layout)"
    assert set(LEVEL) - rooms == set(), "LAYERS names rooms that no longer exist"


def test_imports_only_go_down():
    upward = [
        f"{m} ({LAYERS[LEVEL[_room(m)]][0]}) imports {t} ({LAYERS[LEVEL[_room(t)]][0]})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if LEVEL[_room(t)] > LEVEL[_room(m)]
    ]
    assert upward == []


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            connect(v)
    return out


def test_no_import_circle():
    assert _cycles() == []


def test_the_check_sees_an_upward_import_and_a_circle(monkeypatch):
    """The checks above can fail: an engine module importing a method, and two modules importing each other."""
    monkeypatch.setitem(GRAPH, "backends.hf", GRAPH["backends.hf"] | {"scorers.registry"})
    monkeypatch.setitem(GRAPH, "scorers.registry", GRAPH["scorers.registry"] | {"backends.hf"})
    with pytest.raises(AssertionError):
        test_imports_only_go_down()
    assert ["backends.hf", "scorers.registry"] in [
        [m for m in c if m in ("backends.hf", "scorers.registry")] for c in _cycles()
    ]


def test_no_module_is_long_without_a_reason():
    """Over `MAX_LINES` lines a module says why at its top ("Long because ...")."""
    long = [
        f"{m}: {n} lines"
        for m, path in MODULES.items()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
        and "Long because" not in path.read_text()[:3000]
    ]
    assert long == []


def test_every_folder_says_what_lives_there_and_what_it_may_import():
    for path in sorted(p for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE):
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        assert "import" in doc, f"{path.relative_to(PACKAGE)}: its docstring does not say what it may import"
