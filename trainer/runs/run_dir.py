"""A run directory: resolved config, metrics.jsonl, status, launch record, the LoRA adapter (loss.png: loss_plot)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from trainer.config import Config, from_toml
from trainer.console import console, duration
from trainer.errors import Stopped, UserError
from trainer.runs import checkpoints

MARKERS = ("status.json", "launch.json")  # a run directory holds one: a run that trains or ran, or is starting


def is_run_dir(path: Path) -> bool:
    """Whether `path` is a run directory (as opposed to an adapter, a checkpoint or a model folder)."""
    return any((path / name).is_file() for name in MARKERS)


@dataclass(frozen=True)
class RunDir:
    path: Path

    config = property(lambda self: self.path / "config.toml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    status = property(lambda self: self.path / "status.json")
    adapter = property(lambda self: self.path / "adapter")
    checkpoints = property(lambda self: self.path / "checkpoints")
    plot = property(lambda self: self.path / "loss.png")
    log_file = property(lambda self: self.path / "train.log")  # a detached run's console output
    launch = property(lambda self: self.path / "launch.json")  # the detached process: pid, start time, command
    data_stats = property(lambda self: self.path / "data.json")  # rows and tokens trained on (data.build's stats)
    benchmark = property(lambda self: self.path / "benchmark.json")  # the run's speed and memory (runs/speed.py)
    # What a Stop from elsewhere (the UI, another terminal) writes: the run stops at the end of its step as on Ctrl+C.
    # Windows has no SIGINT for a process without a console, so there it is the only way; elsewhere it comes with one.
    stop_request = property(lambda self: self.path / "stop.request")
    resume_command = property(lambda self: f"python -m trainer --resume --run-dir {self.path}")

    @classmethod
    def create(cls, config: Config) -> RunDir:
        """A new, empty run directory: --run-dir, or runs/<date-time>-<profile> (or the one `--detach` made)."""
        path = new_path(config)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            hint = "Pick a --run-dir you can write."
            raise UserError(f"cannot create the run directory {path}: {e.strerror}", hint) from None
        run = cls(path)
        run.write_config(config)
        return run

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run directory (one with a config.toml)."""
        run = cls(path)
        if not run.config.is_file():
            raise UserError(f"{path} is not a run directory (it has no config.toml)", "Check --run-dir.")
        return run

    def write_config(self, config: Config) -> None:
        """config.toml in the profile schema: `--profile <run>/config.toml` runs the same recipe again."""
        lines = [f"# Resolved configuration of this run (profile: {config.profile})."]
        sections = []
        for key, value in config.to_dict().items():
            if isinstance(value, dict):
                sections.append(f"\n[{key}]")
                sections.extend(f"{k} = {toml_value(v)}" for k, v in value.items())
            elif key != "profile":
                lines.append(f"{key} = {toml_value(value)}")
        write_atomic(self.config, "\n".join(lines + sections) + "\n")

    def log(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def keep_metrics_through(self, step: int) -> None:
        """Drop records after `step`: a resumed run logs those steps again."""
        kept = [json.dumps(m) + "\n" for m in self.read_metrics() if m["step"] <= step]
        write_atomic(self.metrics, "".join(kept))

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics.exists():
            return []
        return [json.loads(line) for line in self.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]

    def set_status(self, state: str, **extra: Any) -> None:
        """running | completed | failed | interrupted; only `completed` runs have a final adapter.

        The writing process is recorded, so a run whose process died without a word is not `running` forever."""
        record = {"state": state, "updated": datetime.now().isoformat(timespec="seconds"), **extra,
                  **process_identity(os.getpid())}
        write_atomic(self.status, json.dumps(record, indent=2) + "\n")

    @contextlib.contextmanager
    def status_on_failure(self, write: bool, step: Callable[[], int | None], resume_suffix: str = "",
                          **facts: Any) -> Iterator[None]:
        """How a run that ends early ended, in its status (written where `write`: rank 0), and how to continue it:
        interrupted (a signal: Stopped, its checkpoint saved at `step()`; or Ctrl+C twice), or failed with the
        error. `resume_suffix` completes the resume command (a job's processes)."""
        try:
            yield
        except Stopped:
            if write:
                self.set_status("interrupted", **facts, step=step())
            console.print(f"[yellow]Stopped at step {step()}; checkpoint saved.[/] Continue with:\n"
                          f"  {self.resume_command}{resume_suffix}")
            raise
        except KeyboardInterrupt:
            if write:
                self.set_status("interrupted", **facts)
            console.print(f"Aborted. Continue from the last checkpoint with:\n  {self.resume_command}")
            raise
        except BaseException as e:
            if write:
                self.set_status("failed", **facts, **failure(e))
            raise

    @contextlib.contextmanager
    def user_error_recorded(self, write: bool, **facts: Any) -> Iterator[None]:
        """A UserError that ends this run, recorded in its status (where `write`: rank 0, and the folder exists: a
        detached run's is made before it loads) as `failed` with the message and its fix, whenever it comes (loading
        the model, tokenizing, a resume refused): the run reads "failed: <the error>", not "died". The facts of the
        status before (profile, step of a stopped run) stay."""
        try:
            yield
        except UserError as e:
            before = self.read_status() if self.status.exists() else {}
            if write and is_run_dir(self.path) and not (before.get("state") == "failed"
                                                         and before.get("pid") == os.getpid()):  # fit's record stays
                kept = {k: before[k] for k in ("profile", "engine", "step") if k in before}
                self.set_status("failed", **{**kept, **facts}, **failure(e))
            raise

    def read_status(self) -> dict[str, Any]:
        return json.loads(self.status.read_text(encoding="utf-8")) if self.status.exists() else {}

    def save_adapter(self, save: Any) -> None:
        """Call `save(folder)` into a staging folder and move it into place, so `adapter/` is whole or absent."""
        staging = self.path / f".adapter-{os.getpid()}-{int(time.time())}"
        save(str(staging))
        if self.adapter.exists():
            shutil.rmtree(self.adapter)
        os.replace(staging, self.adapter)

    def read_launch(self) -> dict[str, Any]:
        return json.loads(self.launch.read_text(encoding="utf-8")) if self.launch.exists() else {}

    def state(self) -> str:
        """The status file's state, checked against the processes: `starting` while a detached run loads, `stopping`
        from a stop request until its process is gone, `finishing` from its last record until then; `died` when the
        process that should be running is gone (killed, crashed) without recording how it ended."""
        status, launch = self.read_status(), self.read_launch()
        state = status.get("state", "unknown")
        if launch and is_alive(launch):
            ours = launch["pid"] in (status.get("pid"), status.get("launcher_pid"))  # --gpus: rank 0's launcher
            if ours and state == "running":
                return "stopping" if self.stop_request.exists() else "running"
            if ours and state in FINAL_STATES:  # recorded how it ended; its process is still on its way out
                return "stopping" if state == "interrupted" else "finishing"
            return "starting"
        if state == "running" and not is_alive(status):
            return "died"
        if launch and status.get("updated", "") < launch["launched"]:
            return "died"  # launched, but it never recorded a status (it failed while loading: see train.log)
        return state

    def complete_checkpoints(self) -> list[Path]:
        """The checkpoint-<step> folders with every file a resume needs (not opened: listing stays fast), oldest
        first."""
        found = [p for p in self.checkpoints.glob("checkpoint-*") if checkpoints.step_of(p) is not None
                 and checkpoints.missing(p) is None]
        return sorted(found, key=checkpoints.step_of)

    def last_checkpoint(self) -> str | None:
        """The newest complete checkpoint-<step> folder's name."""
        found = self.complete_checkpoints()
        return found[-1].name if found else None

    def read_config(self) -> Config:
        """The run's config.toml as its Config, under the run's profile name: how every reader gets a run's settings."""
        if not self.config.is_file():
            raise UserError(f"{self.path} is not a run directory (it has no config.toml)", "Check the run's folder.")
        profile = self.read_status().get("profile") or self.read_launch().get("profile") or self.config.stem
        return from_toml(self.config.read_text(encoding="utf-8"), str(self.config), profile)

    def exports(self) -> list[str]:
        """What this run has produced to use elsewhere: the adapter, a merged model, GGUF files (`trainer export`)."""
        found = [name for name in ("adapter", "merged") if (self.path / name).is_dir()]
        return found + sorted(f"gguf/{p.name}" for p in (self.path / "gguf").glob("*.gguf"))

    def planned_steps(self) -> int | None:
        """train.max_steps of config.toml; None without one, or one an older trainer wrote that this one refuses."""
        try:
            return self.read_config().train.max_steps if self.config.is_file() else None
        except UserError:
            return None

    def info(self) -> dict[str, Any]:
        """One line of a runs table: id, profile, state, progress, latest losses and speed, what exists."""
        status = self.read_status()
        metrics = self.read_metrics()
        steps = [m for m in metrics if "loss" in m]
        evals = [m for m in metrics if "eval_loss" in m]
        logged = [m for m in metrics if "max_steps" in m]  # what the trainer counts to (epochs, resumes)
        max_steps = logged[-1]["max_steps"] if logged else self.planned_steps() or "?"
        state = self.state()
        elapsed = steps[-1]["elapsed_s"] if steps and "elapsed_s" in steps[-1] else None
        eta = None
        if state == "running" and elapsed is not None and isinstance(max_steps, int) and steps[-1]["step"] > 0:
            eta = duration(elapsed / steps[-1]["step"] * max(0, max_steps - steps[-1]["step"]))
        return {
            "run": self.path.name,
            "profile": status.get("profile") or self.read_launch().get("profile", "?"),
            "state": state,
            "state_text": f"failed: {status.get('error', '?')}" if state == "failed" else state,  # with its cause
            "step": f"{steps[-1]['step'] if steps else 0}/{max_steps}",
            "elapsed": duration(elapsed) if elapsed is not None else None,
            "eta": eta,  # running runs only: the time left at the pace so far
            "loss": round(steps[-1]["loss"], 4) if steps else None,
            "eval_loss": round(evals[-1]["eval_loss"], 4) if evals else None,
            "tokens_per_s": mean_tokens_per_s(steps),  # the run's, not the last step's
            "adapter": self.adapter.is_dir(),
            "merged": (self.path / "merged").is_dir(),
            "checkpoint": self.last_checkpoint(),
            "exports": self.exports(),
        }


def failure(e: BaseException) -> dict[str, str]:
    """How an exception that ended a run is recorded in its status: a UserError's message and fix as the user reads
    them; anything else (a bug) with its type."""
    if isinstance(e, UserError):
        return {"error": e.message, **({"hint": e.hint} if e.hint else {})}
    return {"error": f"{type(e).__name__}: {e}"}


def mean_tokens_per_s(steps: list[dict[str, Any]]) -> float | None:
    """The run's speed from its step records: tokens over time from the end of the warm-up (cuDNN plans, allocator
    growth, compilation: the first 20% of the steps, 1 to 5, as benchmark.json counts it) to the last record; the
    one record's own speed while there is no later one."""
    if not steps:
        return None
    skip = min(5, max(1, steps[-1]["step"] // 5))
    warm = [m for m in steps if m["step"] <= skip]
    first, last = (warm[-1] if warm else steps[0]), steps[-1]
    if first is last or "tokens" not in first or "tokens" not in last:
        return last.get("tokens_per_s")
    return round((last["tokens"] - first["tokens"]) / max(last["elapsed_s"] - first["elapsed_s"], 1e-9), 1)


FINAL_STATES = ("completed", "failed", "interrupted", "died")


DETACH_FILES = {"train.log", "launch.json"}  # what `--detach` puts into a new run directory before training starts


def new_path(config: Config) -> Path:
    """Where a new run goes: --run-dir (empty, or holding only what `--detach` wrote), or runs/<date-time>-<profile>."""
    if config.run.run_dir:
        path = Path(config.run.run_dir)
        if path.exists() and (not path.is_dir() or not {p.name for p in path.iterdir()} <= DETACH_FILES):
            raise UserError(f"run directory {path} already exists and is not empty", "Pick a new --run-dir.")
        return path
    return new_run_path(Path(config.run.runs_root), config.profile)


def new_run_path(runs_root: Path, profile: str) -> Path:
    """runs_root/<date-time>-<profile>, numbered -2, -3, ... when that is taken: how every new run is named."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = runs_root / f"{stamp}-{profile}", 1
    while path.exists():
        suffix += 1
        path = runs_root / f"{stamp}-{profile}-{suffix}"
    return path


def process_identity(pid: int) -> dict[str, Any]:
    """pid, its start time and the host: enough to tell later whether that same process still runs."""
    import socket

    import psutil

    try:
        started = psutil.Process(pid).create_time()
    except psutil.Error:  # already gone
        started = None
    return {"pid": pid, "pid_started": started, "host": socket.gethostname()}


def is_alive(record: dict[str, Any]) -> bool:
    """Whether the process a status or launch record names still runs. psutil rather than os.kill(pid, 0): that kills
    the process on Windows, and sees neither zombies nor a pid reused by another program. On another host (runs on a
    shared disk) we cannot tell, so the record is believed."""
    import socket

    import psutil

    if "pid" not in record:
        return True  # written before pids were recorded: believe it
    if record.get("host") and record["host"] != socket.gethostname():
        return True
    try:
        process = psutil.Process(record["pid"])
        started = record.get("pid_started", process.create_time())
        return (started is not None and abs(process.create_time() - started) < 1
                and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_atomic(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)
