"""Hardware profiles (profiles/*.toml): find, read and validate them, detect the GPU, and pick one for `auto`."""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.config import SETTINGS, Config, build, flatten_toml, full_key, parse_set
from trainer.errors import UserError
from trainer.fit.estimate import card_tflops
from trainer.system import Gpu, Unseen, detect_gpu, gpu_memory, unseen_gpu

if TYPE_CHECKING:
    from rich.table import Table



def profiles_dir() -> Path:
    """profiles/ of the checkout (run from it, or installed editable), else where a wheel puts them (pyproject.toml's
    data-files: <prefix>/share/trainer/profiles)."""
    checkout = Path(__file__).resolve().parent.parent / "profiles"
    return checkout if (checkout / "cpu.toml").is_file() else Path(sys.prefix) / "share" / "trainer" / "profiles"


PROFILES_DIR = profiles_dir()
VRAM_SLACK = 0.9  # cards report a little less than their label (an "8 GB" RTX 3070 shows 7.8 GiB)
PREFERENCE = "preference"  # a profile's table of settings for train.method dpo, orpo and kto
KEEP_WHOLE = ("name", "model")  # `trainer profiles`: never wrapped
COPIED = ("model.name", "model.from_run", "data.dataset", "run.run_dir", "run.runs_root", "run.cache_dir")  # whole
DROP_ORDER = ("card", "seq len", "batch x accum", "dtype")  # dropped in this order when the terminal is too narrow


@dataclass(frozen=True)
class Choice:
    name: str
    path: Path
    reason: str
    overrides: dict[str, Any] = field(default_factory=dict)  # adjustments auto-detection makes for this GPU
    detected: bool = False  # auto on a card no profile is written for: its settings are fitted to the card found


def resolve(
    profile: str = "auto", settings: list[str] | None = None, flags: dict[str, Any] | None = None, fit: bool = True
) -> tuple[Config, str]:
    """The run's Config and a sentence saying which profile was chosen and why.

    `flags` are the explicit CLI options, already keyed by setting ("train.max_steps"); they win over --set.
    """
    choice = locate(profile)
    own, preference = read_with_preference(choice.path)
    user = [("--set", parse_set(settings or [])),
            ("command line", {k: v for k, v in (flags or {}).items() if v is not None})]
    layers = [(str(choice.path), own), ("auto-detection", choice.overrides)]
    config = build([*layers, *user], choice.name)
    if config.train.method != "sft" and preference:  # the profile's [preference] settings, under what was given
        layers.insert(1, (f"{choice.path} [{PREFERENCE}]", in_answers(preference, own, config.train.method)))
        config = build([*layers, *user], choice.name)
    if not config.hardware.vram_gb or not fit:
        return config, choice.reason
    given = {key for _, layer in user for key in layer}
    fitted, said = fit_settings(config, own, choice, given)
    if fitted:
        config = build([*layers, (f"fitted for {config.model.name}", fitted), *user], choice.name)
    return config, f"{choice.reason}; {said}"


def fit_settings(config: Config, own: dict[str, Any], choice: Choice, given: set[str]) -> tuple[dict[str, Any], str]:
    """Settings fitted to the card's budget for the model (trainer/fit/), and one line on them. A profile's own tuned
    settings stay for the model (or a model of its shape) and card it was written for, checked against the budget;
    the user's always win."""
    from trainer.fit import choose
    from trainer.fit.budget import budget
    from trainer.fit.shape import shape_of
    from trainer.fit.tell import expected_engine, settings_of

    here = gpu_memory()
    room = budget(config, *(here or (None, None)))
    shape = shape_of(config.model.name)
    current = settings_of(config, expected_engine(config, here is not None))
    # the profile's model, or a copy of it (a local folder of the same shape: the GPU tests' random-init 1B and 3B)
    tuned = ("train.micro_batch_size" in own and not choice.detected
             and (config.model.name == own.get("model.name") or shape == shape_of(own["model.name"])))
    warning = choose.check(shape, room.gb, current, given)
    if tuned and (warning is None or given & set(choose.KEYS)):  # the user's settings are kept even where they do not
        peak = choose.predict(shape, current)
        said = f"budget {room.why}; the profile's settings: about {peak:.1f} GB on worst-case rows"
        return {}, said + (f" [yellow]({warning})[/]" if warning else "")
    try:  # another model, another card, or less free than the profile needs (other programs hold the rest)
        fit = choose.choose(shape, room.gb, current, given, config.model.name, pairs=config.train.method != "sft")
    except UserError as e:
        raise UserError(e.message, e.hint + bigger_cards(shape, config, current, given)) from None
    changed = {key: value for key, value in fit.settings.items() if current.get(key) != value}
    warning = choose.check(shape, room.gb, fit.settings, given) if given & set(choose.KEYS) else None
    return changed, f"budget {room.why}; {fit.why}" + (f" [yellow]({warning})[/]" if warning else "")


