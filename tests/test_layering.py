"""DESIGN.md's layering, checked by reading every import of every layer.

Dependencies point inward: serve/ (the composition root) and connectors/ use actors/ and
engine/; actors/ use engine/ alone; persistence/ implements engine/'s protocols; engine/
imports none of them; no layer imports serve/. Imports inside functions count, and so do
``importlib.import_module("...")`` and ``__import__("...")`` with a literal name.

actors/ also do no I/O and never see Ray. The rule, so that it can be checked by reading:
an actor module imports no module that reaches outside its process (``_IO_MODULES``: Ray,
sockets, files and paths, subprocesses, databases, HTTP, MQTT, NATS), calls no ``open()``
or ``input()``, and uses none of asyncio's streams or subprocesses. ``asyncio`` itself
(gathering its own awaits) and ``time`` (reading a clock) are not I/O.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each layer may import of the project; serve/ may import every layer.
_FIRST_PARTY = frozenset({"engine", "actors", "persistence", "connectors", "serve", "loadtest", "tests"})
_ALLOWED = {
    "engine": frozenset({"engine"}),
    "actors": frozenset({"actors", "engine"}),
    "persistence": frozenset({"persistence", "engine"}),
    "connectors": frozenset({"connectors", "actors", "engine"}),
    "serve": frozenset({"serve", "connectors", "persistence", "actors", "engine"}),
}

_IO_MODULES = frozenset(
    {
        "ray",
        "socket",
        "ssl",
        "select",
        "selectors",
        "os",
        "io",
        "pathlib",
        "shutil",
        "tempfile",
        "glob",
        "subprocess",
        "multiprocessing",
        "sqlite3",
        "asyncpg",
        "psycopg",
        "psycopg2",
        "redis",
        "http",
        "urllib",
        "httpx",
        "requests",
        "aiohttp",
        "paho",
        "nats",
        "asyncio.streams",
        "asyncio.subprocess",
    }
)
_IO_CALLS = frozenset({"open", "input"})
_ASYNCIO_IO = frozenset(
    {
        "open_connection",
        "start_server",
        "open_unix_connection",
        "start_unix_server",
        "create_subprocess_exec",
        "create_subprocess_shell",
        "StreamReader",
        "StreamWriter",
    }
)


@dataclass(frozen=True)
class Import:
    path: Path
    line: int
    module: str


def _package(path: Path) -> str:
    """The package a module's relative imports start from (a package's ``__init__`` included)."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _imports(path: Path, tree: ast.Module | None = None) -> list[Import]:
    tree = tree or _parse(path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(path, node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = _package(path).split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append(Import(path, node.lineno, module))
            # ``from asyncio import open_connection`` and ``from ray import ...`` name the module anyway;
            # ``from x import y`` may also import the submodule x.y.
            found += [Import(path, node.lineno, f"{module}.{alias.name}") for alias in node.names]
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            found.append(Import(path, node.lineno, node.args[0].value))
    return found


def _files(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def _unique(imports: list[Import]) -> list[str]:
    """One line per import statement: ``from x import y`` also yields ``x.y``."""
    first: dict[tuple[Path, int], str] = {}
    for imp in imports:
        first.setdefault((imp.path, imp.line), f"{imp.path.relative_to(ROOT)}:{imp.line} imports {imp.module}")
    return list(first.values())


def _first_party(layer: str, allowed: frozenset[str]) -> list[str]:
    return _unique(
        [
            imp
            for path in _files(layer)
            for imp in _imports(path)
            if (top := imp.module.split(".")[0]) in _FIRST_PARTY and top not in allowed
        ]
    )


def _layer_violations(layer: str) -> list[str]:
    return _first_party(layer, _ALLOWED[layer])


def _is_io(module: str) -> bool:
    parts = module.split(".")
    return any(".".join(parts[:n]) in _IO_MODULES for n in range(1, len(parts) + 1)) or (
        parts[0] == "asyncio" and parts[-1] in _ASYNCIO_IO
    )


def _io_violations(path: Path, tree: ast.Module | None = None) -> list[str]:
    tree = tree or _parse(path)
    where = path.relative_to(ROOT)
    found = [f"{line} (I/O)" for line in _unique([imp for imp in _imports(path, tree) if _is_io(imp.module)])]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _IO_CALLS:
            found.append(f"{where}:{node.lineno} calls {node.func.id}()")
        if (
            isinstance(node, ast.Attribute)
            and node.attr in _ASYNCIO_IO
            and isinstance(node.value, ast.Name)
            and node.value.id == "asyncio"
        ):
            found.append(f"{where}:{node.lineno} uses asyncio.{node.attr}")
    return found


def test_every_layer_has_modules_to_check():
    for layer in _ALLOWED:
        assert _files(layer), f"{layer}/ has no Python files: has the layout moved?"


def test_engine_imports_no_other_layer():
    assert _layer_violations("engine") == []


def test_actors_import_engine_alone():
    assert _layer_violations("actors") == []


def test_actors_do_no_io_and_never_see_ray():
    assert [v for path in _files("actors") for v in _io_violations(path)] == []


def test_persistence_imports_engine_alone():
    assert _layer_violations("persistence") == []


def test_connectors_use_actors_and_engine_alone():
    assert _layer_violations("connectors") == []


def test_serve_imports_the_layers_and_none_imports_serve():
    assert _layer_violations("serve") == []
    others = frozenset(_FIRST_PARTY - {"serve"})
    assert [v for layer in ("engine", "actors", "persistence", "connectors") for v in _first_party(layer, others)] == []


def test_the_stores_clients_are_imported_in_persistence_alone():
    """SQLite, PostgreSQL and Redis are stores: their adapters live in persistence/, wired by serve/."""
    clients = ("sqlite3", "asyncpg", "psycopg", "psycopg2", "redis")
    found = [
        imp
        for layer in ("engine", "actors", "connectors", "serve")
        for path in _files(layer)
        for imp in _imports(path)
        if imp.module.split(".")[0] in clients
    ]
    assert _unique(found) == []


def test_the_checks_see_what_they_must():
    """Imports inside functions, relative and dynamic imports, open() and asyncio's streams are all seen."""
    probe = ROOT / "actors" / "probe.py"
    tree = ast.parse(
        "def f():\n"
        "    import ray\n"
        "    from ..serve import app\n"
        "    importlib.import_module('persistence.sqlite')\n"
        "    return open('x'), asyncio.open_connection('h', 1)\n"
    )
    assert {imp.module for imp in _imports(probe, tree)} >= {"ray", "serve", "serve.app", "persistence.sqlite"}
    assert len(_io_violations(probe, tree)) == 3  # ray, open(), asyncio.open_connection
    assert _is_io("ray.util") and _is_io("asyncio.streams") and _is_io("urllib.request")
    assert not _is_io("asyncio") and not _is_io("time") and not _is_io("osmium")
