"""Resuming a run: which run and checkpoint, and whether the settings continue it (the recipe then trains on)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from trainer.config import Config, World
from trainer.console import console
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir, checkpoints, listing


def run_to_resume(checkpoint: str | None, run_dir: str | None, base: Config | None) -> RunDir:
    """The run a resume continues: the one of --resume-from's checkpoint, of --run-dir, or the latest run of the
    profile (`base`: its config, resolved by the CLI when neither is given)."""
    if checkpoint:
        path = Path(checkpoint)
        reason = checkpoints.problem(path) if path.is_dir() else "it is not a folder"
        if reason:
            raise UserError(f"cannot resume from {path}: {reason}", "Name a checkpoint-<step> folder of a run.")
        return RunDir(path.parent.parent)
    if run_dir:
        return RunDir.open(Path(run_dir))
    assert base is not None, "the CLI resolves the profile when neither a checkpoint nor a run directory is named"
    return listing.latest(Path(base.run.runs_root), base.profile)


def finished(run: RunDir, checkpoint: str | None) -> bool:
    """Whether there is nothing to resume (the run completed, and no checkpoint was named); says so."""
    status = run.read_status()
    if status.get("state") == "completed" and not checkpoint:
        console.print(f"Run {run.path} already finished ({status.get('steps')} steps); nothing to resume.")
        return True
    return False


def plan(run: RunDir, saved: Config, asked: Config, checkpoint: str | None, world: World) -> tuple[Config, Path] | None:
    """The config a resume of `run` trains with (`asked`: the run's own config.toml with the command's flags, under
    the run's profile name) and the checkpoint it continues from (--resume-from's, or the newest valid one); None when
    the run already finished. Flags that change what is trained (against `saved`, the run's config) are refused."""
    name = run.read_status().get("profile") or saved.profile
    config = dataclasses.replace(asked, profile=name)
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
    ranks.check_resume(path, checkpoints.world_size_of(path), world, config.run.resume_force)
    return config, path