def in_answers(preference: dict[str, Any], own: dict[str, Any], method: str) -> dict[str, Any]:
    """A [preference] table's settings (over the profile's `own`) for `method`: where the method trains answers (KTO),
    its pairs a pass as twice as many answers, in half the accumulation (fit.choose.ANSWERS_PER_PAIR says why)."""
    from trainer.fit.choose import ANSWERS_PER_PAIR

    scale = ANSWERS_PER_PAIR.get(method, 1)
    if scale == 1 or "train.micro_batch_size" not in preference:
        return preference
    accum = preference.get("train.grad_accum_steps", own.get("train.grad_accum_steps", 1))
    return {**preference, "train.micro_batch_size": preference["train.micro_batch_size"] * scale,
            "train.grad_accum_steps": max(1, accum // scale)}


def names() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.toml"))


def read(path: Path) -> dict[str, Any]:
    """A profile file as {"section.field": value}, with unknown fields rejected (its [preference] table aside)."""
    return read_with_preference(path)[0]


def read_with_preference(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile file as {"section.field": value}, and its [preference] table the same way: the settings (named as
    for --set) for train.method dpo and orpo (a pair is two sequences, scored again by the reference for DPO)."""
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path} is not valid TOML ({e})", "Fix the line named above.") from None
    except OSError as e:
        raise UserError(f"cannot read profile {path}: {e.strerror}") from None
    preference = table.pop(PREFERENCE, {})
    if not isinstance(preference, dict) or any(isinstance(v, dict) for v in preference.values()):
        raise UserError(f"{path}: [{PREFERENCE}] must be a table of settings (micro_batch_size = 1, ...)")
    own = flatten_toml(table, str(path))
    try:
        return own, {full_key(key): value for key, value in preference.items()}
    except UserError as e:
        raise UserError(f"{path} [{PREFERENCE}]: {e.message}", e.hint) from None


# Cards beyond the profiles' that users rent (Paperspace Gradient), by memory: named where a model fits none of ours.
BIG_CARDS = {48.0: "a 48 GB card (an RTX A6000)", 80.0: "an 80 GB card (an A100 80GB)"}


def bigger_cards(shape: Any, config: Config, current: dict[str, Any], given: set[str]) -> str:
    """" It fits the 16 GB cards' profiles: quadro-rtx5000, t4, a4000." (by their labels), or where none of the
    profiles' cards has room, that auto fits a bigger card."""
    from trainer.fit import choose
    from trainer.fit.budget import LABEL_RESERVE_GB

    def fits(vram: float) -> bool:
        try:
            choose.choose(shape, vram - LABEL_RESERVE_GB, current, given, config.model.name,
                          pairs=config.train.method != "sft")
        except UserError:
            return False
        return True

    fitting = {}
    for name in names():
        vram = hardware(name)["vram_gb"]
        if vram > config.hardware.vram_gb and fits(vram):
            fitting.setdefault(vram, []).append(name)
    if not fitting:
        largest = max(hardware(name)["vram_gb"] for name in names())
        bigger = next((card for vram, card in BIG_CARDS.items() if vram > largest and fits(vram)), "")
        return (f" None of the profiles' cards (up to {largest:g} GB) has room for it; on {bigger}, --profile auto "
                "fits it to the card's memory." if bigger else "")
    smallest = min(fitting)
    return f" It fits the {smallest:g} GB cards' profiles: {', '.join(fitting[smallest])}."


def locate(profile: str) -> Choice:
    """A profile by name, by path to a .toml file, or `auto` (detect the GPU and pick)."""
    if profile == "auto":
        return detected()[1]
    path = Path(profile)
    if path.suffix == ".toml":
        if not path.is_file():
            raise UserError(f"profile file {path} does not exist")
        return Choice(path.stem, path, f"profile file {path}")
    if profile not in names():
        raise UserError(
            f"unknown profile '{profile}'",
            f"Valid profiles: auto, {', '.join(names())} (or a path to your own .toml file).",
        )
    return Choice(profile, PROFILES_DIR / f"{profile}.toml", "asked for with --profile")


def hardware(name: str) -> dict[str, Any]:
    data = read(PROFILES_DIR / f"{name}.toml")
    return {
        "gpu_names": data.get("hardware.gpu_names", []),
        "vram_gb": float(data.get("hardware.vram_gb", 0)),
        "bf16": float(data.get("hardware.compute_capability", "0") or 0) >= 8.0,
        "dtype": data.get("model.dtype", "auto"),
    }


def detected() -> tuple[Gpu | None, Choice]:
    """This machine's GPU and auto's choice for it (where torch sees none, why, if the driver lists one)."""
    gpu = detect_gpu()
    return gpu, pick(gpu, None if gpu else unseen_gpu())


def pick(gpu: Gpu | None, unseen: Unseen | None = None) -> Choice:
    """The profile for this machine: the CPU demo without a GPU (and why, where the driver lists a card torch does not
    see); else the card by name; else the closest fit."""
    if gpu is None:
        return Choice("cpu", PROFILES_DIR / "cpu.toml", "no CUDA GPU detected: running the offline CPU demo" + (
            f" [yellow]({unseen.why}. {unseen.fix})[/]" if unseen else ""))
    cards = {n: hw for n in names() if (hw := hardware(n))["vram_gb"] > 0}
    for name, hw in cards.items():
        if any(pattern.lower() in gpu.name.lower() for pattern in hw["gpu_names"]):
            return Choice(name, PROFILES_DIR / f"{name}.toml", f"detected {gpu}: a card this profile is written for")
    fitting = [n for n, hw in cards.items() if hw["vram_gb"] * VRAM_SLACK <= gpu.vram_gb]
    # Most memory first, then a profile whose dtype the card runs natively: its model (a card of 16 GB or more starts
    # with 3B, 24 GB with 8B); its settings are then fitted to this card (trainer/fit/).
    key = lambda n: (cards[n]["vram_gb"], cards[n]["bf16"] == gpu.has_bf16)  # noqa: E731
    if fitting:
        name = max(fitting, key=key)
        reason = (f"detected {gpu}, a card no profile is written for: {name}'s model, with settings fitted to this "
                  "card")
    else:
        name = min(cards, key=lambda n: (cards[n]["vram_gb"], cards[n]["bf16"] != gpu.has_bf16))
        reason = f"detected {gpu}, smaller than every profile: {name}'s model, with settings fitted to this card"
    overrides: dict[str, Any] = {
        "description": f"{gpu.name} (detected, {gpu.vram_gb:.1f} GB): settings fitted to it",
        "hardware.gpu_names": [gpu.name], "hardware.vram_gb": round(gpu.vram_gb, 1),
        "hardware.compute_capability": gpu.compute_capability,
        "hardware.tflops": card_tflops(gpu.compute_capability, gpu.sms) if gpu.sms else 0.0}
    if gpu.has_bf16 and cards[name]["dtype"] == "float16":
        overrides["model.dtype"] = "bfloat16"
        reason += "; bfloat16 instead of float16 since this card supports it"
    if not gpu.has_bf16 and cards[name]["dtype"] == "bfloat16":
        overrides["model.dtype"] = "float16"
        reason += "; float16 instead of bfloat16 since this card has no bf16"
    return Choice(name, PROFILES_DIR / f"{name}.toml", reason, overrides, detected=True)


def profile_table(rows: list[dict[str, str]], width: int) -> Table:
    """Names and model ids never wrap (they are copied from here); in a narrow terminal the other columns go, the
    least needed first."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    columns = list(rows[0])
    while True:
        table = Table(title="Profiles", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for column in columns:
            table.add_column(column, no_wrap=column in KEEP_WHOLE)
        for row in rows:
            table.add_row(*(row[c] for c in columns))
        droppable = [c for c in DROP_ORDER if c in columns]
        if not droppable or Console(width=10_000).measure(table).maximum <= width:  # unwrapped width
            return table
        columns.remove(droppable[0])


def settings_table(config: Config) -> Table:
    """Every setting on a line of its own: its value and, from the schema, its help and choices or bounds. Values
    stay whole (model ids and paths are copied from here); the description and the help wrap."""
    from rich.table import Table

    values = config.to_dict()
    rows = []
    for key, setting in SETTINGS.items():
        section, _, name = key.rpartition(".")
        rows.append((key, str(values[section][name] if section else values[key]),
                     f"{setting.help} ({setting.type_text})"))
    table = Table(title="Resolved configuration", show_header=False, box=None, pad_edge=False)
    table.add_column(no_wrap=True)
    whole = max([24, *(len(value) for key, value, _ in rows if key in COPIED)])
    table.add_column(overflow="fold", width=whole)
    table.add_column(style="dim", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def show_one(config: Config, reason: str) -> None:
    """`trainer profiles NAME`: one profile, fully resolved (by the CLI)."""
    from trainer.console import console

    console.print(f"Profile [bold]{config.profile}[/]: {reason}")
    console.print(settings_table(config))


def show_all(configs: dict[str, Config]) -> None:
    """`trainer profiles`: every profile (resolved by the CLI) and the auto choice for this machine."""
    from trainer.console import console

    gpu, choice = detected()
    rows = []
    for profile, config in configs.items():
        hw, model, train = config.hardware, config.model, config.train
        card = f"{hw.vram_gb:.0f} GB sm_{hw.compute_capability.replace('.', '')}" if hw.vram_gb else "CPU"
        rows.append({"name": profile, "model": model.name, "card": card, "dtype": model.dtype,
                     "seq len": str(model.max_seq_length),
                     "batch x accum": f"{train.micro_batch_size} x {train.grad_accum_steps}"})
    console.print(profile_table(rows, console.width))
    console.print(f"Detected: {gpu or 'no CUDA GPU'}. auto → [bold]{choice.name}[/] ({choice.reason})")
