"""DPO and ORPO (train.method) on the CPU path: TRL trains the tokens our SFT rendering trains, the rewards of the
training pairs rise on SmolLM2, and bad preference data or methods are exit 2 through the real CLI."""

import json
import statistics

import pytest

from tests.helpers import assert_user_error, models_for_test, run_cli
from trainer import data, weights
from trainer.data.render import render_with_mask
from trainer.distributed.ranks import Job
from trainer.profiles import resolve
from trainer.runs import RunDir
from trainer.train import recipe


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_trl_tokenizes_each_pair_as_sft_renders_its_conversation(method, tiny_llama, tmp_path):
    """Prompt and answer as our SFT rendering has them, with the fixed date, one BOS and one end-of-turn token; the
    loss on the answer. Where the prompt's last characters and the answer's first tokenize differently together
    (this vocabulary's "\n\n" and a word become "\n", "\nWord"), TRL trains those tokens with the answer, and SFT
    does not (they start in the prompt)."""
    config, _ = resolve("cpu", [f"method={method}", "eval_size=0"],
                        {"model.name": str(tiny_llama), "train.max_steps": 16, "run.run_dir": str(tmp_path / "run")})
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    pairs = data.load(config)
    prepared = data.build(config, pairs, tokenizer)
    trainer = recipe.make_trainer(config, Job(), None, models_for_test(config), tokenizer, prepared,
                                  RunDir(tmp_path / "run"))
    rendered = {}
    for prompt, *answers in zip(pairs.prompts, pairs.chosen, pairs.rejected, strict=True):
        for answer in answers:
            ids, mask = render_with_mask(tokenizer, [*prompt, {"role": "assistant", "content": answer}],
                                         config.data.date_string)
            rendered[tuple(ids)] = mask
    assert "Today Date: 26 Jul 2024" in tokenizer.decode(next(iter(rendered)))
    rows = trainer.train_dataset
    assert len(rows) == 64
    for row in rows:
        for side in ("chosen", "rejected"):
            if method == "dpo":
                ids = row["prompt_ids"] + row[f"{side}_ids"]
                trained = [0] * len(row["prompt_ids"]) + [1] * len(row[f"{side}_ids"])
            else:
                ids = row[f"{side}_input_ids"]
                trained = [int(label != -100) for label in row[f"{side}_labels"]]
            assert ids.count(tokenizer.bos_token_id) == 1 and ids[-1] == tokenizer.eos_token_id
            mask = rendered[tuple(ids)]
            start, trl_start = mask.index(1), trained.index(1)
            assert trained[start:] == mask[start:] and all(trained[trl_start:])
            # the tokens across the boundary: the prompt's closing "\n\n" tokenized apart from or with the answer's
            assert trl_start == start or (start - trl_start <= 2 and tokenizer.decode(ids[trl_start]) == "\n")


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_tuning_raises_the_margin_and_accuracy_of_the_training_pairs(method, smollm2_dir, tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli("--profile", "cpu", "--model", str(smollm2_dir), "--method", method, "--max-steps", "12",
                     "--set", "eval_size=0", "--set", "warmup_steps=2", "--run-dir", str(run_dir),
                     env={"OMP_NUM_THREADS": "1"})
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Data: 64 conversational preference pairs from sample" in out
    assert f"{method.upper()} on 48 train / 0 eval preference pairs" in out
    assert "0 pairs over max_seq_length=512" in out and "margin " in out
    steps = [m for m in RunDir(run_dir).read_metrics() if "loss" in m]
    assert [m["step"] for m in steps] == list(range(1, 13))
    margin, accuracy = [m["reward_margin"] for m in steps], [m["reward_accuracy"] for m in steps]
    # ORPO's rewards are beta x the answers' mean token log-probability: a smaller scale than DPO's
    assert statistics.mean(margin[-4:]) > statistics.mean(margin[:4]) + (0.5 if method == "dpo" else 0.05)
    assert statistics.mean(accuracy[-4:]) > statistics.mean(accuracy[:4]) + 0.2
    if method == "orpo":
        odds = [m["log_odds_ratio"] for m in steps]
        assert statistics.mean(odds[-4:]) > statistics.mean(odds[:4])
    assert all({"reward_chosen", "reward_rejected"} <= m.keys() for m in steps)
    assert all(("log_odds_ratio" in m) == (method == "orpo") for m in steps)
    config = (run_dir / "config.toml").read_text()
    assert f'method = "{method}"' in config and "beta = 0.1" in config
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert RunDir(run_dir).read_status()["state"] == "completed"
    print(f"{method}: margin {statistics.mean(margin[:4]):.3f} -> {statistics.mean(margin[-4:]):.3f}, accuracy "
          f"{statistics.mean(accuracy[:4]):.2f} -> {statistics.mean(accuracy[-4:]):.2f}")


def test_bad_preference_data_and_methods_exit_2_before_anything_is_written(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps({"prompt": "2 + 2?", "chosen": "4", "rejected": "5"}) + "\n"
                    + json.dumps({"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Lima"}) + "\n")
    runs = ("--set", f"runs_root={tmp_path / 'runs'}")
    assert_user_error(run_cli("--profile", "cpu", "--method", "dpo", "--dataset", str(path), *runs, cwd=tmp_path),
                      f"line 2 of {path}", "chosen and rejected are the same answer", "skip_invalid_rows=true")
    assert_user_error(run_cli("--profile", "cpu", "--method", "orpo", "--dataset", "sample", "--format", "sharegpt",
                              *runs, cwd=tmp_path), "data.format = sharegpt is a format of conversations")
    assert_user_error(run_cli("--profile", "cpu", "--method", "bogus", *runs, cwd=tmp_path),
                      "argument --method: invalid choice: 'bogus'")
    assert_user_error(run_cli("--profile", "cpu", "--set", "beta=0", *runs, cwd=tmp_path),
                      "train.beta must be positive")
    assert not (tmp_path / "runs").exists()
