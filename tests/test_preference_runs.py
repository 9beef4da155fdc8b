"""A DPO/ORPO run as a run: resumed after kill -9 with the same per-step losses and rewards, started from an SFT run's
adapter (--from), shown by `trainer data`, and exported, all through the real CLI on a tiny Llama."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import kill_after_checkpoint, losses, run_cli
from trainer.runs import RunDir

STEPS = 20  # 16 steps make an epoch of the 64 bundled pairs: the resumed part crosses into the second


def dpo_args(model: Path, run_dir: Path, *extra: str, method: str = "dpo") -> list[str]:
    return ["--profile", "cpu", "--model", str(model), "--method", method, "--dataset", "sample",
            "--max-steps", str(STEPS), "--set", "save_every_steps=5", "--set", "eval_size=0",
            "--set", "learning_rate=3e-2", "--run-dir", str(run_dir), *extra]


def steps(run_dir: Path) -> list[dict]:
    """What each logged training step trained (not how fast): loss, learning rate, gradient norm, tokens, rewards."""
    trained = {"step", "loss", "lr", "grad_norm", "tokens", "reward_chosen", "reward_rejected", "reward_margin",
               "reward_accuracy", "log_odds_ratio"}
    return [{k: v for k, v in m.items() if k in trained} for m in RunDir(run_dir).read_metrics() if "loss" in m]


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_kill_9_after_a_checkpoint_then_resume_gives_the_same_losses_and_rewards(method, shared_tiny_llama,
                                                                                  tmp_path):
    reference = tmp_path / "reference"
    result = run_cli(*dpo_args(shared_tiny_llama, reference, method=method))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(losses(reference)) == STEPS

    run_dir = tmp_path / "run"
    kill_after_checkpoint(dpo_args(shared_tiny_llama, run_dir, method=method), run_dir, 10)
    assert not (run_dir / "adapter").exists()
    resumed = run_cli("--resume", "--run-dir", str(run_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoint-10" in resumed.stdout
    # The same pairs in the same order, the same reference and optimizer state: equal to the last bit on the CPU.
    assert losses(run_dir) == losses(reference)
    assert steps(run_dir) == steps(reference)
    assert [m["step"] for m in steps(run_dir)] == list(range(1, STEPS + 1))
    assert RunDir(run_dir).read_status()["state"] == "completed"
