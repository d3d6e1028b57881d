"""The shape of the house (docs: DESIGN "The shape of the house"): a lower room never imports a higher one.

Every module under src/qbflow is parsed with `ast`; every `import` counts wherever it is (top level, inside a
function, under `if TYPE_CHECKING:`), relative ones resolved. A room may import itself and the rooms its rule
lists, nothing else of qbflow:

    errors, redaction, settings   leaves: nothing of qbflow
    catalog     what QBO is, plain data: errors only
    store       persistence: catalog, errors, redaction, settings (never qbo, connector, engine, server, ...)
    qbo         talking to QBO: catalog, errors, redaction, settings, store (connections and tokens are stored)
    connector   triggers and actions: qbo and the leaves (not store: it is handed clients, it keeps nothing)
    engine      workflows, runner, schedulers, workers: connector, qbo, store, catalog, leaves; never server,
                sandbox or app
    sandbox     the local QBO: catalog only (it shares nothing else with the client side)
    server      HTTP API, webhooks, dashboard: engine and below; never sandbox or app
    app         process composition (`run`, `serve`, `up`, `worker`): every room but cli
    cli         the typer app: anything; nothing imports it

A new top-level module or package under src/qbflow fails `test_every_room_has_a_rule` until it gets a rule here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "qbflow"

LEAVES = {"errors", "redaction", "settings"}
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "redaction": set(),
    "settings": set(),
    "catalog": {"errors"},
    "store": {"catalog"} | LEAVES,
    "qbo": {"catalog", "store"} | LEAVES,
    "connector": {"catalog", "qbo"} | LEAVES,
    "engine": {"catalog", "connector", "qbo", "store"} | LEAVES,
    "sandbox": {"catalog"},
    "server": {"catalog", "connector", "engine", "qbo", "store"} | LEAVES,
    "app": {"catalog", "connector", "engine", "qbo", "sandbox", "server", "store"} | LEAVES,
    "cli": {"app", "catalog", "connector", "engine", "qbo", "sandbox", "server", "store"} | LEAVES,
}
# Not code: nothing to check.
NOT_ROOMS = {"__init__", "examples", "py.typed"}


@dataclass(frozen=True)
class Import:
    module: str  # the module that imports ("qbflow.engine.live")
    target: str  # what it imports ("qbflow.store.runs")
    line: int


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def qbflow_imports(source: str, module: str, *, is_package: bool = False) -> list[Import]:
    """Every import of qbflow in `source` (the text of `module`), wherever it is in the file."""
    found: list[Import] = []
    package = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # `from qbflow import store` and `from . import x` name modules: count each name as its own import.
            if target == "qbflow" or node.module is None:
                targets = [f"{target}.{alias.name}" for alias in node.names]
            else:
                targets = [target]
        found += [Import(module, target, node.lineno) for target in targets
                  if target == "qbflow" or target.startswith("qbflow.")]
    return found


def room_of(module: str) -> str:
    """"qbflow.engine.live" -> "engine"; "qbflow.cli" -> "cli"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules(src: Path = SRC) -> list[Path]:
    return sorted(src.rglob("*.py"))


def violations(src: Path = SRC) -> list[str]:
    found = []
    for path in modules(src):
        module = module_name(path, src)
        room = room_of(module)
        allowed = ALLOWED.get(room, set()) | {room}
        for imported in qbflow_imports(path.read_text(encoding="utf-8"), module,
                                       is_package=path.name == "__init__.py"):
            target = room_of(imported.target)
            if target and target not in allowed:
                found.append(f"{path.relative_to(src.parent)}:{imported.line}: {room}/ imports "
                             f"{imported.target} ({target}/ is not among {sorted(allowed - {room}) or 'nothing'})")
    return found


def test_no_room_imports_a_room_above_it() -> None:
    found = violations()
    assert not found, "imports that break the shape of the house:\n" + "\n".join(found)


def test_every_room_has_a_rule() -> None:
    rooms = {path.stem for path in SRC.iterdir()
             if (path.is_dir() and (path / "__init__.py").exists()) or path.suffix == ".py"}
    assert rooms - NOT_ROOMS - ALLOWED.keys() == set(), "a new room: give it a rule in ALLOWED"
    assert ALLOWED.keys() - rooms == set(), "a rule for a room that no longer exists"


def test_nothing_imports_the_cli() -> None:
    importers = [f"{path.relative_to(SRC.parent)}" for path in modules() if path.name != "cli.py"
                 for imported in qbflow_imports(path.read_text(encoding="utf-8"), module_name(path),
                                                is_package=path.name == "__init__.py")
                 if room_of(imported.target) == "cli"]
    assert importers == []


@pytest.mark.parametrize(("source", "expected"), [
    ("from qbflow.server.serving import bind", ["qbflow.server.serving"]),
    ("import qbflow.sandbox.app as box", ["qbflow.sandbox.app"]),
    ("from qbflow import server, errors", ["qbflow.server", "qbflow.errors"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from qbflow.app.run import EngineParts",
     ["qbflow.app.run"]),
    ("def later():\n    from qbflow.sandbox import app\n", ["qbflow.sandbox"]),
    ("from ..server import api", ["qbflow.server"]),
    ("from . import scheduler", ["qbflow.engine.scheduler"]),
    ("from .runner import Runner", ["qbflow.engine.runner"]),
    ("import httpx\nfrom rich.table import Table", []),
])
def test_every_kind_of_import_is_seen(source: str, expected: list[str]) -> None:
    """The checker above sees imports wherever they hide (else it would pass whatever the code does)."""
    assert [found.target for found in qbflow_imports(source, "qbflow.engine.live")] == expected


def test_a_lower_room_importing_a_higher_one_is_caught(tmp_path: Path) -> None:
    src = tmp_path / "qbflow"
    (src / "engine").mkdir(parents=True)
    (src / "engine" / "sneaky.py").write_text("def f():\n    from qbflow.server.app import create_app\n",
                                              encoding="utf-8")
    (src / "engine" / "fine.py").write_text("from qbflow.store.runs import RunStore\n", encoding="utf-8")
    assert violations(src) == ["qbflow/engine/sneaky.py:2: engine/ imports qbflow.server.app (server/ is not among "
                               "['catalog', 'connector', 'errors', 'qbo', 'redaction', 'settings', 'store'])"]
