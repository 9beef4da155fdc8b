"""The typed run configuration, resolved once: built-in defaults ← profile TOML ← --set / explicit flags."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.errors import UserError

LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
TRACKERS = ("tensorboard", "mlflow", "wandb")  # what `report_to` may list
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")  # torch's scaled-dot-product attention kernels
DATE_STRING = "26 Jul 2024"  # Meta's Llama 3 template's own date when it has no clock


@dataclass(frozen=True)
class HardwareConfig:
    """The card a profile was written for; `auto` matches a detected GPU against it."""

    gpu_names: tuple[str, ...] = ()  # substrings of the CUDA device name, e.g. "RTX 3070"
    vram_gb: float = 0.0
    compute_capability: str = ""  # "7.5" (Turing: fp16 only), "8.6" (Ampere: bf16)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "unsloth/Llama-3.2-1B-Instruct-bnb-4bit"  # Hub id or local folder
    dtype: str = "auto"  # bfloat16 | float16 | float32 | auto (bf16 where the GPU has it, else fp16; fp32 on CPU)
    load_in_4bit: bool = True
    max_seq_length: int = 2048
    # A finished run whose adapter this run trains further (--from RUN: SFT, then DPO); empty: a fresh adapter. Its
    # base model and LoRA shape are then the run's. DPO's reference is that adapter as it starts (the SFT model):
    # TRL's frozen copy of it, trainer/train/from_run.py.
    from_run: str = ""


@dataclass(frozen=True)
class LoraConfig:
    r: int = 16
    alpha: int = 16
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_TARGETS
    bias: str = "none"
    use_rslora: bool = False
    use_loftq: bool = False


@dataclass(frozen=True)
class TrainConfig:
    # sft: supervised on conversations | dpo, orpo: preference tuning on (prompt, chosen, rejected) pairs (TRL's
    # DPOTrainer, ORPOTrainer)
    method: str = "sft"
    beta: float = 0.1  # dpo: TRL's beta (how far from the reference model); orpo: TRL's beta (the odds ratio's weight)
    micro_batch_size: int = 2
    grad_accum_steps: int = 4
    learning_rate: float = 2e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 5
    weight_decay: float = 0.01
    optimizer: str = "adamw_8bit"
    seed: int = 3407
    max_steps: int = 60  # 0: train for `epochs` instead
    epochs: float = 1.0
    gradient_checkpointing: str = "unsloth"  # unsloth | on | off | auto (engines.policy.AUTO: per engine)
    eval_every_steps: int = 50  # 0: evaluate only at the end (eval rows x 1 pass against steps x rows x 3 passes)
    log_every_s: float = 2.0  # metrics at most this often (reading them waits for the GPU); 0: every step
    save_every_steps: int = 20
    keep_checkpoints: int = 2  # the newest N checkpoint-<step> folders are kept
    packing: bool = False  # TRL's best-fit packing of several conversations into each max_seq_length row
    padding_free: str = "auto"  # auto: the engine's default (Unsloth flattens each batch) | on | off
    group_by_length: bool = False  # batches of similar lengths: little padding, few distinct shapes
    pad_to_multiple_of: int = 0  # round each batch's length up (few shapes for cached attention plans); 0: no
    cudnn_attention: bool = True  # torch's cuDNN SDPA backend; it re-plans for every new shape (CPU cost)
    # A micro-batch of more tokens runs as several forward/backward passes over whole rows or packed conversations:
    # activation memory is bounded by this, not by the largest batch (what lets a card train without gradient
    # checkpointing). 0: off. Halved for the rest of the run when a step runs out of GPU memory.
    max_tokens_per_pass: int = 0
    # nll | chunked_nll (TRL's chunked LM head + loss: less memory, plain transformers) | auto (engines.policy.AUTO)
    loss_type: str = "nll"
    # on: the LM head and loss only where the next token is trained (unsloth engine only): the same loss, fewer FLOPs
    # (trainer/engines/trained_positions.py) | off | auto (engines.AUTO: on with unsloth, off on the fallback)
    trained_positions_only: str = "off"


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "mlabonne/FineTome-100k"  # Hub id, local file, or "sample" (bundled, offline)
    format: str = "auto"  # auto | sharegpt | openai | alpaca | text
    split: str = "train"
    eval_size: float = 0.02  # fraction of rows (< 1) or a row count (>= 1) held out for eval loss
    eval_max_examples: int = 64  # a fixed set: enough for the trend, cheap to check often (train prints its share)
    skip_invalid_rows: bool = False
    # Meta's Llama 3 template writes "Today Date: <date>" into every prompt; a fixed date (the template's own fallback)
    # keeps a run, its resume and its cached tokens the same on any day. Templates without a date ignore it.
    date_string: str = DATE_STRING
    control_tokens_as_text: bool = False  # text that spells a control token (<|eot_id|>) is encoded as plain text
    cache_tokens: bool = True  # keep a full epoch's tokenized rows in <cache_dir>/tokenized/ for the next start


@dataclass(frozen=True)
class RunConfig:
    run_dir: str = ""  # empty: <runs_root>/<run id>
    runs_root: str = "runs"
    cache_dir: str = ""  # converted local models; empty: $TRAINER_CACHE_DIR or ~/.cache/trainer
    vram_cap_gb: float = 0.0  # cap this process's GPU memory (emulate a smaller card, leave room); 0: no cap
    resume_force: bool = False  # let --resume continue with settings that change what is trained
    report_to: tuple[str, ...] = ()  # experiment trackers, through the Hugging Face integrations: TRACKERS
    # The attention kernels (SDPA_BACKENDS) torch may use here, as a card has them: `bench --emulate rtx2060s` runs
    # on a big GPU with Turing's (efficient, math). Empty: every one torch has on this GPU. A fact of the machine,
    # like vram_cap_gb, not of what is trained: train.cudnn_attention is the tuning choice.
    sdpa_backends: tuple[str, ...] = ()
    # Several processes (--gpus, torchrun): how long they wait for each other at start-up (the rendezvous of
    # several machines, everyone's model loaded) before the ones missing are named and the job stops.
    rank_timeout_s: float = 600.0


@dataclass(frozen=True)
class Config:
    profile: str = "auto"
    description: str = ""
    engine: str = "auto"  # auto | unsloth | transformers
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES: dict[str, tuple[str, ...]] = {
    "engine": ("auto", "unsloth", "transformers"),
    "train.method": ("sft", "dpo", "orpo"),
    "model.dtype": ("auto", "bfloat16", "float16", "float32"),
    "lora.bias": ("none", "all", "lora_only"),
    "train.lr_scheduler": ("linear", "cosine", "constant", "constant_with_warmup"),
    "train.optimizer": ("adamw_8bit", "adamw_torch", "paged_adamw_8bit", "adafactor"),
    "train.gradient_checkpointing": ("unsloth", "on", "off", "auto"),
    "train.padding_free": ("auto", "on", "off"),
    "train.loss_type": ("nll", "chunked_nll", "auto"),
    "train.trained_positions_only": ("on", "off", "auto"),
    "data.format": ("auto", "sharegpt", "openai", "alpaca", "text"),
}
AT_LEAST_ONE = {
    "model.max_seq_length", "lora.r", "lora.alpha", "train.micro_batch_size", "train.grad_accum_steps",
    "train.save_every_steps", "train.keep_checkpoints", "data.eval_max_examples",
}
NOT_NEGATIVE = {
    "train.max_steps", "train.warmup_steps", "train.pad_to_multiple_of", "train.eval_every_steps",
    "train.weight_decay", "lora.dropout", "run.vram_cap_gb", "train.log_every_s",
    "train.max_tokens_per_pass",
}
POSITIVE = {"run.rank_timeout_s", "train.beta"}


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


def _leaf_types() -> dict[str, Any]:
    """Every settable key ("train.learning_rate", "engine") with its type."""
    hints = typing.get_type_hints(Config)
    keys: dict[str, Any] = {}
    for f in dataclasses.fields(Config):
        section = hints[f.name]
        if dataclasses.is_dataclass(section):
            section_hints = typing.get_type_hints(section)
            for sub in dataclasses.fields(section):
                keys[f"{f.name}.{sub.name}"] = section_hints[sub.name]
        elif f.name != "profile":  # chosen with --profile, not a setting
            keys[f.name] = section
    return keys


KEYS = _leaf_types()


def full_key(key: str) -> str:
    """Accept `train.learning_rate` or the unambiguous leaf `learning_rate`."""
    if key in KEYS:
        return key
    matches = [k for k in KEYS if k.split(".")[-1] == key]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UserError(f"--set {key}: ambiguous key", f"Say which one: {', '.join(matches)}.")
    raise UserError(f"unknown setting '{key}'", f"Valid settings: {', '.join(sorted(KEYS))}.")


def coerce(key: str, value: Any, where: str) -> Any:
    """Turn a TOML or --set value into the field's type, or raise a UserError naming where it came from."""
    kind = KEYS[key]
    expected = getattr(kind, "__name__", str(kind))
    bad = UserError(f"{where}: {key} = {value!r} is not a valid {expected}", "")
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
    raise TypeError(f"unhandled config type {kind!r} for {key}")  # a bug in this file, not the user's


