"""DPO and ORPO (train.method) on the CPU path: TRL trains the tokens our SFT rendering trains, the rewards of the
training pairs rise on SmolLM2, and bad preference data or methods are exit 2 through the real CLI."""

import json
import statistics

import pytest

from tests.helpers import assert_user_error, models_for_test, run_cli
from trainer import weights
from trainer.data.render import render_with_mask
from trainer.distributed.ranks import Job
from trainer.profiles import resolve
from trainer.runs import RunDir
from trainer.train import methods, recipe


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_trl_tokenizes_each_pair_as_sft_renders_its_conversation(method, tiny_llama, tmp_path):
    """Prompt and answer as our SFT rendering has them, with the fixed date, one BOS and one end-of-turn token; the
    loss on the answer. Where the prompt's last characters and the answer's first tokenize differently together
    (this vocabulary's "\n\n" and a word become "\n", "\nWord"), TRL trains those tokens with the answer, and SFT
    does not (they start in the prompt)."""
    config, _ = resolve("cpu", [f"method={method}", "eval_size=0"],
                        {"model.name": str(tiny_llama), "train.max_steps": 16, "run.run_dir": str(tmp_path / "run")})
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    trains = methods.of(config)
    pairs = trains.load(config)
    prepared = trains.build(config, pairs, tokenizer)
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
                     "--set", "eval_size=0", "--set", "warmup_steps=2", "--run-dir", str(run_dir))
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


def long_pairs(path):
    """8 pairs: 5 short, 2 with an answer of about 60 words (over 64 tokens with the prompt), 1 with a prompt of
    about 100 words (it alone fills 64 tokens)."""
    rows = [{"prompt": f"What is {i} + {i}?", "chosen": f"{2 * i}.", "rejected": f"{2 * i + 1}."} for i in range(5)]
    rows += [{"prompt": f"Count to {n}.", "chosen": " ".join(str(k) for k in range(n)), "rejected": "No."}
             for n in (60, 70)]
    rows.append({"prompt": "Repeat: " + " ".join(["word"] * 100), "chosen": "word", "rejected": "no"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_pairs_over_max_seq_length_are_cut_keeping_their_start_and_counted_as_trl_trains_them(method, tiny_llama,
                                                                                             tmp_path):
    """What `trainer data` and the training's start say about long pairs is what TRL trains: the sequences of the
    pairs counted as over max_seq_length (and only those) are cut to it keeping their start, by TRL's collator for
    DPO and by ORPORunTrainer for ORPO; the pair whose prompt fills it is not trained."""
    max_length = 64
    dataset = long_pairs(tmp_path / "pairs.jsonl")
    config, _ = resolve("cpu", [f"method={method}", "eval_size=0", f"max_seq_length={max_length}"],
                        {"model.name": str(tiny_llama), "data.dataset": str(dataset), "train.max_steps": 2,
                         "run.run_dir": str(tmp_path / "run")})
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    trains = methods.of(config)
    pairs = trains.load(config)
    prepared = trains.build(config, pairs, tokenizer)
    assert (prepared.stats["train_rows"], prepared.stats["rows_over_max_length"], prepared.stats["rows_dropped"]) \
        == (7, 2, 1)
    trainer = recipe.make_trainer(config, Job(), None, models_for_test(config), tokenizer, prepared,
                                  RunDir(tmp_path / "run"))
    rows = list(trainer.train_dataset)
    assert len(rows) == 7
    full = {}  # each pair's sequences as our SFT rendering has them, uncut
    for prompt, chosen, rejected in zip(pairs.prompts, pairs.chosen, pairs.rejected, strict=True):
        full[prompt[0]["content"]] = [render_with_mask(tokenizer, [*prompt, {"role": "assistant", "content": a}],
                                                       config.data.date_string)[0] for a in (chosen, rejected)]
    if method == "dpo":
        batch = trainer.data_collator(rows)  # [chosen rows, rejected rows], cut by TRL's collator
        trained = [ids[mask.bool()].tolist() for ids, mask in zip(batch["input_ids"], batch["attention_mask"],
                                                                   strict=True)]
        trained = list(zip(trained[:7], trained[7:], strict=True))
    else:
        trained = [(row["chosen_input_ids"], row["rejected_input_ids"]) for row in rows]
    cut = 0
    for sequences in trained:
        candidates = [v for v in full.values() if v[0][:len(sequences[0])] == sequences[0]]
        [(chosen, rejected)] = [v for v in candidates if v[1][:len(sequences[1])] == sequences[1]]
        assert list(sequences) == [chosen[:max_length], rejected[:max_length]]
        cut += max(len(chosen), len(rejected)) > max_length
    assert cut == 2

    result = run_cli("data", "--profile", "cpu", "--method", method, "--model", str(tiny_llama), "--dataset",
                     str(dataset), "--set", "eval_size=0", "--set", f"max_seq_length={max_length}", "-n", "1")
    out = result.stdout.replace("\n", " ")
    assert result.returncode == 0, out
    assert f"8 preference pairs, format standard, for {method.upper()}" in out
    assert "train pairs 7, eval pairs 0" in out
    assert f"Over max_seq_length ({max_length}): 2 pairs truncated (each sequence, prompt + answer, cut to" in out
    assert "1 dropped (the prompt alone fills 64 tokens)" in out
