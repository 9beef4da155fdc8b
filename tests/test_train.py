"""The real training recipe on a tiny random Llama: TRL's labels, falling loss, and a complete run directory."""

import json
import re
import statistics

import pytest
import torch

from tests.helpers import models_for_test, tiny_config
from trainer import data, weights
from trainer.console import duration
from trainer.data.render import render_with_mask
from trainer.distributed.ranks import Job
from trainer.engines import policy
from trainer.profiles import resolve
from trainer.runs import RunDir
from trainer.train import notes, recipe
from trainer.train.methods import sft


def test_trl_labels_follow_our_masks(tiny_llama, tmp_path):
    config, _ = tiny_config(tiny_llama, tmp_path)
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    model = models_for_test(config)
    examples = data.load_rows(config)
    prepared = data.build_rows(config, examples, tokenizer)
    trainer = recipe.make_trainer(config, Job(), None, model, tokenizer, prepared,
                                  RunDir(tmp_path / "run"))
    batch = next(iter(trainer.get_train_dataloader()))
    rendered = {tuple(ids): mask for ids, mask in (render_with_mask(tokenizer, c) for c in examples.conversations)}
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        real = [i for i, label in enumerate(labels) if label != -100 or ids[i] != tokenizer.pad_token_id]
        ids, labels = ids[: real[-1] + 1], labels[: real[-1] + 1]  # without the batch's padding
        mask = rendered[tuple(ids)]
        assert labels == [t if m else -100 for t, m in zip(ids, mask, strict=True)]


def test_max_tokens_per_pass_runs_a_micro_batch_as_passes_with_the_same_loss_and_gradients(tiny_llama, tmp_path):
    """Above max_tokens_per_pass padded tokens, a micro-batch runs as several forward/backward passes over its rows
    (one pass's activations at a time). The passes add up to the micro-batch's loss and gradients."""
    config, _ = tiny_config(tiny_llama, tmp_path, "eval_size=0", "padding_free=off", "dropout=0",
                            "max_tokens_per_pass=4096")
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    prepared = data.build_rows(config, data.load_rows(config), tokenizer)
    trainer = recipe.make_trainer(config, Job(), None, models_for_test(config), tokenizer, prepared,
                                  RunDir(tmp_path / "run"))
    assert trainer.max_tokens_per_pass == 4096  # from the config; set per case below
    batch = next(iter(trainer.get_train_dataloader()))
    rows, width = batch["input_ids"].shape
    assert rows == 4
    forwards = []
    trainer.model.register_forward_hook(lambda *_: forwards.append(1))
    outcome = {}
    for budget in (0, 2 * width, width):  # one pass; two passes of 2 rows; four passes of 1 row
        trainer.max_tokens_per_pass = budget
        trainer.model.zero_grad()
        forwards.clear()
        loss = trainer.training_step(trainer.model, dict(batch), num_items_in_batch=(batch["labels"] != -100).sum())
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
        outcome[budget] = (loss.item(), grads, len(forwards))
    whole_loss, whole_grads, passes = outcome[0]
    assert passes == 1 and [outcome[b][2] for b in (2 * width, width)] == [2, 4]
    for budget in (2 * width, width):
        loss, grads, _ = outcome[budget]
        assert loss == pytest.approx(whole_loss, rel=1e-5)
        for name, grad in grads.items():
            assert torch.allclose(grad, whole_grads[name], rtol=1e-4, atol=1e-7), name



