"""The package's shape: no import circle among trainer's modules, packages in layers that import only downwards, and
settings resolved by the CLI layer alone."""

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


# trainer's packages (and top-level modules) from the top down, as the imports run today. A package may import only
# packages of the layers below its own; the packages of one layer are peers that never import each other, so no two
# packages can form a circle. A new package goes into the layer its imports put it in; an arrow up means the code (or
# this list, with a reason) must change.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__main__",),  # python -m trainer
    ("cli",),  # parses a command line, resolves the settings, calls one command or stage
    ("doctor", "ui"),  # doctor checks export's Hub login and train's trackers; the Gradio UI chats via serve
    ("eval",),  # a run's tuned model against its base on its held-out rows: through serve's chat and the method's data
    ("serve", "bench", "export", "commands"),  # chat and HTTP, the benchmark, merged and GGUF copies; what the CLI
    # and the UI both need of a command (a run's path, a training's command line, the one-training rule, errors)
    ("train",),  # the recipe (set up, fit, finish) and its methods (train/methods/), over data, engines and runs
    ("engines",),  # load the model for training (transformers, Unsloth) into a run's folder
    ("weights", "distributed", "profiles"),  # model files and tokenizers; a job's processes; profile files and cards
    ("fit",),  # settings fitted to the card and the model: the model's shape, its memory, the time an epoch takes
    ("runs",),  # a run's folder: layout, status, metrics, checkpoints' validity, speed; knows nothing of training
    ("data",),  # datasets: sources, formats, rendering with the trained-token mask, the generated benchmark data
    ("config",),  # the Config tree and its settings
    ("errors", "console", "system"),  # leaves: UserError, the one console, facts of this machine
)


def package_of(module: str) -> str:
    """`trainer.runs.speed` -> `runs`; a top-level module is its own package (`trainer.cli` -> `cli`)."""
    return module.split(".")[1]


def arrows_against(edges: dict[str, set[str]], layers: tuple[tuple[str, ...], ...]) -> list[str]:
    """One line for each import that points up or sideways in `layers`, naming the importing and the imported module,
    and one for each package that is in no layer."""
    level = {package: i for i, layer in enumerate(layers) for package in layer}
    found = []
    for name in sorted(edges):
        if name == "trainer":
            continue
        source = package_of(name)
        if source not in level:
            found.append(f"{name}: package '{source}' is in no layer of LAYERS; add it below what imports it")
            continue
        for target in sorted(edges[name]):
            into = package_of(target)
            if into == source or into not in level or level[into] > level[source]:
                continue
            where = "above" if level[into] < level[source] else "beside"
            found.append(f"{name} imports {target}: '{source}' may import only the layers below it, and '{into}' sits "
                         f"{where} it in LAYERS")
    return found


def test_the_layer_check_names_an_arrow_up_and_one_sideways():
    edges = {"trainer.runs.speed": {"trainer.engines.attention", "trainer.config"},
             "trainer.weights": {"trainer.profiles"}, "trainer.engines.attention": {"trainer.config"},
             "trainer.config": set(), "trainer.profiles": set(), "trainer.novel": set()}
    assert arrows_against(edges, LAYERS) == [
        "trainer.novel: package 'novel' is in no layer of LAYERS; add it below what imports it",
        "trainer.runs.speed imports trainer.engines.attention: 'runs' may import only the layers below it, and "
        "'engines' sits above it in LAYERS",
        "trainer.weights imports trainer.profiles: 'weights' may import only the layers below it, and 'profiles' "
        "sits beside it in LAYERS",
    ]


def test_packages_import_only_the_layers_below_them():
    """runs/ sits below train/ and engines/, data/ below weights/: the import lines, in functions too, point down."""
    problems = arrows_against(graph(), LAYERS)
    assert not problems, "imports against LAYERS:\n" + "\n".join(problems)


def test_every_package_is_in_one_layer():
    named = [package for layer in LAYERS for package in layer]
    assert len(named) == len(set(named))
    assert {package_of(name) for name in modules() if name != "trainer"} <= set(named)


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
