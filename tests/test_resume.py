"""Checkpoint and resume through the real CLI: SIGINT, SIGTERM, SIGKILL, damaged checkpoints, a full disk."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests import helpers
from tests.helpers import ROOT, cli_command, logged_steps, losses, run_cli, start, wait_for
from trainer.runs import RunDir, checkpoints

STEPS = 24


def args(model: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", str(STEPS),
            "--set", "save_every_steps=5", "--set", "eval_size=0", "--set", "learning_rate=3e-2",
            "--run-dir", str(run_dir), *extra]


@pytest.fixture(scope="module")
def reference(shared_tiny_llama, tmp_path_factory) -> list[float]:
    """The per-step losses of the same run, never interrupted."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    result = run_cli(*args(shared_tiny_llama, run_dir))
    assert result.returncode == 0, result.stdout
    assert len(losses(run_dir)) == STEPS
    return losses(run_dir)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_then_resume_is_bit_exact(sig, code, shared_tiny_llama, reference, tmp_path):
    run_dir = tmp_path / "run"
    process = start(*args(shared_tiny_llama, run_dir))
    wait_for(lambda: logged_steps(run_dir) >= 3, process)
    process.send_signal(sig)
    out = process.communicate(timeout=120)[0]
    assert process.returncode == code, out
    status = RunDir(run_dir).read_status()
    stopped = status["step"]
    assert status["state"] == "interrupted" and 3 <= stopped < STEPS
    assert checkpoints.problem(run_dir / "checkpoints" / f"checkpoint-{stopped}") is None  # saved at the stop
    assert f"python -m trainer --resume --run-dir {run_dir}" in out
    resumed = run_cli("--resume", "--run-dir", str(run_dir))
    assert resumed.returncode == 0, resumed.stdout
    assert f"resuming from checkpoint-{stopped}" in resumed.stdout
    # Same data order, RNG and optimizer state: on the CPU the losses are identical to the last bit.
    assert losses(run_dir) == reference
    assert [m["step"] for m in RunDir(run_dir).read_metrics()] == list(range(1, STEPS + 1))
    assert RunDir(run_dir).read_status()["state"] == "completed"


def kill_after_checkpoint(model: Path, run_dir: Path, step: int) -> None:
    """Start a run and SIGKILL it as soon as checkpoint-<step> exists."""
    helpers.kill_after_checkpoint(args(model, run_dir), run_dir, step)


@pytest.mark.slow
def test_kill_9_right_after_a_checkpoint_loses_nothing_before_it(shared_tiny_llama, reference, tmp_path):
    run_dir = tmp_path / "run"
    kill_after_checkpoint(shared_tiny_llama, run_dir, 10)
    assert not (run_dir / "adapter").exists()  # no result left as if it were one
    resumed = run_cli("--resume-from", str(run_dir / "checkpoints" / "checkpoint-10"))
    assert resumed.returncode == 0, resumed.stdout
    assert "resuming from checkpoint-10" in resumed.stdout
    assert losses(run_dir) == reference
    # Finished runs say so.
    again = run_cli("--resume", "--run-dir", str(run_dir))
    assert again.returncode == 0 and "already finished (24 steps); nothing to resume" in again.stdout


@pytest.mark.slow
def test_resume_skips_a_damaged_checkpoint_and_refuses_changed_settings(shared_tiny_llama, reference, tmp_path):
    run_dir = tmp_path / "run"
    kill_after_checkpoint(shared_tiny_llama, run_dir, 10)
    for stale in (run_dir / "checkpoints").glob("checkpoint-*"):
        if checkpoints.step_of(stale) > 10:
            shutil.rmtree(stale)
    damaged = run_dir / "checkpoints" / "checkpoint-10" / "adapter_model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    changed = run_cli("--resume", "--run-dir", str(run_dir), "--set", "grad_accum_steps=2")
    assert changed.returncode == 2 and "Traceback" not in changed.stdout
    assert "effective batch (micro_batch_size x grad_accum_steps): 4 -> 8" in changed.stdout
    assert "resume_force=true" in changed.stdout
    resumed = run_cli("--resume", "--run-dir", str(run_dir))
    assert resumed.returncode == 0, resumed.stdout
    assert f"skipping {run_dir / 'checkpoints' / 'checkpoint-10'}: adapter_model.safetensors is damaged" in \
        resumed.stdout.replace("\n", "")
    assert "resuming from checkpoint-5" in resumed.stdout
    assert losses(run_dir) == reference


@pytest.mark.slow
def test_second_ctrl_c_aborts_at_once(shared_tiny_llama, tmp_path):
    run_dir = tmp_path / "run"
    # 20 micro-batches per optimizer step (seconds): the second Ctrl+C lands while the first waits for the step to end.
    process = start(*args(shared_tiny_llama, run_dir, "--set", "grad_accum_steps=20"))
    output = helpers.Output(process)
    wait_for(lambda: logged_steps(run_dir) >= 1, process)
    process.send_signal(signal.SIGINT)
    # the first is handled once it says so: the second then finds the run stopping
    wait_for(lambda: "Ctrl+C again aborts at once" in str(output), process, 120)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    out = output.whole()
    assert process.returncode == 130, out
    assert "Ctrl+C again aborts at once" in out and "Aborted" in out and "Stopped at step" not in out
    status = RunDir(run_dir).read_status()
    assert status["state"] == "interrupted" and "step" not in status
    assert not (run_dir / "checkpoints").exists() or not any((run_dir / "checkpoints").iterdir())


