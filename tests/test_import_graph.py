"""No import cycle among palfrey's modules, and each module imports alone (issue 11, item 4).

The graph is read from the source: every import a module runs when it is imported (at module
level, including inside a top-level ``if``/``try``, but not under ``if TYPE_CHECKING`` or in a
function), resolved to palfrey's own modules; the compiled core's Python imports are read from
its .pyx/.pxi. A cycle means that some order of first imports finds a module half-initialised.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import palfrey
from tests.support.common import ROOT

pytestmark = pytest.mark.palfrey_only

PACKAGE_DIR = Path(palfrey.__file__).resolve().parent
COMPILED = "palfrey._parser"
# The compiled core: Python-level imports at the start of a line in these files.
COMPILED_SOURCES = ["_parser.pyx", "_shared.pxi", "_cycle.pxi", "_websocket.pxi"]
PYX_IMPORT = re.compile(
    r"^(?:from\s+(palfrey[\w.]*)\s+import\s+([\w\s,()]+)|import\s+(palfrey[\w.]*))"
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def all_modules() -> list[str]:
    return sorted([*python_modules(), COMPILED])


def _runs_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of ``body`` that run when the module is imported."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        test = getattr(node, "test", None) if isinstance(node, ast.If) else None
        if "TYPE_CHECKING" in (getattr(test, "id", None), getattr(test, "attr", None)):
            yield from _runs_at_import(node.orelse)
            continue
        yield node
        blocks = [getattr(node, name, []) for name in ("body", "orelse", "finalbody")]
        blocks += [handler.body for handler in getattr(node, "handlers", [])]
        for block in blocks:
            if block and isinstance(block[0], ast.stmt):
                yield from _runs_at_import(block)


def _targets(importer: str, is_package: bool, module: str | None, names: list[str],
             level: int, known: set[str]) -> set[str]:  # fmt: skip
    """palfrey modules an import statement imports: ``from a import b`` is a.b when that is
    a module, else a."""
    if level:
        base = importer if is_package else importer.rpartition(".")[0]
        for _ in range(level - 1):
            base = base.rpartition(".")[0]
        module = f"{base}.{module}" if module else base
    if module is None or not (module == "palfrey" or module.startswith("palfrey.")):
        return set()
    found = set()
    for name in names:
        found.add(f"{module}.{name}" if f"{module}.{name}" in known else module)
    return found or {module}


def import_graph() -> dict[str, set[str]]:
    modules = python_modules()
    known = set(modules) | {COMPILED}
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in _runs_at_import(tree.body):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    graph[name] |= _targets(name, False, alias.name, [], 0, known)
            elif isinstance(node, ast.ImportFrom):
                names = [a.name for a in node.names]
                is_package = path.name == "__init__.py"
                graph[name] |= _targets(name, is_package, node.module, names, node.level, known)
    for source in COMPILED_SOURCES:
        for line in (PACKAGE_DIR / source).read_text().splitlines():
            m = PYX_IMPORT.match(line)
            if m and m.group(1):
                names = [n.strip() for n in m.group(2).strip("() ").split(",") if n.strip()]
                graph[COMPILED] |= _targets(COMPILED, False, m.group(1), names, 0, known)
            elif m:
                graph[COMPILED] |= _targets(COMPILED, False, m.group(3), [], 0, known)
    for name, imported in graph.items():
        imported.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_the_imports():
    # A sample of edges that exist, so that an empty graph cannot pass for an acyclic one.
    graph = import_graph()
    assert "palfrey.config" in graph["palfrey.main"]
    assert "palfrey.server" in graph["palfrey.main"]
    assert "palfrey.supervisors" in graph["palfrey.main"]
    assert "palfrey.protocols.common" in graph[COMPILED]  # from _shared.pxi
    assert COMPILED in graph["palfrey.protocols.websocket"]
    assert "palfrey.supervisors.worker" in graph["palfrey.supervisors.multiprocess"]


def test_no_import_cycle_among_palfreys_modules():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_supervisors_do_not_import_the_server():
    # They get target=server.run (Uvicorn's main.py shape): no way back to server.py.
    graph = import_graph()
    for name in graph:
        if name.startswith("palfrey.supervisors"):
            assert "palfrey.server" not in graph[name], name
            assert "palfrey.main" not in graph[name], name


# Run by one fresh interpreter that has imported nothing of palfrey: it forks a child per
# module (far cheaper than an interpreter's start), two at a time; the child imports that one
# module and exits. The slow imports outside palfrey (asyncio, click...) are made once, before
# the forks: they are not what is checked, and palfrey's own modules are always imported anew.
IMPORT_EACH_ALONE = """
import importlib, os, sys, traceback
for name in ("asyncio", "ssl", "logging.config", "click", "typer", "wsproto"):
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] == "palfrey"]
running, failed = {}, []
def reap():
    pid, status = os.wait()
    if os.waitstatus_to_exitcode(status) != 0:
        failed.append(running[pid])
    del running[pid]
for name in sys.argv[1:]:
    if len(running) >= 2:
        reap()
    pid = os.fork()
    if pid == 0:
        try:
            importlib.import_module(name)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    running[pid] = name
while running:
    reap()
print("FAILED:", *sorted(failed), file=sys.stderr)
sys.exit(1 if failed else 0)
"""


def test_each_module_imports_alone_in_a_fresh_interpreter():
    # palfrey.workers needs gunicorn, which [test] installs.
    modules = all_modules()
    assert len(modules) > 20, modules
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH_ALONE, *modules],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert proc.stderr.strip().endswith("FAILED:"), proc.stderr[-6000:]  # nothing failed