def check(key: str, value: Any, where: str) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        raise UserError(f"{where}: {key} = {value!r} is not one of {', '.join(CHOICES[key])}")
    if key in AT_LEAST_ONE and value < 1:
        raise UserError(f"{where}: {key} must be at least 1, got {value}")
    if key in NOT_NEGATIVE and value < 0:
        raise UserError(f"{where}: {key} must not be negative, got {value}")
    if key in POSITIVE and value <= 0:
        raise UserError(f"{where}: {key} must be positive, got {value}")
    if key == "train.learning_rate" and not 0 < value < 1:
        raise UserError(f"{where}: train.learning_rate = {value} is out of range", "Typical LoRA values: 1e-4 to 5e-4.")
    if key == "train.epochs" and value <= 0:
        raise UserError(f"{where}: train.epochs must be positive, got {value}")
    if key == "run.report_to" and not set(value) <= set(TRACKERS):
        unknown = ", ".join(v for v in value if v not in TRACKERS)
        raise UserError(f"{where}: run.report_to lists {unknown}", f"Trackers: {', '.join(TRACKERS)} (a list may be "
                        "given: --set report_to=tensorboard,mlflow).")
    if key == "run.sdpa_backends" and not set(value) <= set(SDPA_BACKENDS):
        unknown = ", ".join(v for v in value if v not in SDPA_BACKENDS)
        raise UserError(f"{where}: run.sdpa_backends lists {unknown}",
                        f"Attention kernels: {', '.join(SDPA_BACKENDS)} (e.g. --set sdpa_backends=efficient,math).")
    if key == "data.eval_size" and (value < 0 or (value >= 1 and not float(value).is_integer())):
        raise UserError(f"{where}: data.eval_size = {value}",
                        "Use a fraction below 1 (0.02) or a whole row count (200).")


