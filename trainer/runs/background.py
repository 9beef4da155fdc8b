"""Background runs: `train --detach` starts training in its own session, `runs --follow` watches one to its end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

from rich.markup import escape

from trainer.config import Config
from trainer.console import console
from trainer.errors import UserError
from trainer.runs.run_dir import FINAL_STATES, RunDir, is_alive, new_path, process_identity, write_atomic

# What `runs --follow` exits with once the run has ended (Ctrl+C while following: 130, the run goes on).
EXIT_CODES = {"completed": 0, "failed": 1, "died": 1, "interrupted": 130}
TAIL_LINES = 20


def new_run(config: Config) -> RunDir:
    """The folder of a new run to start in the background, made now: a bad --run-dir fails here, not in the log."""
    run = RunDir(new_path(config))
    try:
        run.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create the run directory {run.path}: {e.strerror}",
                        "Pick a --run-dir you can write.") from None
    return run


def start(argv: list[str], run: RunDir, profile: str, name_run_dir: bool) -> RunDir:
    """Run `python -m trainer <argv without --detach>` (with --run-dir RUN when `name_run_dir`) in a new session, its
    output in RUN_DIR/train.log; return at once. The CLI has resolved the settings and found the run first."""
    command = [sys.executable, "-m", "trainer", *(a for a in argv if not is_detach_flag(a))]
    if name_run_dir:
        command += ["--run-dir", str(run.path)]
    launched = datetime.now().isoformat(timespec="seconds")
    with run.log_file.open("ab") as log:
        log.write(f"--- {launched} started in the background: {' '.join(command)}\n".encode())
        log.flush()
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"}, **new_session())
    record = {"launched": launched, "profile": profile, "command": command, **process_identity(process.pid)}
    write_atomic(run.launch, json.dumps(record, indent=2) + "\n")
    console.print(f"Training in the background (pid {process.pid}); it goes on when this terminal closes.\n"
                  f"Run directory: {escape(str(run.path))}  (output in {escape(str(run.log_file))})\n"
                  f"Follow it with:\n  python -m trainer runs --follow {escape(str(run.path))}")
    return run


def is_detach_flag(arg: str) -> bool:
    """--detach, or an abbreviation argparse accepts for it; the child must not detach again."""
    return len(arg) >= 5 and "--detach".startswith(arg)


def new_session() -> dict[str, Any]:
    """Popen options that cut the child off from this terminal: closing it (SIGHUP, Ctrl+C) does not reach it."""
    if sys.platform == "win32":
        return {"creationflags": subprocess.DETACHED_PROCESS | subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def follow(run: RunDir, poll_s: float = 0.5) -> int:
    """Print the run's output as it comes (train.log, or metrics for a run started in the foreground) until its
    state is final; the exit code says how it ended. Ctrl+C stops following, never the run."""
    console.print(f"Following {escape(str(run.path))} (Ctrl+C stops following; the run goes on)")
    position = None
    # Python installs its Ctrl+C handler only where SIGINT was not ignored at start, and a background job of a
    # non-interactive shell starts with it ignored: without this, Ctrl+C (and kill -INT) would not stop following.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            state = run.state()  # read before the output: everything written before a final state gets shown
            position = show_new_output(run, position)
            if state in FINAL_STATES:
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        console.print(f"Stopped following; the run goes on. Again: python -m trainer runs --follow {run.path}")
        return 130
    status = run.read_status()
    if state == "completed":
        console.print(f"[green]Run {escape(run.path.name)} completed[/] ({status.get('steps')} steps); "
                      f"adapter: {escape(str(run.adapter))}")
    elif state == "died":
        console.print(f"[red]Run {escape(run.path.name)} died[/]: its process is gone without recording how it "
                      f"ended (killed, or it failed while loading; see {escape(str(run.log_file))}). "
                      f"Continue it with: {escape(run.resume_command)}")
    elif state == "failed":
        console.print(f"[red]Run {escape(run.path.name)} failed[/]: {escape(str(status.get('error', '?')))}")
        if status.get("hint"):
            console.print(f"[yellow]fix:[/] {escape(status['hint'])}")
    else:
        console.print(f"[yellow]Run {escape(run.path.name)} was stopped[/] at step {status.get('step', '?')}; "
                      f"continue with: {escape(run.resume_command)}")
    return EXIT_CODES[state]


def show_new_output(run: RunDir, position: int | None) -> int:
    """Print the whole lines added since `position` (None: the last few so far); return the new position."""
    if run.log_file.exists():
        data = run.log_file.read_bytes()
        end = data.rfind(b"\n") + 1  # a line still being written is printed once it is whole
        if position is None:
            new = b"".join(data[:end].splitlines(keepends=True)[-TAIL_LINES:])
        else:
            new = data[position:end]
        if new:
            console.out(new.decode("utf-8", errors="replace"), end="", highlight=False)
        return end
    try:
        metrics = run.read_metrics()
    except json.JSONDecodeError:  # a record half written: read it on the next poll
        return position or 0
    start = max(0, len(metrics) - TAIL_LINES) if position is None else position
    for m in metrics[start:]:
        if "loss" in m:
            console.out(f"step {m['step']}  loss {m['loss']:.4f}  {m.get('tokens_per_s') or 0:,.0f} tok/s",
                        highlight=False)
        elif "eval_loss" in m:
            console.out(f"step {m['step']}  eval loss {m['eval_loss']:.4f}", highlight=False)
    return len(metrics)


LIVE_STATES = ("running", "starting", "stopping", "finishing")  # a process that holds the GPU


def holder(runs: list[RunDir]) -> RunDir | None:
    """The run that trains now (or is loading to), if any: one training at a time on this machine's GPU."""
    return next((run for run in runs if run.state() in LIVE_STATES), None)


def stop(run: RunDir) -> int:
    """Ask the run to stop as Ctrl+C does: it finishes its step, saves a checkpoint and records `interrupted`
    (train.callbacks.GracefulStop). A stop request in the run directory, and on Linux and macOS also SIGINT (which
    reaches a run still loading). Returns the pid asked."""
    if run.state() not in ("running", "starting"):  # a second request while it stops would abort it (2x Ctrl+C)
        raise UserError(f"run {run.path.name} is not training (it is {run.state()})", "Nothing to stop.")
    launch, status = run.read_launch(), run.read_status()
    record = launch if launch and is_alive(launch) else status  # a run started in a terminal has no launch record
    run.stop_request.write_text(f"stop requested at {time.strftime('%Y-%m-%d %H:%M:%S')}\n", encoding="utf-8")
    if sys.platform != "win32":  # there os.kill with SIGINT would end a process without a console at once
        os.kill(record["pid"], signal.SIGINT)
    return record["pid"]