@pytest.mark.slow
def test_training_run_loss_falls_and_run_dir_is_complete(tiny_llama, tmp_path, capsys):
    config, reason = tiny_config(tiny_llama, tmp_path)
    run = recipe.main(config, Job(), reason)
    # 8 eval rows x 1 pass every 10 steps, against 10 steps x 4 rows x 2 passes (no checkpointing on the CPU)
    out = capsys.readouterr().out
    assert "Eval loss on 8 held-out rows every 10 steps: about 10% of the training's GPU work" in " ".join(out.split())
    # not a terminal: a line per logged step, its share done, elapsed time and ETA with units; the config in few lines
    took = r"\d+ (?:h|min|s)(?: \d+ (?:min|s))?"
    assert re.search(rf"^step 30/60  50%  loss \d+\.\d{{4}} .* elapsed {took}  ETA {took}$", out, re.M), out
    table = out[out.index("Resolved configuration"):out.index("Engine ")]
    assert len(table.splitlines()) < 25 and "train.learning_rate" not in table and "learning_rate=0.03" in table
    metrics = run.read_metrics()
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert [m["step"] for m in metrics if "loss" in m] == list(range(1, 61))
    assert statistics.mean(losses[-5:]) < 0.9 * statistics.mean(losses[:5])
    evals = [m for m in metrics if "eval_loss" in m]
    assert [m["step"] for m in evals] == [0, 10, 20, 30, 40, 50, 60] and evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert all(m["tokens_per_s"] > 0 and m["memory_gb"] > 0 for m in metrics if "loss" in m)
    tokens = [m["tokens"] for m in metrics if "loss" in m]
    assert tokens == sorted(tokens) and tokens[0] > 0
    assert (run.adapter / "adapter_model.safetensors").is_file()
    adapter = json.loads((run.adapter / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and set(adapter["target_modules"]) == set(config.lora.target_modules)
    assert run.plot.stat().st_size > 10_000
    assert run.read_status()["state"] == "completed" and run.read_status()["steps"] == 60
    assert resolve(str(run.config))[0].train.learning_rate == 3e-2
    speed = json.loads(run.benchmark.read_text())  # every run is its own benchmark
    assert speed["numbers"]["steps"] == 60 and speed["numbers"]["tokens_per_s"] > 0
    assert speed["numbers"]["samples_per_s"] > 0 and speed["numbers"]["time_to_first_step_s"] > 0
    assert speed["versions"]["torch"] and speed["micro_batch_size"] == config.train.micro_batch_size


def test_durations_say_their_units():
    """"0:14" reads as 14 seconds to some and 14 minutes to others: seconds under an hour, minutes above."""
    assert [duration(s) for s in (0, 0.4, 14, 59.6, 60, 843, 3599, 3600, 4320, 5556809)] == [
        "0 s", "0 s", "14 s", "1 min", "1 min", "14 min 3 s", "59 min 59 s", "1 h", "1 h 12 min", "1543 h 33 min"]


def test_busy_cores_are_said_with_what_helps_and_free_ones_are_not():
    assert notes.busy_cores_note(2, 0.3, 2) is None
    assert notes.busy_cores_note(2, 3.0, 1) is None  # one thread (OMP_NUM_THREADS=1): nothing to wait for
    note = " ".join(notes.busy_cores_note(2, 3.4, 2).split())
    assert "other programs already keep about 2.0 of this machine's 2 cores busy (load 3.4): torch's 2 threads" in note
    assert "OMP_NUM_THREADS=1" in note
    assert "about 1.0 of this machine's 16 cores" in notes.busy_cores_note(16, 1.0, 16)


def test_without_eval_rows_training_still_completes(tiny_llama, tmp_path):
    config, reason = tiny_config(tiny_llama, tmp_path, "eval_size=0", max_steps=2)
    run = recipe.main(config, Job(), reason)
    assert not any("eval_loss" in m for m in run.read_metrics())
    assert run.read_status()["state"] == "completed"


def test_auto_settings_train_as_the_engine_needs_and_the_run_records_what_they_became(tiny_llama, tmp_path, capsys):
    config, reason = tiny_config(tiny_llama, tmp_path, "eval_size=0", "gradient_checkpointing=auto", "loss_type=auto",
                                 max_steps=2)
    run = recipe.main(config, Job(), reason)
    assert "for it, gradient_checkpointing=on, loss_type=chunked_nll" in " ".join(capsys.readouterr().out.split())
    saved = resolve(str(run.config))[0].train  # a resume trains as this run did, whatever engine imports then
    assert (saved.gradient_checkpointing, saved.loss_type) == ("on", "chunked_nll")
    assert json.loads(run.benchmark.read_text())["gradient_checkpointing"] == "on"
    assert run.read_status()["state"] == "completed"


@pytest.mark.slow
def test_metrics_every_log_every_s_keep_first_checkpoint_and_last_steps_and_every_token(tiny_llama, tmp_path):
    """On a GPU each metrics record waits for the GPU, so records are spaced out by log_every_s. The first step,
    checkpoint steps and the last step are still recorded, with the mean loss since the previous record and every
    token counted (the Trainer's token count is kept on the device between records)."""
    settings = ("eval_size=0", "save_every_steps=4")
    every, reason = tiny_config(tiny_llama, tmp_path / "every", *settings, "log_every_s=0", max_steps=6)
    spaced, _ = tiny_config(tiny_llama, tmp_path / "spaced", *settings, "log_every_s=1000", max_steps=6)
    a = [m for m in recipe.main(every, Job(), reason).read_metrics() if "loss" in m]
    run = recipe.main(spaced, Job(), reason)
    b = [m for m in run.read_metrics() if "loss" in m]
    assert [m["step"] for m in a] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in b] == [1, 4, 6]
    assert [m["tokens"] for m in b] == [a[0]["tokens"], a[3]["tokens"], a[5]["tokens"]]
    assert b[1]["loss"] == pytest.approx(statistics.mean(m["loss"] for m in a[1:4]), rel=1e-4)
    assert b[2]["loss"] == pytest.approx(statistics.mean(m["loss"] for m in a[4:6]), rel=1e-4)
    speed = json.loads(run.benchmark.read_text())["numbers"]
    assert speed["steps"] == 6 and speed["tokens_per_s"] > 0


def test_eval_share_counts_the_conversations_of_a_packed_row():
    """A packed training row of 2048 tokens holds 4 conversations of 512: evaluating 64 conversations every 50 steps
    of 2 x 2 rows, 2 passes each (no checkpointing on unsloth), is 64 / (50 x 4 x 4 x 2) of the work; 3 passes each
    with checkpointing (the transformers engine)."""
    packed, _ = policy.settle(resolve("rtx3070")[0], "unsloth")
    assert packed.train.packing and packed.model.max_seq_length == 2048
    assert sft.eval_share(packed, 64, 512) == pytest.approx(64 / (50 * 4 * 4 * 2))
    unpacked, _ = policy.settle(resolve("rtx3070", ["packing=false"])[0], "unsloth")
    assert sft.eval_share(unpacked, 64, 512) == pytest.approx(64 / (50 * 4 * 2))
    checkpointed, _ = policy.settle(resolve("rtx3070")[0], "transformers")
    assert sft.eval_share(checkpointed, 64, 512) == pytest.approx(64 / (50 * 4 * 4 * 3))


@pytest.mark.parametrize("profile", ["rtx2060s", "rtx3070", "quadro-rtx5000"])
def test_gpu_profiles_settle_checkpointing_and_loss_per_engine_and_keep_what_is_set(profile):
    """Unsloth trains the GPU profiles without checkpointing and with its own loss; plain transformers (where unsloth
    does not import) needs checkpointing and the chunked loss to fit the card. A value the user sets stays."""
    config, _ = resolve(profile)
    unsloth, said = policy.settle(config, "unsloth")
    assert (unsloth.train.gradient_checkpointing, unsloth.train.loss_type) == ("off", "nll")
    assert said == "gradient_checkpointing=off, loss_type=nll, trained_positions_only=on"
    transformers, said = policy.settle(config, "transformers")
    assert (transformers.train.gradient_checkpointing, transformers.train.loss_type) == ("on", "chunked_nll")
    assert said == "gradient_checkpointing=on, loss_type=chunked_nll, trained_positions_only=off"
    assert transformers.train.packing == config.train.packing and transformers.model == config.model
    kept, said = policy.settle(resolve(profile, ["gradient_checkpointing=off"])[0], "transformers")
    assert (kept.train.gradient_checkpointing, kept.train.loss_type, said) == (
        "off", "chunked_nll", "loss_type=chunked_nll, trained_positions_only=off")
    cpu, _ = resolve("cpu")
    assert policy.settle(cpu, "transformers") == (cpu, "")


def test_group_by_length_reads_the_lengths_in_one_go_and_orders_by_the_seed_and_epoch_alone():
    import datasets
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from trainer.train.sampler import length_grouped_sampler

    rows = [list(range(n)) for n in (5, 90, 12, 40, 3, 77, 64, 8, 25, 50, 1, 33, 70, 2, 18, 44)]
    dataset = datasets.Dataset.from_dict({"input_ids": rows, "length": [len(r) for r in rows]})
    sampler = length_grouped_sampler(dataset, 4, seed=3)
    torch.manual_seed(0)
    ours = list(sampler)
    torch.manual_seed(1)  # another state of the global generator (a resumed run's): the same order
    assert list(sampler) == ours and sorted(ours) == list(range(len(rows)))
    # The Trainer's grouping (the longest row first, similar lengths in each step), shuffled by the seed.
    theirs = LengthGroupedSampler(4, dataset=dataset.remove_columns("length"), model_input_name="input_ids",
                                  generator=torch.Generator().manual_seed(3))
    assert ours == list(theirs)
    sampler.set_epoch(1)
    assert list(sampler) != ours  # each epoch its own order
    assert list(length_grouped_sampler(dataset, 4, seed=4)) != ours
    # TRL's packed rows have no length column: the token lists' lengths, from Arrow.
    packed = dataset.remove_columns("length").select(range(len(rows) - 1, -1, -1))
    theirs = LengthGroupedSampler(4, dataset=packed, model_input_name="input_ids",
                                  generator=torch.Generator().manual_seed(3))
    assert list(length_grouped_sampler(packed, 4, seed=3)) == list(theirs)
