"""How the UI runs the real CLI in a child process, with this UI's Python and environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

WIDTH = 110  # the child's terminal width: what the page's output boxes show unwrapped


def child(args: list[str], error_file: Path | None = None, preview_file: Path | None = None) -> dict[str, Any]:
    """The subprocess arguments that run `python -m trainer ARGS`; a UserError it ends with is written to
    `error_file` as JSON (commands.read_error reads it), and what `trainer data` shows to `preview_file`, so the page
    never parses the printed text."""
    env = {**os.environ, "COLUMNS": str(WIDTH), "PYTHONUNBUFFERED": "1"}
    if error_file is not None:
        env["TRAINER_ERROR_FILE"] = str(error_file)
    if preview_file is not None:
        env["TRAINER_PREVIEW_FILE"] = str(preview_file)
    return {"args": [sys.executable, "-m", "trainer", *args], "env": env, "stdin": subprocess.DEVNULL, "text": True}


def final_lines(output: str, count: int | None = None) -> str:
    """Output as a terminal leaves it: of a line redrawn with carriage returns (tqdm), its last drawing; the last
    `count` lines (all when None)."""
    lines = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in output.rstrip("\n").split("\n")]
    return "\n".join(lines[-count:] if count else lines)
