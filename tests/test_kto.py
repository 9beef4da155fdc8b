"""KTO (train.method kto) as a run, through the real CLI on a tiny Llama: trained with TRL's KTOTrainer, resumed after
kill -9 with the same per-step losses, exported; `trainer data` shows the answers and their labels; settings KTO cannot
train with and files of one label are exit 2 before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, kill_after_checkpoint, losses, run_cli
from trainer.errors import UserError
from trainer.profiles import resolve
from trainer.runs import RunDir
from trainer.train import methods

FILES = Path(__file__).parent / "data" / "files"
STEPS = 6


def kto_args(model: Path, run_dir: Path) -> list[str]:
    return ["--profile", "cpu", "--model", str(model), "--method", "kto", "--dataset", "sample",
            "--max-steps", str(STEPS), "--set", "save_every_steps=3", "--set", "eval_size=0",
            "--set", "learning_rate=3e-2", "--run-dir", str(run_dir)]


def steps(run_dir: Path) -> list[dict]:
    trained = {"step", "loss", "lr", "grad_norm", "tokens", "reward_chosen", "reward_rejected", "reward_margin", "kl"}
    return [{k: v for k, v in m.items() if k in trained} for m in RunDir(run_dir).read_metrics() if "loss" in m]


@pytest.mark.slow
def test_kto_trains_resumes_after_kill_9_with_the_same_losses_and_exports(shared_tiny_llama, tmp_path):
    reference = tmp_path / "reference"
    result = run_cli(*kto_args(shared_tiny_llama, reference))
    out = result.stdout.replace("\n", " ")
    assert result.returncode == 0, result.stdout + result.stderr
    # the bundled 64 pairs, unpaired; max_steps 6 x 4 answers a step
    assert "Data: 128 conversational (pairs, unpaired) labelled answers from sample" in out
    assert "trains at most 24 of the 128 train answers (4 a step)" in out
    logged = steps(reference)
    assert [m["step"] for m in logged] == list(range(1, STEPS + 1))
    # Step 1 scores the policy before any update: it is the reference (a fresh adapter's frozen copy), so every
    # answer's loss is 1 - sigmoid(0), whatever its label.
    assert logged[0]["loss"] == 0.5 and logged[0]["reward_margin"] == 0
    assert logged[-1]["loss"] != 0.5 and all("kl" in m for m in logged)
    assert (reference / "adapter" / "adapter_model.safetensors").is_file()
    assert (reference / "adapter" / "ref" / "adapter_model.safetensors").is_file()  # TRL's frozen reference
    assert 'method = "kto"' in (reference / "config.toml").read_text()

    run_dir = tmp_path / "run"
    kill_after_checkpoint(kto_args(shared_tiny_llama, run_dir), run_dir, 3)
    assert not (run_dir / "adapter").exists()
    resumed = run_cli("--resume", "--run-dir", str(run_dir))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoint-3" in resumed.stdout
    # the same answers in the same order, the same KL pairing, reference and optimizer state: equal to the last bit
    assert losses(run_dir) == losses(reference)
    assert steps(run_dir) == logged
    assert RunDir(run_dir).read_status()["state"] == "completed"

    exported = run_cli("export", str(run_dir))
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert "logits match base + adapter" in exported.stdout


@pytest.mark.slow
def test_data_shows_the_answers_their_labels_and_what_is_too_few(shared_tiny_llama):
    result = run_cli("data", "--profile", "cpu", "--method", "kto", "--model", str(shared_tiny_llama), "--dataset",
                     str(FILES / "llamafactory_kto_en_demo.json"), "-n", "1")
    out = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 labelled answers (2 marked true, 1 false), format messages, for KTO" in out
    assert "Fields read: messages, label; not used: none" in out
    assert "train answer 1, marked" in out
    assert "train answers 3 (2 true, 1 false), eval answers 0" in out
    assert "Too few answers to train on:" in out and "has 3 labelled answers to train on" in out


def test_one_label_and_one_answer_a_pass_are_exit_2_before_anything_is_written(tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_text("".join(f'{{"prompt": "{i} + {i}?", "completion": "{2 * i}", "label": true}}\n' for i in range(8)))
    runs = ("--set", f"runs_root={tmp_path / 'runs'}")
    assert_user_error(run_cli("--profile", "cpu", "--method", "kto", "--dataset", str(path), *runs, cwd=tmp_path),
                      f"every answer in {path} is marked true (8 rows)", "needs both",
                      "leave out --method kto and remove the label field")
    assert_user_error(run_cli("--profile", "cpu", "--dataset", str(FILES / "trl_unpaired_standard.jsonl"), *runs,
                              cwd=tmp_path), "is KTO data", "SFT would train the bad answers", "Add --method kto")
    assert not (tmp_path / "runs").exists()
    config, _ = resolve("cpu", ["method=kto", "micro_batch_size=1", "grad_accum_steps=8"])
    with pytest.raises(UserError) as e:
        methods.of(config).load(config)
    assert "it needs at least 2 answers a pass" in e.value.message
    assert e.value.hint == "Use --set micro_batch_size=2 --set grad_accum_steps=4 (8 answers a step)."


def test_a_profiles_preference_settings_train_twice_the_answers_a_pass_in_half_the_accumulation():
    dpo, _ = resolve("rtx3070", ["method=dpo"], fit=False)
    kto, _ = resolve("rtx3070", ["method=kto"], fit=False)
    assert (dpo.train.micro_batch_size, dpo.train.grad_accum_steps) == (1, 8)
    assert (kto.train.micro_batch_size, kto.train.grad_accum_steps) == (2, 4)
    assert kto.model.max_seq_length == dpo.model.max_seq_length == 1024


def test_train_rows_of_one_label_are_said_with_the_fix(shared_tiny_llama, tmp_path, capsys):
    """A file of both labels whose few rows that train (max_steps) hold one: a warning, not a refusal (TRL trains such
    batches; bench's few steps on generated pairs met it)."""
    from trainer import weights
    from trainer.data import stage

    path = tmp_path / "kto.jsonl"

    def write(labels: list[bool]) -> None:
        path.write_text("".join(json.dumps({"prompt": f"{i} + {i}?", "completion": str(2 * i), "label": label}) + "\n"
                                for i, label in enumerate(labels)))

    def built(steps: int) -> tuple[dict, str]:
        config, _ = resolve("cpu", ["method=kto", "micro_batch_size=2", "grad_accum_steps=1", f"max_steps={steps}",
                                    f"model.name={shared_tiny_llama}", f"dataset={path}"])
        data = methods.of(config).load(config)
        tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
        capsys.readouterr()
        return stage.build_unpaired(config, data, tokenizer).stats, " ".join(capsys.readouterr().out.split())

    write([i % 2 == 0 for i in range(8)])
    config, _ = resolve("cpu", ["method=kto", "micro_batch_size=2", "grad_accum_steps=1", "max_steps=1",
                                f"dataset={path}"])
    first = stage.split(methods.of(config).load(config), config).train  # the 2 rows one step trains (seeded)
    write([i in first for i in range(8)])  # those two true, the other six false: the same order
    stats, out = built(1)
    assert (stats["desirable"], stats["undesirable"]) == (2, 0)
    assert (f"The 2 answers that train are all marked true (2 of the 8 in {path} are true): this run learns nothing "
            "from the other kind (--set max_steps=0 trains every row)") in out
    stats, out = built(0)
    assert (stats["desirable"], stats["undesirable"]) == (2, 6) and "all marked" not in out
