"""Checkpoints: which are complete, the newest valid one, and whether a resume continues the same run."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from pathlib import Path

from trainer.config import Config
from trainer.errors import UserError

# What the Trainer writes into checkpoint-<step>/ (plus scaler.pt in fp16), and our copy of the run's config; the
# RNG state is rng_state.pth from one process, rng_state_<rank>.pth from each of several (with world.json).
REQUIRED = ("trainer_state.json", "adapter_config.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt",
            "config.toml")
RNG_STATES = ("rng_state.pth", "rng_state_0.pth")
WORLD = "world.json"
NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
UNWRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}
# Rust libraries (tokenizers, safetensors) report I/O errors as plain exceptions ending in "(os error N)":
# 28 is ENOSPC on Linux, 112 ERROR_DISK_FULL on Windows.
RUST_NO_SPACE = ("(os error 28)", "(os error 112)")


def step_of(path: Path) -> int | None:
    prefix, _, number = path.name.rpartition("-")
    return int(number) if prefix == "checkpoint" and number.isdigit() else None


def missing(path: Path) -> str | None:
    """The first file a resume needs that `path` lacks, or None."""
    for name in REQUIRED:
        if not (path / name).is_file():
            return name
    return None if any((path / name).is_file() for name in RNG_STATES) else RNG_STATES[0]


def problem(path: Path) -> str | None:
    """Why `path` is not a usable checkpoint, or None when it is."""
    lacking = missing(path)
    if lacking:
        return f"{lacking} is missing"
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        if state["global_step"] != step_of(path):
            return f"trainer_state.json says step {state['global_step']}"
    except (ValueError, KeyError):
        return "trainer_state.json is unreadable"
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path / "adapter_model.safetensors", framework="pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        return f"adapter_model.safetensors is damaged ({e})"
    return None


def latest_valid(folder: Path, warn: Callable[[str], None]) -> Path | None:
    """The highest-step checkpoint that is complete; damaged ones are skipped with a warning naming them."""
    found = sorted((p for p in folder.glob("checkpoint-*") if p.is_dir() and step_of(p) is not None),
                   key=step_of, reverse=True)
    for path in found:
        reason = problem(path)
        if reason is None:
            return path
        warn(f"skipping {path}: {reason}")
    return None


def write_world(path: Path, world_size: int, grad_accum_steps_per_rank: int) -> None:
    """How many processes wrote this checkpoint: a resume continues it with as many."""
    record = {"world_size": world_size, "grad_accum_steps_per_rank": grad_accum_steps_per_rank}
    (path / WORLD).write_text(json.dumps(record) + "\n", encoding="utf-8")


def world_size_of(path: Path) -> int:
    """The processes that wrote the checkpoint (1 where world.json is absent: before there were several)."""
    world = path / WORLD
    return json.loads(world.read_text(encoding="utf-8"))["world_size"] if world.is_file() else 1


# Settings that define what is being trained: a resume that changes them would not continue the same run.
IDENTITY = ("model.name", "model.from_run", "model.load_in_4bit", "model.max_seq_length", "lora.r", "lora.alpha",
            "lora.target_modules", "train.method", "data.dataset", "data.columns", "data.format", "data.split",
            "data.eval_size", "data.date_string", "data.control_tokens_as_text", "train.seed", "train.packing",
            "train.group_by_length")


def differences(saved: Config, now: Config) -> list[str]:
    """What `now` changes about the run saved as `saved`, one line each."""
    def get(config: Config, key: str) -> object:
        section, name = key.split(".")
        return getattr(getattr(config, section), name)

    lines = [f"{key}: {get(saved, key)!r} -> {get(now, key)!r}" for key in IDENTITY if get(saved, key) != get(now, key)]
    batch = [c.train.micro_batch_size * c.train.grad_accum_steps for c in (saved, now)]
    if batch[0] != batch[1]:
        lines.append(f"effective batch (micro_batch_size x grad_accum_steps): {batch[0]} -> {batch[1]}")
    return lines


def size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def is_no_space(error: BaseException) -> bool:
    if isinstance(error, OSError):
        return error.errno in NO_SPACE
    return str(error).endswith(RUST_NO_SPACE)


def no_space_error(what: str, folder: Path, needed_mb: float) -> UserError:
    free_mb = shutil.disk_usage(folder).free / 2**20
    return UserError(
        f"the disk is full while writing {what} in {folder}: it needs about {needed_mb:.0f} MB, {free_mb:.0f} MB "
        "are free",
        "Free some space (or use a --run-dir on another disk), then continue with --resume; the previous "
        "checkpoint is intact.",
    )
