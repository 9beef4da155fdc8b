"""How the UI runs the real CLI in a child process, and shows the command a terminal would type for it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from typing import Any

WIDTH = 110  # the child's terminal width: what the page's output boxes show unwrapped


def command_line(args: list[str]) -> str:
    """`python -m trainer ARGS`, quoted as a terminal takes it."""
    return shlex.join(["python", "-m", "trainer", *args])


def child(args: list[str], color: bool = False) -> dict[str, Any]:
    """The subprocess arguments that run `python -m trainer ARGS` with this UI's Python and environment."""
    env = {**os.environ, "COLUMNS": str(WIDTH), "PYTHONUNBUFFERED": "1"}
    if color:
        env.update(FORCE_COLOR="1", TERM="xterm-256color")
    return {"args": [sys.executable, "-m", "trainer", *args], "env": env, "stdin": subprocess.DEVNULL, "text": True}
