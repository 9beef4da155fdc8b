"""A DPO/ORPO run as a run: resumed after kill -9 with the same per-step losses and rewards, started from an SFT run's
adapter (--from), shown by `trainer data`, and exported, all through the real CLI on a tiny Llama."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, kill_after_checkpoint, losses, run_cli
from trainer.runs import RunDir

pytestmark = pytest.mark.slow  # every test trains through the real CLI, or reads runs trained so

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


def tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


@pytest.fixture(scope="module")
def sft_then_dpo(shared_tiny_llama, tmp_path_factory) -> tuple[Path, Path]:
    """An SFT run of 6 steps, then 4 steps of DPO --from it."""
    root = tmp_path_factory.mktemp("from")
    sft = root / "sft"
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps", "6",
                     "--set", "eval_size=0", "--set", "learning_rate=3e-2", "--run-dir", str(sft))
    assert result.returncode == 0, result.stdout + result.stderr
    dpo = root / "dpo"
    # No --model: the run's base model is taken from it.
    result = run_cli("--profile", "cpu", "--method", "dpo", "--from", str(sft), "--max-steps", "4",
                     "--set", "eval_size=0", "--set", "learning_rate=3e-2", "--run-dir", str(dpo))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Starting from the adapter of {sft.resolve()} (DPO's reference: that adapter, frozen)" in \
        result.stdout.replace("\n", "")
    return sft, dpo


def test_dpo_from_an_sft_run_trains_its_adapter_against_it_as_the_reference(sft_then_dpo, shared_tiny_llama):
    import math
    import tomllib

    sft, dpo = sft_then_dpo
    config = tomllib.loads((dpo / "config.toml").read_text())
    assert config["model"]["from_run"] == str(sft.resolve()) and config["model"]["name"] == str(shared_tiny_llama)
    start, reference, trained = tensors(sft / "adapter"), tensors(dpo / "adapter" / "ref"), tensors(dpo / "adapter")
    assert start.keys() == reference.keys() == trained.keys()
    # The reference is the SFT adapter as it was, to the bit; the trained adapter moved on from it.
    assert all((reference[k] == start[k]).all() for k in start)
    assert any(k.endswith("lora_B.weight") and start[k].abs().max() > 1e-3 for k in start)  # SFT is not the base
    assert any(not (trained[k] == start[k]).all() for k in start)
    # Step 1 scores the policy before any update: it is the SFT model, equal to the reference, so the loss is
    # -log sigmoid(0) = ln 2 and the margin 0. Against the base model (adapter disabled) it would not be.
    first = steps(dpo)[0]
    assert first["loss"] == pytest.approx(math.log(2), abs=1e-6) and first["reward_margin"] == 0
    assert first["reward_chosen"] == first["reward_rejected"] == 0


def test_a_dpo_runs_loss_plot_draws_its_reward_margin_on_a_second_axis(sft_then_dpo):
    from trainer.runs import loss_plot

    sft, dpo = sft_then_dpo
    for path in (sft, dpo):
        assert RunDir(path).plot.stat().st_size > 10_000  # loss.png, written as the run completed
    [axis] = loss_plot.figure(RunDir(sft)).axes  # an SFT run has no margin: one axis
    assert [line.get_label() for line in axis.get_lines()] == ["train loss"]
    loss_axis, margin_axis = loss_plot.figure(RunDir(dpo)).axes
    [margin] = margin_axis.get_lines()
    assert margin.get_label() == "reward margin" and margin_axis.get_ylabel() == "reward margin"
    logged = [(m["step"], m["reward_margin"]) for m in RunDir(dpo).read_metrics() if "reward_margin" in m]
    assert len(logged) == 4 and list(zip(margin.get_xdata(), margin.get_ydata(), strict=True)) == logged
    assert [line.get_label() for line in loss_axis.get_legend().get_lines()] == ["train loss", "reward margin"]


def test_a_dpo_run_exports_merged_and_chats_as_an_sft_run_does(sft_then_dpo):
    """merged/ is the base with the trained adapter (the checkpoint root), not with TRL's reference copy in ref/."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.helpers import chat_session
    from trainer.export import merge

    _, dpo = sft_then_dpo
    result = run_cli("export", str(dpo))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "logits match base + adapter" in result.stdout
    check = json.loads((dpo / "export.json").read_text())["merged_16bit"]
    tokenizer = AutoTokenizer.from_pretrained(dpo / "merged")
    merged = AutoModelForCausalLM.from_pretrained(dpo / "merged", dtype=torch.float32)
    inputs = merge.check_inputs(tokenizer)
    base_name = json.loads((dpo / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]

    def adapted(folder: Path) -> torch.Tensor:
        base = AutoModelForCausalLM.from_pretrained(base_name, dtype=torch.float32)
        return merge.logits(PeftModel.from_pretrained(base, folder).eval(), inputs)

    ours = merge.logits(merged, inputs)
    assert (ours - adapted(dpo / "adapter")).abs().max().item() <= check["saved_tolerance"]
    assert (ours - adapted(dpo / "adapter" / "ref")).abs().max().item() > 3 * check["saved_tolerance"]

    chat = chat_session(str(dpo), "Hello\n/exit\n", "--temperature", "0", "--max-new-tokens", "8")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert f"adapter on {base_name}" in chat.stdout and chat.stdout.count("model>") == 1


def test_bad_from_runs_exit_2_before_anything_is_written(sft_then_dpo, tmp_path):
    sft, _ = sft_then_dpo
    runs = ("--set", f"runs_root={tmp_path / 'runs'}")
    dpo = ("--profile", "cpu", "--method", "dpo", *runs)
    assert_user_error(run_cli(*dpo, "--from", str(tmp_path / "nothing")), "no such run directory")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "status.json").write_text(json.dumps({"state": "failed"}))
    assert_user_error(run_cli(*dpo, "--from", str(unfinished)), "the run has no finished adapter (its state: failed)")
    assert_user_error(run_cli(*dpo, "--from", str(sft), "--model", "other/model"),
                      "that run trained an adapter of", "and this run's model is other/model",
                      "Leave --model out")
    assert_user_error(run_cli(*dpo, "--from", str(sft), "--set", "r=8"),
                      "its adapter has lora.r = 16, and this run asks for 8")
    assert_user_error(run_cli(*dpo, "--from", str(sft), "--resume"), "--from starts a new run")
    assert not (tmp_path / "runs").exists()


