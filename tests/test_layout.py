"""The package's architecture, checked: layers, no circles, rooms of bounded size.

Every import between the package's rooms points down this list (or stays in
its own layer without a circle):

    cli, __main__, api                 the faces: parse (or take Python arguments), call the library, render
    forget, attacks, diagnostics,      workflows a command runs
      marking
    methods                            unlearning method plugins
    influence, training                the influence engine; the one training loop
    models                             architectures, checkpoints, predictors
    data                               manifests, ID files, tensors
    ops                                atomic files, ledger, locks, queue, digests
    errors, options, plugins, root     what everything may use

Imports inside ``if TYPE_CHECKING:`` are annotations only and do not count.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unlearn_cli"

LAYERS = [
    {"cli", "__main__", "api"},
    {"forget", "attacks", "diagnostics", "marking"},
    {"methods"},
    {"influence", "training"},
    {"models"},
    {"data"},
    {"ops"},
    {"errors", "options", "plugins", ""},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}
MAX_MODULE_LINES = 350
MAX_FUNCTION_BODY = 80


def _room(module: str) -> str:
    """'unlearn_cli.influence.solvers.cg' -> 'influence'; the package root -> ''."""
    parts = module.split(".")[1:]
    return parts[0] if parts else ""


def _module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Every unlearn_cli module this module imports, at any depth, annotations-only blocks aside."""
    found: set[str] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "unlearn_cli")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = module.split(".") if is_package else module.split(".")[:-1]
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "unlearn_cli":
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # 'from pkg import module'
        stack.extend(ast.iter_child_nodes(node))
    return found


def import_graph(root: Path) -> dict[str, set[str]]:
    """room -> rooms it imports, for the package at ``root``."""
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(), str(path))
        targets = {_room(t) for t in _imports(tree, module, path.name == "__init__.py")}
        graph.setdefault(_room(module), set()).update(t for t in targets if t in RANK)
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """Upward imports, rooms the contract does not know, and circles between rooms."""
    found = [f"{a} is in no layer" for a in graph if a not in RANK]
    found += [f"{a} (layer {RANK[a]}) imports {b} (layer {RANK[b]}) above it"
              for a, targets in graph.items() if a in RANK for b in sorted(targets) if RANK[b] < RANK[a]]
    state: dict[str, int] = {}

    def visit(room: str, path: list[str]) -> None:
        state[room] = 1
        for nxt in sorted(graph.get(room, ())):
            if nxt == room:
                continue
            if state.get(nxt) == 1:
                found.append("circle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[room] = 2

    for room in sorted(graph):
        if room not in state:
            visit(room, [room])
    return found


def test_every_import_points_down_and_no_rooms_form_a_circle() -> None:
    assert violations(import_graph(PACKAGE)) == []


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    copy = tmp_path / "unlearn_cli"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    victim = copy / "models" / "mlp.py"
    victim.write_text(victim.read_text() + "\n\ndef _late():\n    from unlearn_cli.cli.app import app\n    return app\n")
    found = violations(import_graph(copy))
    print("\n".join(found))
    assert found[0] == "models (layer 4) imports cli (layer 0) above it"
    assert found[1].startswith("circle: ") and found[1].endswith("models -> cli")


def test_the_contract_catches_a_circle_inside_a_layer() -> None:
    graph = {"influence": {"training"}, "training": {"influence"}}
    assert violations(graph) == ["circle: influence -> training -> influence"]


def _python_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "cli" not in p.relative_to(root).parts[:1])


@pytest.mark.parametrize("path", _python_files(PACKAGE), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_rooms_stay_small(path: Path) -> None:
    """No module outside cli/ over 350 lines; no function body over 80 (signature and docstring aside)."""
    text = path.read_text()
    long = []
    if len(text.splitlines()) > MAX_MODULE_LINES:
        long.append(f"module: {len(text.splitlines())} lines")
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
                body = body[1:] or body
            lines = node.end_lineno - body[0].lineno + 1
            if lines > MAX_FUNCTION_BODY:
                long.append(f"{node.name}: {lines} lines")
    assert long == []
