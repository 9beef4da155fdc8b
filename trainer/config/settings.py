"""Settings by name ("train.learning_rate"): what the schema says of each, and profile tables and `--set` values
turned into a checked Config (built-in defaults ← profile TOML ← --set / explicit flags)."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass
from typing import Any, Literal

from trainer.config.environment import cache_dir
from trainer.config.schema import Config
from trainer.errors import UserError


@dataclass(frozen=True)
class Setting:
    """One settable key as the schema declares it."""

    key: str  # "train.learning_rate", or a top-level "engine"
    kind: Any  # bool, int, float, str, or tuple[str, ...]
    default: Any
    help: str
    choices: tuple[str, ...] = ()  # a Literal's values (of each item, for a tuple)
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    valid: typing.Callable[[Any], bool] | None = None
    hint: str = ""

    @property
    def type_text(self) -> str:
        """The value's type as the settings listing shows it: `sft|dpo|orpo`, `int >= 1`, `list of ...`."""
        if self.kind is tuple or typing.get_origin(self.kind) is tuple:
            return "list of " + ("|".join(self.choices) if self.choices else "str")
        text = "|".join(self.choices) if self.choices else self.kind.__name__
        bounds = [f">= {self.at_least:g}" if self.at_least is not None else "",
                  f"> {self.above:g}" if self.above is not None else "",
                  f"< {self.below:g}" if self.below is not None else ""]
        return " ".join([text, ", ".join(b for b in bounds if b)]).strip()

    @property
    def default_text(self) -> str:
        if isinstance(self.default, tuple):
            return ",".join(self.default) or "(none)"
        if isinstance(self.default, bool):
            return "true" if self.default else "false"
        return str(self.default) if self.default != "" else "(empty)"


def _literal(kind: Any) -> tuple[Any, tuple[str, ...]]:
    """(the Python type a value has, the Literal's values) for `kind`, a Literal, a tuple of Literals, or plain."""
    if typing.get_origin(kind) is Literal:
        return str, typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        item = typing.get_args(kind)[0]
        return tuple, typing.get_args(item) if typing.get_origin(item) is Literal else ()
    return kind, ()


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


def _setting(key: str, f: dataclasses.Field, kind: Any) -> Setting:
    python_type, choices = _literal(kind)
    meta = f.metadata
    return Setting(key, tuple[str, ...] if python_type is tuple else python_type, f.default, meta.get("help", ""),
                   choices, meta.get("at_least"), meta.get("above"), meta.get("below"), meta.get("valid"),
                   meta.get("hint", ""))


def _schema() -> dict[str, Setting]:
    """Every settable key ("train.learning_rate", "engine"), in the schema's order."""
    hints = typing.get_type_hints(Config)
    found: dict[str, Setting] = {}
    for f in dataclasses.fields(Config):
        section = hints[f.name]
        if dataclasses.is_dataclass(section):
            section_hints = typing.get_type_hints(section)
            for sub in dataclasses.fields(section):
                key = f"{f.name}.{sub.name}"
                found[key] = _setting(key, sub, section_hints[sub.name])
        elif f.name != "profile":  # chosen with --profile, not a setting
            found[f.name] = _setting(f.name, f, section)
    return found


SETTINGS = _schema()
KEYS = {key: s.kind for key, s in SETTINGS.items()}  # key -> its Python type
# The options that give a setting themselves (`--max-steps 60`), by their argparse name; they win over --set
FLAGS = {"model": "model.name", "dataset": "data.dataset", "format": "data.format", "max_steps": "train.max_steps",
         "epochs": "train.epochs", "run_dir": "run.run_dir", "method": "train.method"}


def choices(key: str) -> tuple[str, ...]:
    """The values a setting may take (its Literal's), for a front end's `choices=` or dropdown."""
    return SETTINGS[key].choices


def help_of(key: str) -> str:
    return SETTINGS[key].help