def flatten_toml(table: dict[str, Any], where: str) -> dict[str, Any]:
    """A parsed profile TOML as {"section.field": value}; unknown sections or fields are errors."""
    sections = _sections()
    flat: dict[str, Any] = {}
    for name, value in table.items():
        if name in sections:
            if not isinstance(value, dict):
                raise UserError(f"{where}: [{name}] must be a table")
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
        if "=" not in item:
            raise UserError(f"--set {item}: expected KEY=VALUE", "e.g. --set learning_rate=1e-4")
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


def records_dir() -> Path:
    """Where `bench` appends its records: TRAINER_RECORDS_DIR, else benchmarks/results (from the repository root)."""
    return Path(os.environ.get("TRAINER_RECORDS_DIR", "benchmarks/results"))


def cache_dir() -> str:
    """Where converted local models live: $TRAINER_CACHE_DIR, else ~/.cache/trainer."""
    return os.environ.get("TRAINER_CACHE_DIR") or str(Path.home() / ".cache" / "trainer")


def ui_auth(value: str | None) -> tuple[str, str] | None:
    """Basic auth for `trainer ui`: --auth user:pass, else $TRAINER_UI_AUTH, else none."""
    value = value or os.environ.get("TRAINER_UI_AUTH")
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise UserError("--auth (or TRAINER_UI_AUTH) must be USER:PASSWORD")
    return user, password


@dataclass(frozen=True)
class TrackerEnvironment:
    """What the environment says about the trackers (their own variables, read here and passed down)."""

    mlflow_tracking_uri: str  # MLFLOW_TRACKING_URI; empty: the run directory's own store
    wandb_mode: str  # WANDB_MODE as the user set it (online, offline, disabled), or empty
    wandb_key: bool  # WANDB_API_KEY, or a `wandb login` in ~/.netrc: W&B may go online
    wandb_project: str  # WANDB_PROJECT, or empty


def tracker_environment() -> TrackerEnvironment:
    import netrc

    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):  # no ~/.netrc, or one W&B did not write
        logged_in = False
    return TrackerEnvironment(os.environ.get("MLFLOW_TRACKING_URI", ""), os.environ.get("WANDB_MODE", ""),
                              bool(os.environ.get("WANDB_API_KEY")) or logged_in, os.environ.get("WANDB_PROJECT", ""))


@dataclass(frozen=True)
class World:
    """This process's place in a training job of several processes, as torchrun (or `accelerate launch`) describes
    it in the environment; a plain `python -m trainer` is rank 0 of 1."""

    launched: bool = False  # started by a launcher that set WORLD_SIZE
    rank: int = 0
    local_rank: int = 0  # the GPU of this process on its machine
    size: int = 1
    local_size: int = 1
    rendezvous: str = ""  # MASTER_ADDR:MASTER_PORT, where the processes meet

    @property
    def is_main(self) -> bool:
        return self.rank == 0


@dataclass(frozen=True)
class Launch:
    """How `train` runs, besides what it trains (Config): in the background, resumed, on several GPUs or machines."""

    detach: bool = False
    resume: bool = False
    resume_from: str | None = None  # a checkpoint-<step> folder
    gpus: str | None = None  # N or "all"
    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None

    @property
    def resuming(self) -> bool:
        return self.resume or self.resume_from is not None

    @property
    def several_processes(self) -> bool:
        return bool(self.gpus) or self.nnodes > 1


def world() -> World:
    """This process's World, from the launcher's variables; the CLI reads it once and builds the Job from it."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(True, int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]),
                 int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
                 f"{env.get('MASTER_ADDR', '?')}:{env.get('MASTER_PORT', '?')}")


def serve_api_key(value: str | None) -> str | None:
    """The key `trainer serve` requires as `Authorization: Bearer KEY`: --api-key, else $TRAINER_API_KEY, else none."""
    return value or os.environ.get("TRAINER_API_KEY") or None