def test_resume_without_anything_to_resume(tmp_path):
    result = run_cli("--resume", "--profile", "cpu", "--set", f"runs_root={tmp_path}")
    assert result.returncode == 2 and f"no run of profile cpu under {tmp_path}/ to resume" in result.stdout
    result = run_cli("--resume-from", str(tmp_path / "checkpoint-3"))
    assert result.returncode == 2 and "cannot resume from" in result.stdout


def can_mount_tmpfs() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs unshare and tmpfs mounts in a user namespace")
@pytest.mark.parametrize("size, failing, kept", [
    ("6m", "checkpoint-10", "checkpoint-5"),  # one checkpoint (about 4 MB) fits: the second is refused up front
    ("2m", "checkpoint-5", None),  # the first one runs out of space while being written
])
def test_full_disk_keeps_the_previous_checkpoint_and_says_how_much_space_is_needed(size, failing, kept,
                                                                                  shared_tiny_llama, tmp_path):
    run_dir, snapshot = tmp_path / "run", tmp_path / "snapshot"
    run_dir.mkdir()
    command, env = cli_command(*args(shared_tiny_llama, run_dir))
    # The run directory is a small real filesystem, mounted in a private namespace for this one command.
    script = (f"mount -t tmpfs -o size={size} tmpfs {run_dir} && {' '.join(command)}; code=$?; "
              f"cp -a {run_dir} {snapshot}; exit $code")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    out = result.stdout.replace("\n", "")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in out and f"the disk is full while writing {failing}" in out
    assert re.search(r"it needs about [1-9]\d* MB, \d+ MB are free", out), out
    done = sorted(p.name for p in (snapshot / "checkpoints").iterdir())
    assert done == ([kept] if kept else [])  # nothing partial, no staging folder
    if kept:
        assert checkpoints.problem(snapshot / "checkpoints" / kept) is None
    assert not (snapshot / "adapter").exists()
    assert json.loads((snapshot / "status.json").read_text())["state"] == "failed"


@pytest.mark.slow
def test_an_epoch_on_the_real_llama_tokenizer_tokenizes_once_for_every_start_and_resume(real_llama, tmp_path):
    """End to end on the real Llama 3.2 tokenizer: a compressed file with a byte-order mark and a typed control token
    trains one epoch; the second start and a resume read the tokens from the cache and lose nothing."""
    import gzip

    rows = [{"messages": [{"role": "user", "content": f"What is {i} + {i}?"},
                          {"role": "assistant", "content": f"{i} + {i} = {2 * i}."}]} for i in range(39)]
    rows.append({"messages": [{"role": "user", "content": "Spell <|eot_id|>."},
                              {"role": "assistant", "content": "<|eot_id|> ends a turn."}]})
    data = tmp_path / "math.jsonl.gz"
    data.write_bytes(gzip.compress(("\ufeff" + "".join(json.dumps(r) + "\n" for r in rows)).encode()))
    cache = tmp_path / "cache"
    common = ["--profile", "cpu", "--model", str(real_llama), "--dataset", str(data), "--epochs", "1",
              "--set", "save_every_steps=4", "--set", "eval_every_steps=4", "--set", "learning_rate=3e-2",
              "--set", "control_tokens_as_text=true", "--set", f"cache_dir={cache}"]
    first = run_cli(*common, "--run-dir", str(tmp_path / "first"))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Tokenizing 40 rows once; kept in" in first.stdout
    assert "1 rows spell a control token of the tokenizer in their text (such as <|eot_id|>): encoded as plain " \
           "text" in first.stdout
    assert "Tokenized 32 train / 8 eval rows" in first.stdout  # the cpu profile's 16, at most a fifth: 8 steps of 4
    reference = losses(tmp_path / "first")
    assert len(reference) == 8

    second = run_cli(*common, "--run-dir", str(tmp_path / "second"))
    assert second.returncode == 0, second.stdout + second.stderr
    assert "Tokenized rows from the cache:" in second.stdout and "Tokenizing 40 rows" not in second.stdout
    assert losses(tmp_path / "second") == reference

    checkpoint = tmp_path / "first" / "checkpoints" / "checkpoint-4"
    resumed = run_cli(*common, "--resume-from", str(checkpoint))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Tokenized rows from the cache:" in resumed.stdout
    assert losses(tmp_path / "first") == reference  # steps 5-8 again, the same to the last bit
    [entry] = (cache / "tokenized").iterdir()
    assert json.loads((entry / "info.json").read_text())["rows"] == 40
