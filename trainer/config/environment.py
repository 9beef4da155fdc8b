"""What the environment says, read here once and passed down: the documented variables (TRAINER_*, the trackers'
own), and this process's place in a job of several (torchrun's)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError


def records_dir() -> Path:
    """Where `bench` appends its records: TRAINER_RECORDS_DIR, else benchmarks/results (from the repository root)."""
    return Path(os.environ.get("TRAINER_RECORDS_DIR", "benchmarks/results"))


def cache_dir() -> str:
    """Where converted local models live: $TRAINER_CACHE_DIR, else ~/.cache/trainer."""
    return os.environ.get("TRAINER_CACHE_DIR") or str(Path.home() / ".cache" / "trainer")


def error_file() -> Path | None:
    """$TRAINER_ERROR_FILE: where the CLI writes a UserError as JSON too (a front end that runs it reads it there)."""
    value = os.environ.get("TRAINER_ERROR_FILE")
    return Path(value) if value else None


def preview_file() -> Path | None:
    """$TRAINER_PREVIEW_FILE: where `trainer data` writes what it shows as JSON too (the UI draws it as HTML)."""
    value = os.environ.get("TRAINER_PREVIEW_FILE")
    return Path(value) if value else None


def ui_auth(value: str | None) -> tuple[str, str] | None:
    """Basic auth for `trainer ui`: --auth user:pass, else $TRAINER_UI_AUTH, else none."""
    value = value or os.environ.get("TRAINER_UI_AUTH")
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not (sep and user and password):
        raise UserError("--auth (or TRAINER_UI_AUTH) must be USER:PASSWORD")
    return user, password


def judge_api_key() -> str:
    """$TRAINER_JUDGE_API_KEY: the key of `eval --judge-url`'s endpoint (never written into a report)."""
    return os.environ.get("TRAINER_JUDGE_API_KEY", "")


def serve_api_key(value: str | None) -> str | None:
    """The key `trainer serve` requires as `Authorization: Bearer KEY`: --api-key, else $TRAINER_API_KEY, else none."""
    return value or os.environ.get("TRAINER_API_KEY") or None


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


def world() -> World:
    """This process's World, from the launcher's variables; the CLI reads it once and builds the Job from it."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(True, int(env.get("RANK", "0")), int(env.get("LOCAL_RANK", "0")), int(env["WORLD_SIZE"]),
                 int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])),
                 f"{env.get('MASTER_ADDR', '?')}:{env.get('MASTER_PORT', '?')}")
