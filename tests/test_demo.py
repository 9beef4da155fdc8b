"""The README's main job on a CPU machine: `python -m trainer` with no arguments, end to end."""

import statistics

import pytest

from tests.helpers import run_cli
from trainer.runs import RunDir


@pytest.mark.slow
def test_offline_demo_trains_smollm2_and_writes_an_adapter(tmp_path, smollm2_dir):
    result = run_cli(cwd=tmp_path, timeout=900)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Profile cpu: no CUDA GPU detected" in out and "Engine transformers" in out
    [path] = (tmp_path / "runs").iterdir()
    run = RunDir(path)
    metrics = run.read_metrics()
    losses = [m["loss"] for m in metrics if "loss" in m]
    evals = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert len(losses) == 40
    assert statistics.mean(losses[-10:]) < 0.8 * statistics.mean(losses[:10])
    assert evals[-1] < 0.8 * evals[0]  # eval loss before training vs after
    assert (run.adapter / "adapter_model.safetensors").is_file() and run.plot.is_file()
    assert run.read_status()["state"] == "completed"
    # The result chats offline: the adapter on SmolLM2, in the terminal.
    from tests.helpers import chat_session

    chat = chat_session(str(path), "What is 12 + 30?\n", "--temperature", "0", "--max-new-tokens", "40")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    reply = chat.stdout.split("model>", 1)[1].split("you>", 1)[0].strip()
    assert reply, chat.stdout
    print(f"demo: train loss {losses[0]:.3f} -> {losses[-1]:.3f}, eval {evals[0]:.3f} -> {evals[-1]:.3f}, "
          f"{metrics[-1]['elapsed_s']:.0f}s of training")
