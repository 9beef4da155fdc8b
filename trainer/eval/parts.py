"""An eval done in parts (a model's loss, each answer, each benchmark, each verdict), each saved under RUN/eval/parts/
as it completes and keyed by what it depends on: a rerun after Ctrl+C reuses the finished parts and redoes only those
whose inputs changed (other prompts, another --against, a retrained adapter). A bar with an ETA per stage."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainer.console import console, duration
from trainer.runs import write_atomic


def key(depends: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(depends, sort_keys=True).encode()).hexdigest()[:24]


def fingerprint(folder: Path | None) -> dict[str, Any]:
    """What changes when an adapter (or any model folder) is written again: its files' names, sizes and times."""
    if folder is None or not folder.is_dir():
        return {}
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(folder.iterdir()) if f.is_file()}


class Stage:
    """One bar: `units` of work, done by `part`s (each a unit, or counting its own units as it goes)."""

    def __init__(self, parts: Parts, label: str, units: int) -> None:
        self.parts, self.label, self.units, self.done = parts, label, units, 0
        self.reused, self.started = 0, time.monotonic()
        self.task = parts.progress.add_task(label, total=units)

    def part(self, depends: dict[str, Any], compute: Callable[[], Any], units: int | None = 1) -> Any:
        """The saved result for `depends`, or `compute()`'s, saved before it is returned. `compute` may move the bar
        itself (`advance`); it stands at `units` more once it returns (None: where `compute` left it)."""
        path = self.parts.folder / f"{key(depends)}.json"
        if path.is_file():
            self.reused += 1
            self.parts.reused += 1
            # a saved part leaves the bar instead of filling it: the ETA is the pace of the work still to do
            self.grow(-(units or 0))
            return json.loads(path.read_text(encoding="utf-8"))["result"]
        start = self.done
        result = compute()
        self.parts.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps({"depends": depends, "result": result}) + "\n")
        self.parts.saved += 1
        self.advance(start + units - self.done if units is not None else 0)
        return result

    def grow(self, units: int) -> None:
        self.units += units
        self.parts.progress.update(self.task, total=self.units)

    def advance(self, units: int) -> None:
        self.done += units
        self.parts.progress.update(self.task, completed=self.done)

    def end(self) -> None:
        self.parts.progress.remove_task(self.task)
        saved = f" ({self.reused} saved earlier)" if self.reused else ""
        self.parts.progress.console.print(f"[green]✓[/] {self.label}{saved} in "
                                          f"{duration(time.monotonic() - self.started)}")


class Parts:
    def __init__(self, folder: Path, progress: Any) -> None:
        self.folder, self.progress, self.saved, self.reused = folder, progress, 0, 0

    @contextmanager
    def stage(self, label: str, units: int) -> Iterator[Stage]:
        stage = Stage(self, label, units)
        yield stage
        stage.end()


@contextmanager
def saved_under(folder: Path) -> Iterator[Parts]:
    """Parts saved under `folder`, with their bars on the console; Ctrl+C says what is kept and how to go on."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=True)
    parts = Parts(folder, progress)
    try:
        with progress:
            yield parts
    except KeyboardInterrupt:
        console.print(f"[yellow]Eval stopped:[/] {parts.saved + parts.reused} finished parts are saved in {folder}; "
                      "run the same command again to go on from there.")
        raise