def full_key(key: str) -> str:
    """Accept `train.learning_rate` or the unambiguous leaf `learning_rate`."""
    if key in KEYS:
        return key
    matches = [k for k in KEYS if k.split(".")[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"--set {key}: ambiguous key", f"Say which one: {', '.join(matches)}.")
    near = near_keys(key)
    guess = f"Did you mean {' or '.join(near)}? " if near else ""
    raise UserError(f"unknown setting '{key}'", f"{guess}--set help lists every setting with its meaning.")


def near_keys(key: str) -> list[str]:
    """The settings a mistyped `key` may mean: names spelled alike (difflib), else names that contain it. A name is a
    setting's leaf ("learning_rate") or its whole key with "_" for "." ("lora_r")."""
    import difflib

    typed = key.lower().replace(".", "_")
    by_name: dict[str, str] = {}
    for full in sorted(KEYS):
        by_name.setdefault(full.split(".")[-1], full)
        by_name[full.replace(".", "_")] = full
    near = difflib.get_close_matches(typed, by_name, n=3, cutoff=0.75)
    near = near or [name for name in by_name if typed in name][:3]
    return list(dict.fromkeys(by_name[name] for name in near))


def coerce(key: str, value: Any, where: str) -> Any:
    """Turn a TOML or --set value into the field's type, or raise a UserError naming where it came from."""
    kind = KEYS[key]
    expected = getattr(kind, "__name__", str(kind))
    said = {"int": "a whole number", "float": "a number", "bool": "true or false"}.get(expected, f"a {expected}")
    bad = UserError(f"{where}: {key} = {value!r} is not a valid {expected}",
                    f"Give {said}, e.g. {example(key, where)}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise bad
    if kind is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                raise bad from None
        raise bad
    if kind is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if kind is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise bad
    if typing.get_origin(kind) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise UserError(f"{where}: {key} = {value!r} must be a list of strings", 'e.g. ["q_proj", "v_proj"]')
    raise TypeError(f"unhandled config type {kind!r} for {key}")  # a bug in the schema, not the user's


def example(key: str, where: str = "--set", value: Any = None) -> str:
    """The setting with `value` (else its default), for a message's fix: as `--set` takes it, as its own option
    (`where` "command line"), or as a profile file (`where` a .toml) writes it."""
    default = SETTINGS[key].default if value is None else value
    section, _, leaf = key.rpartition(".")
    if where.endswith(".toml"):
        return f"{leaf} = {toml_value(default)}" + (f" under [{section}]" if section else " at the top")
    if where == "command line" and (option := next((n for n, k in FLAGS.items() if k == key), None)):
        return f"--{option.replace('_', '-')} {default}"
    return f"--set {leaf}={','.join(default) if isinstance(default, tuple) else default}"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    return str(value)


def in_range(key: str, where: str = "--set") -> str:
    return f"Give a value in range, e.g. the built-in default: {example(key, where)}."


def check(key: str, value: Any, where: str) -> None:
    """The schema's rules for `key`: its choices, bounds and any other rule, or a UserError naming the value."""
    s = SETTINGS[key]
    if s.choices and isinstance(value, tuple):
        if not set(value) <= set(s.choices):
            leaf, unknown = key.split(".")[-1], ", ".join(v for v in value if v not in s.choices)
            raise UserError(f"{where}: {key} lists {unknown}", f"Valid: {', '.join(s.choices)} (a list may be given: "
                            f"--set {leaf}={','.join(s.choices[:2])}).")
    elif s.choices and value not in s.choices:
        raise UserError(f"{where}: {key} = {value!r} is not one of {', '.join(s.choices)}",
                        f"Use one of them, e.g. {example(key, where, s.choices[0])}.")
    if s.below is not None and not (s.above if s.above is not None else float("-inf")) < value < s.below:
        raise UserError(f"{where}: {key} = {value} is out of range", s.hint)
    if s.at_least is not None and value < s.at_least:
        bound = "must not be negative" if s.at_least == 0 else f"must be at least {s.at_least:g}"
        raise UserError(f"{where}: {key} {bound}, got {value}", in_range(key, where))
    if s.above is not None and value <= s.above:
        bound = "must be positive" if s.above == 0 else f"must be above {s.above:g}"
        raise UserError(f"{where}: {key} {bound}, got {value}", in_range(key, where))
    if s.valid is not None and not s.valid(value):
        raise UserError(f"{where}: {key} = {value}", s.hint)


def flatten_toml(table: dict[str, Any], where: str) -> dict[str, Any]:
    """A parsed profile TOML as {"section.field": value}; unknown sections or fields are errors."""
    sections = _sections()
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if name in sections:
            if not isinstance(value, dict):
                raise UserError(f"{where}: [{name}] must be a table",
                                f"Write [{name}] on a line of its own, its settings (key = value) below it.")
            for sub, sub_value in value.items():
                key = f"{name}.{sub}"
                if key not in KEYS:
                    valid = sorted(k.split(".")[1] for k in KEYS if k.startswith(name + "."))
                    raise UserError(f"{where}: unknown field '{sub}' in [{name}]", f"Valid fields: {', '.join(valid)}.")
                flat[key] = sub_value
        elif name in KEYS:
            flat[name] = value
        else:
            valid = sorted({k.split(".")[0] for k in KEYS})
            raise UserError(f"{where}: unknown field '{name}'",
                            f"Valid top-level fields and tables: {', '.join(valid)}.")
    return flat


def parse_set(items: list[str]) -> dict[str, Any]:
    """`--set key=value` pairs; values use TOML syntax where they parse as TOML, else are plain strings."""
    flat: dict[str, Any] = {}
    for item in items:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UserError(f"--set {item}: expected KEY=VALUE", "e.g. --set learning_rate=1e-4 (--set help lists "
                            "every setting)")
        key, raw = (s.strip() for s in item.split("=", 1))
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        flat[full_key(key)] = value
    return flat


def build(flat_layers: list[tuple[str, dict[str, Any]]], profile: str) -> Config:
    """Apply layers of {"section.field": value} in order over the defaults, checking each value."""
    values: dict[str, Any] = {}
    for where, flat in flat_layers:
        for key, raw in flat.items():
            value = coerce(key, raw, where)
            check(key, value, where)
            values[key] = value
    top: dict[str, Any] = {"profile": profile}
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if "." in key:
            section, name = key.split(".", 1)
            grouped.setdefault(section, {})[name] = value
        else:
            top[key] = value
    sections = {name: cls(**grouped.get(name, {})) for name, cls in _sections().items()}
    config = Config(**top, **sections)
    if not config.run.cache_dir:
        config = dataclasses.replace(config, run=dataclasses.replace(config.run, cache_dir=cache_dir()))
    return config


def from_toml(text: str, where: str, profile: str) -> Config:
    """A saved config.toml (or any profile table without [preference]) as its Config."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{where} is not valid TOML ({e})", "Fix the line named above.") from None
    return build([(where, flatten_toml(table, where))], profile)


def listing(width: int = 120) -> str:
    """Every setting, its type or choices, default and help, as plain text (`train --help`, `--set help`)."""
    import textwrap

    rows = [(s.key, s.type_text, s.default_text, s.help) for s in SETTINGS.values()]
    key_w = max(len(r[0]) for r in rows)
    lines = ["Settings (--set KEY=VALUE, or in a profile's TOML; a leaf name alone works where unambiguous):"]
    for key, kind, default, text in rows:
        head = f"  {key:<{key_w}}  {kind}, default {default}"
        lines.append(head)
        lines += textwrap.wrap(text, width=max(60, width), initial_indent=" " * (key_w + 4),
                               subsequent_indent=" " * (key_w + 4))
    return "\n".join(lines)
