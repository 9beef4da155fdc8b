"""Resuming a run: which run and checkpoint, whether the settings continue it, then the recipe again."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from trainer.config import world as current_world
from trainer.console import console
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir, listing
from trainer.train import checkpoints
from trainer.train.recipe import main


def run_to_resume(profile: str, settings: list[str], flags: dict[str, Any], checkpoint: str | None) -> RunDir:
    """The run a resume continues: the one of --resume-from's checkpoint, of --run-dir, or the latest run of the
    profile."""
    from trainer.profiles import resolve

    if checkpoint:
        path = Path(checkpoint)
        reason = checkpoints.problem(path) if path.is_dir() else "it is not a folder"
        if reason:
            raise UserError(f"cannot resume from {path}: {reason}", "Name a checkpoint-<step> folder of a run.")
        run = RunDir(path.parent.parent)
    elif flags.get("run.run_dir"):
        run = RunDir.open(Path(flags["run.run_dir"]))
    else:
        base, _ = resolve(profile, settings)
        run = listing.latest(Path(base.run.runs_root), base.profile)
    return run


def finished(run: RunDir, checkpoint: str | None) -> bool:
    """Whether there is nothing to resume (the run completed, and no checkpoint was named); says so."""
    status = run.read_status()
    if status.get("state") == "completed" and not checkpoint:
        console.print(f"Run {run.path} already finished ({status.get('steps')} steps); nothing to resume.")
        return True
    return False


def resume(profile: str, settings: list[str], flags: dict[str, Any], checkpoint: str | None) -> RunDir | None:
    """Continue a run (see run_to_resume) from its newest valid checkpoint, or from the one named by --resume-from.
    The run's own config.toml is the base; flags that change what is trained are refused."""
    from trainer.profiles import resolve

    run = run_to_resume(profile, settings, flags, checkpoint)
    saved, _ = resolve(str(run.config))
    name = run.read_status().get("profile") or saved.profile
    config, _ = resolve(str(run.config), settings, flags)
    config = dataclasses.replace(config, profile=name)
    changed = checkpoints.differences(saved, config)
    if changed and not config.run.resume_force:
        raise UserError(
            f"resuming {run.path} with settings that change what is trained:\n  " + "\n  ".join(changed),
            "Resume with the run's own settings (drop those flags), start a new run, or --set resume_force=true.",
        )
    if finished(run, checkpoint):
        return None
    if checkpoint:
        path: Path | None = Path(checkpoint)
    else:
        path = checkpoints.latest_valid(run.checkpoints, warn=lambda text: console.print(f"[yellow]{text}[/]"))
        if path is None:
            raise UserError(f"{run.path} has no complete checkpoint to resume from",
                            "Start it again without --resume (and a new --run-dir).")
    ranks.check_resume(path, checkpoints.world_size_of(path), current_world(), config.run.resume_force)
    return main(config, f"resuming {run.path}", resume_from=path)
