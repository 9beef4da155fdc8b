"""What a command needs, known once for both front ends (the CLI and the UI): a new run's path, the command line of a
training, the one-training-at-a-time rule, and a UserError as data (the CLI writes it, the UI reads it)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from trainer import profiles
from trainer.config import Config
from trainer.errors import UserError
from trainer.runs import background
from trainer.runs.listing import list_runs
from trainer.runs.run_dir import new_run_path


def command_line(args: list[str]) -> str:
    """`python -m trainer ARGS`, quoted as a terminal takes it."""
    return shlex.join(["python", "-m", "trainer", *args])


def run_path(runs_root: Path, profile: str) -> Path:
    """Where a new run of `profile` goes in `runs_root` (auto: the profile it picks), as the CLI names it."""
    return new_run_path(runs_root, profiles.locate(profile or "auto").name)


def run_options(profile: str, model: str = "", dataset: str = "", data_format: str = "auto",
                settings: dict[str, Any] | None = None, extra: list[str] | None = None) -> list[str]:
    """The options `train` and `data` share as the CLI's flags: empty ones keep the profile's; `settings` ({key:
    value}, None values left out) and `extra` (KEY=VALUE items) become --set."""
    args = ["--profile", profile or "auto"]
    args += ["--model", model.strip()] if model and model.strip() else []
    args += ["--dataset", dataset.strip()] if dataset and dataset.strip() else []
    args += ["--format", data_format] if data_format and data_format != "auto" else []
    for key, value in (settings or {}).items():
        if value is not None:
            args += ["--set", f"{key}={value}"]
    for item in extra or []:
        args += ["--set", item]
    return args


def length(max_steps: float | None, epochs: float | None) -> list[str]:
    """--max-steps when above 0, else --epochs when given, else nothing (the profile's)."""
    if max_steps:
        return ["--max-steps", str(int(max_steps))]
    return ["--epochs", f"{epochs:g}"] if epochs else []


def train_args(options: list[str], max_steps: float | None = None, epochs: float | None = None,
               detach: bool = True) -> list[str]:
    """`train` with run_options' flags, for so many steps or epochs, in the background unless not `detach`."""
    return ["train", *options, *length(max_steps, epochs), *(["--detach"] if detach else [])]


def resume_args(run_dir: Path, max_steps: float | None = None, epochs: float | None = None,
                detach: bool = True) -> list[str]:
    """`train --resume` of the run in `run_dir`, to a new last step or epoch count when given."""
    return ["train", "--resume", "--run-dir", str(run_dir), *length(max_steps, epochs),
            *(["--detach"] if detach else [])]


def where_it_trains(config: Config) -> tuple[Path, Path | None]:
    """The runs root a training of `config` joins (its --run-dir's folder, else run.runs_root) and its run folder."""
    if config.run.run_dir:
        return Path(config.run.run_dir).parent, Path(config.run.run_dir)
    return Path(config.run.runs_root), None


def one_training_at_a_time(runs_root: Path, this_run: Path | None = None) -> None:
    """Refuse a training while another run in `runs_root` trains (or loads to): one GPU, one training. `this_run`
    (a detached run's own process, a resume) is not another."""
    mine = this_run.resolve() if this_run is not None else None
    busy = background.holder([r for r in list_runs(runs_root) if r.path.resolve() != mine])
    if busy is not None:
        raise UserError(f"run {busy.path.name} is training ({busy.info()['step']} steps): one training at a time "
                        "on this machine", "Stop it first, or wait until it ends; with a second GPU, train this one in "
                        "another runs root (--set runs_root=FOLDER).")


def write_error(path: Path, error: UserError) -> None:
    """The error as JSON, for the front end that ran the command (TRAINER_ERROR_FILE)."""
    record = {"message": error.message, "hint": error.hint, "setting": error.setting}
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")


def read_error(path: Path) -> UserError | None:
    """The error a command wrote with write_error, or None when it wrote none."""
    if not path.is_file() or not path.read_text(encoding="utf-8").strip():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    return UserError(record["message"], record.get("hint", ""), record.get("setting", ""))
