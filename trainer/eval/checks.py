"""The user's own checks on answers, from a TOML file: a fine-tune for SQL, JSON or one format scored on its task.

    [[check]]
    name = "valid JSON"
    kind = "json"                       # the answer parses as JSON
    [[check]]
    kind = "regex"                      # the answer matches (re.search)
    pattern = "^SELECT .* FROM"
    [[check]]
    kind = "contains"                   # the answer contains `text`; without it, the reference answer
    text = "Paris"
    [[check]]
    kind = "exact"                      # the answer equals the reference (whitespace at the ends aside)
    [[check]]
    kind = "python"                     # your function(answer, reference) -> bool, from a module on the path
    function = "my_checks:parses_as_sql"
"""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError

KINDS = ("exact", "contains", "regex", "json", "python")


@dataclass(frozen=True)
class Check:
    name: str
    test: Callable[[str, str], bool]  # (answer, reference) -> passed


def read(path: Path) -> list[Check]:
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"cannot read the checks file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML ({e})", "Fix the line named above.") from None
    entries = table.get("check")
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{path} has no [[check]] tables", f"Add one per check, with kind = one of {', '.join(KINDS)} "
                        "(trainer/eval/checks.py shows each).")
    return [check_of(entry, f"{path}, check {number}") for number, entry in enumerate(entries, 1)]


def check_of(entry: dict, where: str) -> Check:
    kind = entry.get("kind")
    name = str(entry.get("name") or kind)
    if kind == "exact":
        return Check(name, lambda answer, reference: answer.strip() == reference.strip())
    if kind == "contains":
        text = entry.get("text")
        return Check(name, lambda answer, reference: (text if text is not None else reference.strip()) in answer)
    if kind == "regex":
        try:
            pattern = re.compile(str(entry["pattern"]), re.DOTALL)
        except KeyError:
            raise UserError(f"{where}: kind = \"regex\" needs a pattern", 'Add pattern = "...".') from None
        except re.error as e:
            raise UserError(f"{where}: the pattern is not a regular expression ({e})") from None
        return Check(name, lambda answer, reference: pattern.search(answer) is not None)
    if kind == "json":
        return Check(name, lambda answer, reference: parses(answer))
    if kind == "python":
        return Check(name, function(str(entry.get("function", "")), where))
    raise UserError(f"{where}: kind = {kind!r} is not a check", f"Use one of {', '.join(KINDS)}.")


def parses(answer: str) -> bool:
    try:
        json.loads(answer)
    except ValueError:
        return False
    return True


def function(spec: str, where: str) -> Callable[[str, str], bool]:
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise UserError(f"{where}: function = {spec!r} is not module:function", 'Use function = "my_checks:is_sql".')
    try:
        found = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as e:
        raise UserError(f"{where}: cannot import {spec} ({e})", "Put the module beside where you run the command, "
                        "or on PYTHONPATH.") from None
    return lambda answer, reference: bool(found(answer, reference))


def score(checks: list[Check], answers: list[str], references: list[str]) -> dict[str, float]:
    """The share of answers that pass each check."""
    return {check.name: round(sum(check.test(a, r) for a, r in zip(answers, references, strict=True))
                              / max(1, len(answers)), 3) for check in checks}
