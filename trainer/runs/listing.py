"""Finding runs: every run under a root, the latest of a profile, one by folder or id, and the `runs` table."""

from __future__ import annotations

from pathlib import Path

from trainer.errors import UserError
from trainer.runs.run_dir import MARKERS, RunDir, is_run_dir


def list_runs(root: Path) -> list[RunDir]:
    """Every run directory under `root` (with a status, or launched by --detach and still loading), newest first."""
    paths = {p.parent for name in MARKERS for p in root.glob(f"*/{name}")}
    runs = [RunDir(p) for p in paths]
    return sorted(runs, key=lambda r: max(f.stat().st_mtime for f in (r.status, r.launch) if f.exists()),
                  reverse=True)


def latest(runs_root: Path, profile: str) -> RunDir:
    """The most recently active run of `profile` under `runs_root`."""
    mine = [r for r in list_runs(runs_root) if r.read_status().get("profile") == profile]
    if not mine:
        raise UserError(f"no run of profile {profile} under {runs_root}/ to resume",
                        "Name one with --run-dir, or start a run without --resume.")
    return mine[0]


COLUMNS = ("run", "profile", "state", "steps", "loss", "tokens/s", "last checkpoint", "exports")


def show(root: Path) -> None:
    """`trainer runs`: every run under `root`, newest first, with what it has produced."""
    from rich.measure import Measurement
    from rich.table import Table

    from trainer.console import console

    runs = list_runs(root)
    if not runs:
        console.print(f"No runs under {root}/ yet. Start one with: python -m trainer (--detach: in the background)")
        return
    infos = [run.info() for run in runs]
    rows = [[i["run"], i["profile"], i["state_text"], i["step"], "" if i["loss"] is None else f"{i['loss']:.4f}",
             "" if i["tokens_per_s"] is None else f"{i['tokens_per_s']:,.0f}", i["checkpoint"] or "",
             ", ".join(i["exports"])] for i in infos]
    table = Table(title=f"Runs in {root}/")
    for column in COLUMNS:
        table.add_column(column, no_wrap=True)  # run ids and checkpoint names are copied into commands
    for row in rows:
        table.add_row(*row)
    if Measurement.get(console, console.options.update(max_width=10_000), table).maximum <= console.width:
        console.print(table)
    else:  # a narrow terminal or pipe: a block per run, nothing wrapped
        console.print(f"Runs in {root}/")
        for row in rows:
            console.print(row[0])
            console.print("  " + "  ".join(f"{name}: {value}" for name, value in zip(COLUMNS[1:], row[1:], strict=True)
                                           if value), soft_wrap=True)
    console.print("Follow one with: python -m trainer runs --follow RUN", soft_wrap=True)


def find(name: str, root: Path) -> RunDir:
    """A run by its folder or by its id under `root`."""
    for path in (Path(name), root / name):
        if is_run_dir(path):
            return RunDir(path)
    known = ", ".join(r.path.name for r in list_runs(root)[:5]) or "none yet"
    raise UserError(f"no run '{name}' (neither a run folder nor a run id under {root}/)",
                    f"`python -m trainer runs` lists them (latest: {known}); or pass --runs-root.")
