"""The package's shape: no import circle among trainer's modules, and settings resolved by the CLI layer alone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "trainer"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """The trainer modules `path` imports, at module level and inside functions (not under TYPE_CHECKING, which never
    runs): `import a.b`, `from a import b` (b a module, else a), and relative imports, resolved to modules."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and is_type_checking(node):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                candidate = f"{source}.{alias.name}"
                found.add(candidate if candidate in known else source)
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), each a circle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_module_level_in_function_and_relative_imports():
    edges = graph()
    assert "trainer.config" in edges["trainer.profiles"]  # module level
    assert "trainer.serve.chat" in edges["trainer.cli"]  # in a function: `from trainer.serve import chat`
    assert "trainer.runs.run_dir" in edges["trainer.runs"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_circle_among_trainers_modules():
    assert cycles(graph()) == []


def test_system_is_a_leaf():
    assert graph()["trainer.system"] == set()


def test_stages_never_import_a_command():
    """Training, export, runs and data never import a command (cli, doctor, serve, bench)."""
    commands = ("trainer.cli", "trainer.commands", "trainer.doctor", "trainer.serve", "trainer.ui", "trainer.bench")
    for name, targets in graph().items():
        if name.startswith(("trainer.train", "trainer.export", "trainer.runs", "trainer.data", "trainer.engines")):
            assert not {t for t in targets if t.startswith(commands)}, name


def test_settings_are_resolved_by_the_cli_layer_only():
    """resolve() (profile + --set + flags into a Config) is called by the front ends alone, trainer/cli.py and the
    UI's Train tab (which shows a profile's defaults; the runs it starts are resolved by the CLI); stages take the
    Config."""
    callers = set()
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                owner = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
                if called == "resolve" and owner in ("", "profiles"):
                    callers.add(name)
    assert callers == {"trainer.cli", "trainer.ui.train_tab"}
