"""maxconv's modules import downward only, and none in a cycle.

Every import is read from the source, those inside functions too. A module
may import modules of its own layer or a lower one; `errors` and `planning`
(which itself imports nothing from maxconv) from anywhere.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "maxconv"

# Lowest first. A new module must be placed here (the test says so).
LAYERS: list[tuple[str, set[str]]] = [
    (
        "runtime",
        {"atomic", "cache", "calibration_record", "device_graphs", "devices", "engine", "transfer"},
    ),
    (
        "core",
        {
            "arrays",
            "audio_format",
            "audio_read",
            "audio_write",
            "fir",
            "layout",
            "pipeline",
            "rows",
            "stream",
        },
    ),
    ("api", {"maxconv", "batch", "convolution", "device_arrays"}),
    (
        "jobs",
        {"augment", "bench", "bench_peers", "calibration", "filtering", "ray"},
    ),
    (
        "command line",
        {
            "__main__",
            "cli",
            "cli_augment",
            "cli_bench",
            "cli_cache",
            "cli_calibrate",
            "cli_demo",
            "cli_devices",
            "cli_errors",
            "cli_filter",
            "cli_options",
            "cli_progress",
            "cli_serve",
            "client",
            "server",
            "server_child",
            "server_connections",
            "server_procs",
        },
    ),
]
ANYWHERE = {"errors", "planning"}


def module_name(path: Path) -> str:
    """'convolution', 'augment' (every module of a subpackage counts as it), 'maxconv'."""
    relative = path.relative_to(PACKAGE).with_suffix("")
    if relative.parts == ("__init__",):
        return "maxconv"
    return relative.parts[0]


def _runtime_nodes(tree: ast.AST):
    """Every node but those under `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """The maxconv modules a file imports at run time (first component under maxconv)."""
    tree = ast.parse(source if source is not None else path.read_text())
    inside_subpackage = len(path.relative_to(PACKAGE).parts) > 1
    found: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != "maxconv":
                    continue
                rest = parts[1:]
            else:
                up = node.level - (1 if inside_subpackage else 0)
                if up > 1:
                    continue
                if up == 0:  # within the subpackage: the subpackage itself
                    found.add(module_name(path))
                    continue
                rest = (node.module or "").split(".") if node.module else []
            if rest:
                found.add(rest[0])
            else:  # from maxconv import x / from . import x: modules or the package
                for alias in node.names:
                    found.add(alias.name if (PACKAGE / f"{alias.name}.py").exists() else "maxconv")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "maxconv":
                    found.add(parts[1] if len(parts) > 1 else "maxconv")
    return found - {module_name(path)}


def layer_of(name: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if name in members:
            return index
    raise AssertionError(f"maxconv module {name!r} has no layer: add it to LAYERS")


def upward_imports(path: Path, source: str | None = None) -> list[str]:
    """'x imports y (layer)' for each import of a higher layer."""
    here = module_name(path)
    mine = -1 if here in ANYWHERE else layer_of(here)
    problems = []
    for name in sorted(imported_modules(path, source)):
        if name in ANYWHERE:
            continue
        if here in ANYWHERE or layer_of(name) > mine:
            where = "anywhere" if here in ANYWHERE else LAYERS[mine][0]
            problems.append(f"{here} ({where}) imports {name} ({LAYERS[layer_of(name)][0]})")
    return problems


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_downward(path: Path):
    assert upward_imports(path) == []


def test_planning_imports_nothing_from_maxconv():
    assert imported_modules(PACKAGE / "planning.py") == set()


def test_no_import_cycle():
    graph = {module_name(p): set() for p in SOURCES}
    for path in SOURCES:
        graph[module_name(path)] |= imported_modules(path)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


def test_a_planted_upward_import_is_caught():
    """The checker itself: an engine that imports the CLI, inside a function."""
    planted = "def f():\n    from .cli import app\n    return app\n"
    assert upward_imports(PACKAGE / "engine.py", planted) == [
        "engine (runtime) imports cli (command line)"
    ]
    assert upward_imports(PACKAGE / "planning.py", "import maxconv.rows\n") == [
        "planning (anywhere) imports rows (core)"
    ]


def test_documented_crossovers_are_planning_s():
    """The README and the API docstring quote planning.FFT_FROM_TAPS: they cannot drift."""
    import maxconv.convolution
    from maxconv.planning import FFT_FROM_TAPS

    readme = (PACKAGE.parent / "README.md").read_text()
    cpu, gpu = FFT_FROM_TAPS["cpu"], FFT_FROM_TAPS["gpu"]
    assert f"from {cpu} taps on the CPU and {gpu} on a GPU" in readme
    assert f"{cpu}+ taps on the CPU, {gpu}+ on a GPU" in readme
    assert f"({cpu} taps on the CPU, {gpu} on a GPU)" in maxconv.convolution.correlate.__doc__
