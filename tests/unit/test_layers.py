"""The package's layers: imports run down (or sideways within a layer), never up, never in a circle.

Read from the code's own import statements (function-level imports included: a lazy import is
still a dependency), so the check cannot drift from the code. docs/architecture.md draws the
same table; a new module must be placed in a layer here before this test passes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "dlcrun"

# Lowest first. A package (storage, decoders, schedulers, engines) is one entry: its backends
# share its layer.
LAYERS: list[tuple[str, set[str]]] = [
    ("ground", {"dlcrun", "errors", "names", "files", "locations", "dates", "runtime"}),
    ("data", {"settings", "sheets", "manifest", "videos", "ledger"}),
    (
        "services",
        {
            "storage",
            "decoders",
            "schedulers",
            "engines",
            "inference",
            "container",
            "project",
            "labelling",
            "quality",
            "filtering",
            "clips",
            "tracking",
        },
    ),
    (
        "use cases",
        {
            "selection",
            "listing",
            "sampling",
            "batch",
            "estimate",
            "report",
            "results",
            "report_page",
            "outputs",
            "task",
            "training",
            "doctor",
            "demo",
        },
    ),
    ("interface", {"cli", "__main__"}),
]


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports, anywhere in the file."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "dlcrun")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            if module.split(".")[0] != "dlcrun":
                continue
            # `from dlcrun import batch` imports the module dlcrun.batch, `from dlcrun import
            # __version__` the package itself.
            out.update(f"{module}.{a.name}" if f"{module}.{a.name}" in known else module for a in node.names)
    return {m for m in out if m in known and m != name}


def unit(module: str) -> str:
    """The layer table's entry a module belongs to: its top-level name under dlcrun."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dlcrun"


def layer_of(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        if unit(module) in members:
            return rank
    raise KeyError(module)


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports(name, path, set(found)) for name, path in found.items()}


def test_every_module_has_a_layer():
    unplaced = [m for m in graph() if not any(unit(m) in members for _, members in LAYERS)]
    assert not unplaced, f"place these in LAYERS (and docs/architecture.md): {unplaced}"


def test_no_import_runs_up_a_layer():
    upward = [
        f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
        for a, targets in graph().items()
        for b in targets
        if layer_of(b) > layer_of(a)
    ]
    assert not upward, "imports that run up:\n" + "\n".join(sorted(upward))


def seam_loading(a: str, b: str) -> bool:
    """A seam's registry loading its own backends (storage -> storage.local): the one allowed
    way back, since a backend registers itself by being imported."""
    return b.startswith(a + ".")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    edges = {a: {b for b in targets if not seam_loading(a, b)} for a, targets in graph().items()}
    assert not cycles(edges), f"import cycles: {cycles(edges)}"


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"c"}}, [["a", "b"], ["c", "d"]]),
    ],
)
def test_the_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_the_import_reader_sees_lazy_and_package_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from dlcrun import batch, __version__\n"
        "def f():\n    from dlcrun.storage import local\n    import dlcrun.errors\n"
        "from . import ledger\n"
    )
    known = {"dlcrun", "dlcrun.batch", "dlcrun.storage", "dlcrun.storage.local", "dlcrun.errors", "dlcrun.ledger"}
    assert imports("dlcrun.m", source, known) == known - {"dlcrun.storage"}


def test_no_private_name_crosses_a_file():
    """A leading underscore means "this file's own": importing one elsewhere hides a dependency."""
    crossing = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlcrun"):
                crossing += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not [c for c in crossing if not c.endswith(".__version__")], crossing