def test_an_adapter_only_push_of_a_dpo_run_leaves_the_reference_copy_out(sft_then_dpo, hub, tmp_path):
    from tests.helpers import hub_env

    _, dpo = sft_then_dpo
    assert (dpo / "adapter" / "ref" / "adapter_config.json").is_file()  # TRL's frozen reference, kept locally
    result = run_cli("export", str(dpo), "--push", "alice/dpo-adapter", "--adapter-only", env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    files = hub.repos["alice/dpo-adapter"]["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert not [name for name in files if name.startswith("ref/")], sorted(files)


def test_kto_from_an_sft_run_starts_where_it_ended(sft_then_dpo, tmp_path):
    """KTO --from an SFT run: the SFT adapter is both where training starts and the frozen reference, so the first
    step scores the policy against itself: every log ratio 0, the loss 1 - sigmoid(0) = 0.5, the margin 0."""
    sft, _ = sft_then_dpo
    kto = tmp_path / "kto"
    result = run_cli("--profile", "cpu", "--method", "kto", "--from", str(sft), "--max-steps", "2",
                     "--set", "eval_size=0", "--set", "learning_rate=3e-2", "--run-dir", str(kto))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Starting from the adapter of {sft.resolve()}" in result.stdout.replace("\n", "")
    assert all((tensors(kto / "adapter" / "ref")[k] == v).all() for k, v in tensors(sft / "adapter").items())
    first = steps(kto)[0]
    assert first["loss"] == pytest.approx(0.5, abs=1e-6), first
    assert first.get("reward_margin") in (None, 0), first
