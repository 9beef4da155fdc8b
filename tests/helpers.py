"""Helpers the tests share: the real CLI in a subprocess, waiting for a run, the tiny training setups. Tests import
these from here, never from another test file."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = os.environ.get("TRAINER_CACHE_DIR") or str(Path.home() / ".cache" / "trainer")


def cli_command(*args: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "TRAINER_CACHE_DIR": CACHE_DIR, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return [sys.executable, "-m", "trainer", *args], env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    command, base_env = cli_command(*args)
    return subprocess.run(command, cwd=cwd or ROOT, env={**base_env, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def start(*cli_args: str) -> subprocess.Popen:
    """The real CLI in a subprocess that runs on while the test watches it."""
    command, env = cli_command(*cli_args)
    # Ctrl+C reaches it as in a terminal, also where this test session runs as a background job (a shell starts those
    # with SIGINT ignored, and Python keeps an ignored SIGINT ignored).
    reset = (lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if os.name == "posix" else None
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=reset)


def wait_for(condition, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited early:\n{process.stdout.read()}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class Output:
    """A process's output (stdout, with stderr where it goes there), read line by line as it comes by a thread of its
    own: a test waits on a line it expects without blocking on the pipe, then reads the whole once it has ended."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self.read, args=(process.stdout,), daemon=True)
        self.reader.start()

    def read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def __str__(self) -> str:
        return "".join(self.lines)

    def whole(self, timeout: float = 60) -> str:
        """Everything the process printed (call once it has ended and closed its output)."""
        self.reader.join(timeout)
        assert not self.reader.is_alive(), "the output did not end"
        return str(self)


def chat_session(target: str, typed: str, *options: str) -> subprocess.CompletedProcess:
    """`trainer chat` in a subprocess, with `typed` as what the user types."""
    command, env = cli_command("chat", target, *options)
    return subprocess.run(command, input=typed, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def assert_user_error(result, *fragments):
    """Exit 2, no traceback, and each fragment in what was said, wherever the terminal's width wrapped its lines."""
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "Traceback" not in out
    said = " ".join(out.split())
    for fragment in fragments:
        assert " ".join(fragment.split()) in said, out


def long_prompts(path: Path, rows: int = 8) -> Path:
    """Rows the dry run reads fine whose answers all lie beyond max_seq_length=64: the run fails once tokenized."""
    row = {"messages": [{"role": "user", "content": "Tell me about this. " * 100},
                        {"role": "assistant", "content": "It is long."}]}
    path.write_text("".join(json.dumps(row) + "\n" for _ in range(rows)))
    return path


def losses(run_dir: Path) -> list[float]:
    """The training loss of every logged step of a run, in order."""
    from trainer.runs import RunDir

    return [m["loss"] for m in RunDir(run_dir).read_metrics() if "loss" in m]


def logged_steps(run_dir: Path) -> int:
    metrics = run_dir / "metrics.jsonl"
    return len(metrics.read_text().splitlines()) if metrics.exists() else 0


def kill_after_checkpoint(cli_args: list[str], run_dir: Path, step: int, timeout: float = 300) -> None:
    """Start a run of `cli_args` and SIGKILL it as soon as its checkpoint-<step> exists."""
    process = start(*cli_args)
    wait_for(lambda: (run_dir / "checkpoints" / f"checkpoint-{step}").is_dir(), process, timeout)
    process.kill()
    process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_config(tiny_llama, tmp_path, *settings, max_steps=60):
    """The CPU profile on a tiny random Llama, learning fast, evaluated every 10 steps: (config, reason)."""
    from trainer.profiles import resolve

    return resolve("cpu", ["learning_rate=3e-2", "warmup_steps=2", "eval_every_steps=10", "eval_size=8",
                           "micro_batch_size=4", *settings],
                   {"model.name": str(tiny_llama), "train.max_steps": max_steps,
                    "run.run_dir": str(tmp_path / "run")})


def models_for_test(config):
    """The transformers engine's LoRA model for `config` on the CPU."""
    from trainer.engines import transformers_engine

    return transformers_engine.load(config, None)[0]


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"  # screenshots of the UI, looked at by people
# Headless, and quiet on a machine without internet (no background connections, no component updates).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]


def serve_ui(*args: str) -> tuple[subprocess.Popen, str]:
    """`trainer ui ARGS` on a free port of 127.0.0.1, once it answers: the process and its URL."""
    port = free_port()
    command, env = cli_command("ui", *args, "--port", str(port))
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        assert server.poll() is None, server.stdout.read()
        try:
            urllib.request.urlopen(url, timeout=2)
            return server, url
        except OSError:
            assert time.monotonic() < deadline, "the UI did not start"
            time.sleep(0.5)


def wait_until(page, check, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        page.wait_for_timeout(250)


HUB_TOKEN = "hf_testTOKENabcdefghijklmnopqrstuvwx"  # what the local Hub (tests/hub_server.py) accepts; never written


def hub_env(hub, tmp_path: Path, token: str | None = HUB_TOKEN) -> dict[str, str]:
    """The environment that sends huggingface_hub to the `hub` fixture's local server, with `token`."""
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf-home"),
           "HF_HUB_DISABLE_TELEMETRY": "1"}
    if token is not None:
        env["HF_TOKEN"] = token
    return env
