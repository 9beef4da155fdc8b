"""The training methods' seam (trainer/train/methods/): one registry whose names are config's train.method choices,
every method with the whole Method protocol, and no stage that branches on a method's name."""

from __future__ import annotations

import ast

import pytest

from tests.helpers import ROOT
from trainer.config.settings import choices
from trainer.profiles import resolve
from trainer.train import methods
from trainer.train.methods.method import Method

MEMBERS = [name for name, value in vars(Method).items() if not name.startswith("_") and callable(value)]
ATTRIBUTES = list(Method.__annotations__)


def test_the_registry_names_the_methods_config_accepts():
    assert list(methods.METHODS) == list(choices("train.method"))
    for name, method in methods.METHODS.items():
        assert method.name == name
        assert methods.of(resolve("cpu", [f"method={name}"])[0]) is method


@pytest.mark.parametrize("name", list(methods.METHODS))
def test_every_method_implements_the_whole_protocol(name):
    method = methods.METHODS[name]
    assert set(MEMBERS) == {"load", "build", "describe", "trainer_args", "trainer_class", "preview"}
    assert all(callable(getattr(method, member, None)) for member in MEMBERS)
    assert set(ATTRIBUTES) == {"name", "samples", "from_run_note", "metrics"}
    assert all(isinstance(getattr(method, attribute), str | dict) for attribute in ATTRIBUTES)


def method_branches(source: str) -> list[str]:
    """Comparisons of a `.method` (or `method`) with a string or a tuple of strings: `if config.train.method == ...`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            names = [ast.unparse(side) for side in sides]
            if any(n == "method" or n.endswith(".method") for n in names) and any(
                    isinstance(side, ast.Constant | ast.Tuple | ast.List | ast.Set) for side in sides):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_stages_never_branch_on_the_method():
    """What differs between SFT, DPO and ORPO is the method's to say (methods.of(config)), never an if in a stage."""
    assert method_branches("if config.train.method != 'sft' and x: pass\nm = a if method in ('dpo',) else b") == [
        "line 1: config.train.method != 'sft'", "line 2: method in ('dpo',)"]
    stages = [ROOT / "trainer" / "train", ROOT / "trainer" / "data", ROOT / "trainer" / "engines"]
    found = {str(path.relative_to(ROOT)): method_branches(path.read_text(encoding="utf-8"))
             for stage in stages for path in sorted(stage.rglob("*.py"))}
    assert {path: hits for path, hits in found.items() if hits} == {}
