"""`train --detach` and `runs [--follow]` through the real CLI: a background run outlives its terminal, a killed one
is shown as died, following ends with the run's outcome, and Ctrl+C stops only the following."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, Output, assert_user_error, cli_command, long_prompts, run_cli
from trainer.runs import RunDir


def train_args(model: Path, run_dir: Path, steps: int = 3, *extra: str) -> list[str]:
    return ["--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", str(steps),
            "--set", "eval_size=0", "--run-dir", str(run_dir), *extra]


def wait_until(condition, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def launched_pid(run_dir: Path) -> int:
    return json.loads((run_dir / "launch.json").read_text())["pid"]


def table_row(output: str, run_id: str) -> str:
    return next(line for line in output.splitlines() if run_id in line)


def test_runs_lists_the_average_tokens_per_s_of_each_run_not_its_last_step(tmp_path):
    """The speed from the end of the warm-up (step 1 of 5) to the last step: 400 tokens in 8 s, where the first step
    (loading) took 10 s and the last step alone ran at 20 tokens/s."""
    run_dir = tmp_path / "runs" / "averaged"
    run_dir.mkdir(parents=True)
    (run_dir / "status.json").write_text(json.dumps({"state": "completed", "profile": "cpu"}))
    elapsed = [10, 11, 12, 13, 18]
    records = [{"step": k, "max_steps": 5, "loss": 1.0, "tokens": 100 * k, "elapsed_s": elapsed[k - 1],
                "tokens_per_s": 100 * k / elapsed[0] if k == 1 else 100 / (elapsed[k - 1] - elapsed[k - 2])}
               for k in range(1, 6)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert RunDir(run_dir).info()["tokens_per_s"] == 50.0  # what the UI's Runs table shows too
    listing = run_cli("runs", "--runs-root", str(tmp_path / "runs"))
    assert listing.returncode == 0, listing.stdout
    header, row = (re.split("[│┃]", table_row(listing.stdout, text)) for text in ("tokens/s", "averaged"))
    assert row[[cell.strip() for cell in header].index("tokens/s")].strip() == "50", listing.stdout


@pytest.mark.slow
def test_detached_run_outlives_its_terminal_and_follow_reports_completion(shared_tiny_llama, tmp_path,
                                                                          detached_runs):
    runs_root = tmp_path / "runs"
    detached_runs.append(runs_root / "background")
    foreground = run_cli(*train_args(shared_tiny_llama, runs_root / "foreground"))
    assert foreground.returncode == 0, foreground.stdout
    # A "terminal": a shell in its own session that starts the detached run and stays open.
    command, env = cli_command(*train_args(shared_tiny_llama, runs_root / "background", 3, "--detach"))
    screen = tmp_path / "terminal.txt"
    with screen.open("w") as out:
        # SIGHUP as a terminal has it, even when the tests run under nohup (which leaves it ignored for children)
        terminal = subprocess.Popen(["bash", "-c", '"$@"; echo "detach exited $?"; sleep 600', "bash", *command],
                                    cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    run_dir = runs_root / "background"
    try:
        # `--detach` has returned: close the terminal only now, so what it printed is whole.
        wait_until(lambda: "detach exited" in screen.read_text(), 120, "train --detach to return")
        pid = launched_pid(run_dir)
        assert os.getsid(pid) != terminal.pid  # a session of its own, not the terminal's
    finally:
        # Close the terminal: SIGHUP to its whole process group.
        os.killpg(terminal.pid, signal.SIGHUP)
        terminal.wait(timeout=30)
    out = screen.read_text()
    assert "detach exited 0" in out and "Training in the background" in out, out
    assert f"python -m trainer runs --follow {run_dir}" in out
    assert psutil.pid_exists(pid)  # the run goes on

    follow = run_cli("runs", "--follow", str(run_dir), timeout=600)
    assert follow.returncode == 0, follow.stdout
    assert "step 3/3" in follow.stdout and "Run background completed (3 steps)" in follow.stdout
    assert RunDir(run_dir).read_status()["state"] == "completed"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert "Done." in (run_dir / "train.log").read_text()

    listing = run_cli("runs", "--runs-root", str(runs_root))
    assert listing.returncode == 0, listing.stdout
    for run_id in ("background", "foreground"):
        row = table_row(listing.stdout, run_id)
        assert "cpu" in row and "completed" in row and "3/3" in row and "checkpoint-3" in row and "adapter" in row
    narrow = run_cli("runs", "--runs-root", str(runs_root), env={"COLUMNS": "50"})  # ids and checkpoints never wrap
    assert "foreground" in narrow.stdout and "checkpoint-3" in narrow.stdout, narrow.stdout
    # A foreground run has no train.log: following it shows its metrics, and it has already ended.
    metrics = run_cli("runs", "--follow", "foreground", "--runs-root", str(runs_root))
    assert metrics.returncode == 0 and "step 3  loss" in metrics.stdout, metrics.stdout


@pytest.mark.slow
def test_killed_detached_run_is_shown_died_and_ctrl_c_stops_only_the_follower(shared_tiny_llama, tmp_path,
                                                                            detached_runs):
    run_dir = tmp_path / "runs" / "long"
    detached_runs.append(run_dir)
    started = run_cli(*train_args(shared_tiny_llama, run_dir, 500, "--detach"), cwd=tmp_path)
    assert started.returncode == 0, started.stdout
    pid = launched_pid(run_dir)
    wait_until(lambda: RunDir(run_dir).read_status().get("state") == "running", 300, "the run to start")
    assert RunDir(run_dir).read_status()["pid"] == pid

    command, env = cli_command("runs", "--follow", str(run_dir))
    # As a background job of a non-interactive shell starts it: with SIGINT ignored.
    follower = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    output = Output(follower)
    wait_until(lambda: (run_dir / "metrics.jsonl").exists(), 300, "a logged step")
    # It sets its Ctrl+C handler between "Following RUN (... the run goes on)" and the run's output.
    wait_until(lambda: " ".join(str(output).split()).partition("the run goes on)")[2], 120,
               "the follower to print the run's output")
    follower.send_signal(signal.SIGINT)
    follower.wait(timeout=60)
    out = output.whole()
    assert follower.returncode == 130, out
    assert "Stopped following; the run goes on" in out and "Traceback" not in out
    assert RunDir(run_dir).state() == "running" and psutil.pid_exists(pid)

    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: RunDir(run_dir).state() == "died", 30, "the run to be seen dead")
    listing = run_cli("runs", "--runs-root", str(tmp_path / "runs"))
    assert "died" in table_row(listing.stdout, "long"), listing.stdout
    follow = run_cli("runs", "--follow", "long", "--runs-root", str(tmp_path / "runs"))
    assert follow.returncode == 1, follow.stdout
    assert "Run long died" in follow.stdout and f"--resume --run-dir {run_dir}" in follow.stdout


@pytest.mark.slow
def test_a_stop_request_stops_a_detached_run_as_ctrl_c_does(shared_tiny_llama, tmp_path, detached_runs):
    """What the UI's Stop writes, and all of it on Windows (no SIGINT there for a process without a console): no
    signal is sent here. The run finishes its step, checkpoints, is `interrupted`, and the request is gone."""
    run_dir = tmp_path / "runs" / "asked"
    detached_runs.append(run_dir)
    run = RunDir(run_dir)
    started = run_cli(*train_args(shared_tiny_llama, run_dir, 500, "--detach"), cwd=tmp_path)
    assert started.returncode == 0, started.stdout
    pid = launched_pid(run_dir)
    wait_until(lambda: run.metrics.exists(), 300, "a logged step")
    run.stop_request.write_text("stop\n")
    wait_until(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 120,
               "the run to stop")
    status = run.read_status()
    assert status["state"] == "interrupted" and status["step"] < 500, status
    assert (run_dir / "checkpoints" / f"checkpoint-{status['step']}").is_dir()
    assert not run.stop_request.exists()
    assert "Stop requested: saving a checkpoint" in run.log_file.read_text()


def test_runs_bad_input_and_empty_listing(tmp_path):
    assert_user_error(run_cli("runs", "--follow", "nope", "--runs-root", str(tmp_path)),
                      "no run 'nope'", "python -m trainer runs")
    empty = run_cli("runs", "--runs-root", str(tmp_path / "none"))
    assert empty.returncode == 0 and "No runs under" in empty.stdout
    # --detach resolves the settings first: a bad flag is an error now, and nothing is started or created.
    assert_user_error(run_cli("--profile", "cpu", "--set", "batch=4", "--detach", "--run-dir", str(tmp_path / "r")),
                      "unknown setting 'batch'")
    assert not (tmp_path / "r").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("precious")
    assert_user_error(run_cli("--profile", "cpu", "--detach", "--run-dir", str(tmp_path / "full")),
                      "already exists and is not empty")
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["keep.txt"]


@pytest.mark.slow
def test_resume_from_a_checkpoint_in_the_background(shared_tiny_llama, tmp_path, detached_runs):
    run_dir = tmp_path / "run"
    detached_runs.append(run_dir)
    first = run_cli(*train_args(shared_tiny_llama, run_dir, 6, "--set", "save_every_steps=3"))
    assert first.returncode == 0, first.stdout
    started = run_cli("--resume-from", str(run_dir / "checkpoints" / "checkpoint-3"), "--detach", cwd=tmp_path)
    assert started.returncode == 0 and f"runs --follow {run_dir}" in started.stdout, started.stdout
    follow = run_cli("runs", "--follow", str(run_dir), timeout=600)
    assert follow.returncode == 0, follow.stdout
    assert "resuming from checkpoint-3" in (run_dir / "train.log").read_text()
    assert RunDir(run_dir).read_status()["steps"] == 6
    assert [m["step"] for m in RunDir(run_dir).read_metrics()] == list(range(1, 7))


@pytest.mark.slow
def test_a_user_error_after_the_start_is_failed_with_its_cause_not_died(shared_tiny_llama, tmp_path, detached_runs):
    run_dir = tmp_path / "runs" / "long-prompts"
    detached_runs.append(run_dir)
    args = ["--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", str(long_prompts(tmp_path / "d.jsonl")),
            "--max-steps", "3", "--set", "eval_size=0", "--set", "max_seq_length=64", "--run-dir", str(run_dir)]
    assert run_cli(*args, "--dry-run").returncode == 0  # what the UI's Start checks first passes
    started = run_cli(*args, "--detach", cwd=tmp_path)
    assert started.returncode == 0, started.stdout
    wait_until(lambda: RunDir(run_dir).state() in ("failed", "died"), 300, "the run to end")
    status = RunDir(run_dir).read_status()
    assert RunDir(run_dir).state() == "failed", status
    assert status["error"].startswith("only 0 training rows have an answer within max_seq_length=64"), status
    assert "--set max_seq_length=128" in status["hint"] and status["profile"] == "cpu", status
    listing = run_cli("runs", "--runs-root", str(tmp_path / "runs"), env={"COLUMNS": "400"})
    assert "failed: only 0 training rows" in table_row(listing.stdout, "long-prompts"), listing.stdout
    follow = run_cli("runs", "--follow", str(run_dir))
    assert "Run long-prompts failed: only 0 training rows" in " ".join(follow.stdout.split()), follow.stdout
    assert "fix: Raise max_seq_length" in " ".join(follow.stdout.split()), follow.stdout
