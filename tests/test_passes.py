"""Exact packing, and micro-batches run as several passes (max_tokens_per_pass, out-of-memory retries), on the CPU
with the real TRL trainer and collator on a tiny random Llama (the transformers engine)."""

from __future__ import annotations

import re

import pytest
import torch

from tests.helpers import models_for_test, tiny_config
from trainer import data, weights
from trainer.distributed.ranks import Job
from trainer.errors import UserError
from trainer.runs import RunDir
from trainer.train import micro_batches, recipe


def trainer_for(tiny_llama, tmp_path, *settings, max_steps=60):
    config, _ = tiny_config(tiny_llama, tmp_path, "eval_size=0", "dropout=0", *settings, max_steps=max_steps)
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    prepared = data.build_rows(config, data.load_rows(config), tokenizer)
    trainer = recipe.make_trainer(config, Job(), None, models_for_test(config), tokenizer, prepared,
                                  RunDir.create(config))
    trainer.conversations = {tuple(ids) for ids in prepared.train["input_ids"]}  # before TRL packs them
    return trainer


def step(trainer, batch, count):
    """One micro-batch's loss and LoRA gradients, from zero gradients."""
    trainer.model.zero_grad()
    loss = trainer.training_step(trainer.model, dict(batch), num_items_in_batch=count)
    return loss.item(), {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def assert_same(a, b, rel=1e-5):
    assert a[0] == pytest.approx(b[0], rel=rel)
    for name, grad in a[1].items():
        assert torch.allclose(grad, b[1][name], rtol=1e-4, atol=1e-7), name


def packed_batch(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist()
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch and len(starts) >= 4
    return batch, starts + [batch["input_ids"].shape[1]]


def test_packing_gives_each_conversation_the_loss_and_gradients_it_has_alone(tiny_llama, tmp_path, caplog):
    """TRL packs whole conversations into one row with position ids restarting at each one; transformers turns that
    into a block-diagonal mask. Each conversation, run alone, gives the same loss and gradients as inside the row."""
    trainer = trainer_for(tiny_llama, tmp_path, "packing=true", "micro_batch_size=1")
    assert "Flash Attention" not in caplog.text  # TRL's warning of cross-contamination, which this test disproves
    batch, bounds = packed_batch(trainer)
    count = (batch["labels"] != -100).sum()
    packed = step(trainer, batch, count)
    alone = [0.0, None]
    for start, end in zip(bounds, bounds[1:], strict=False):
        part = {key: value[:, start:end] for key, value in batch.items()}
        assert tuple(part["input_ids"][0].tolist()) in trainer.conversations  # a whole one
        assert part["labels"][0, 0] == -100  # nothing is predicted across the boundary
        loss, grads = step(trainer, part, count)
        alone[0] += loss
        alone[1] = grads if alone[1] is None else {n: g + alone[1][n] for n, g in grads.items()}
    assert_same(packed, alone)
    # The comparison can fail: with one position sequence over the whole row, the conversations attend to each other.
    crossed = dict(batch, position_ids=torch.arange(batch["input_ids"].shape[1]).unsqueeze(0))
    assert step(trainer, crossed, count)[0] != pytest.approx(packed[0], rel=1e-3)


def test_a_packed_micro_batch_splits_between_conversations_exactly(tiny_llama, tmp_path):
    trainer = trainer_for(tiny_llama, tmp_path, "packing=true", "micro_batch_size=2")
    batch, bounds = packed_batch(trainer)
    count = (batch["labels"] != -100).sum()
    forwards = []
    trainer.model.register_forward_hook(lambda *_: forwards.append(1))
    whole = step(trainer, batch, count)
    longest = max(end - start for start, end in zip(bounds, bounds[1:], strict=False))
    for budget in (micro_batches.tokens(batch) // 2, longest):
        trainer.max_tokens_per_pass = budget
        forwards.clear()
        assert_same(step(trainer, batch, count), whole)
        assert 1 < len(forwards) < len(bounds)  # several passes, each of whole conversations


def out_of_memory_when(trainer, fails):
    """A stand-in for a full GPU: the forward pass for which `fails(number of the call, tokens)` is true raises the
    error torch raises when CUDA memory runs out."""
    calls = []

    def hook(module, args, kwargs):
        calls.append(1)
        ids = kwargs.get("input_ids", args[0] if args else None)
        if fails(len(calls), ids.numel()):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    return trainer.model.register_forward_pre_hook(hook, with_kwargs=True)


def test_out_of_memory_runs_the_micro_batch_again_in_smaller_passes_with_the_same_gradients(tiny_llama, tmp_path,
                                                                                             capsys):
    trainer = trainer_for(tiny_llama, tmp_path, "padding_free=off", "micro_batch_size=4")
    batch = next(iter(trainer.get_train_dataloader()))
    rows, width = batch["input_ids"].shape
    count = (batch["labels"] != -100).sum()
    whole = step(trainer, batch, count)
    # Two passes of two rows; the second runs out of memory after the first added its gradients.
    trainer.max_tokens_per_pass = 2 * width
    hook = out_of_memory_when(trainer, lambda call, _: call == 2)
    assert_same(step(trainer, batch, count), whole)
    hook.remove()
    assert trainer.max_tokens_per_pass == width  # kept for the rest of the run
    assert f"Out of GPU memory on a micro-batch of {rows * width} tokens" in capsys.readouterr().out
    # A memory limit that fits only one row: halved until it fits.
    trainer.max_tokens_per_pass = 0
    hook = out_of_memory_when(trainer, lambda _, tokens: tokens > width)
    assert_same(step(trainer, batch, count), whole)
    hook.remove()
    assert trainer.max_tokens_per_pass == width


def test_out_of_memory_on_a_single_row_stops_with_a_checkpoint_and_the_fix(tiny_llama, tmp_path):
    trainer = trainer_for(tiny_llama, tmp_path, "padding_free=off", "micro_batch_size=4", "gradient_checkpointing=off",
                          "save_every_steps=2", max_steps=8)
    out_of_memory_when(trainer, lambda call, _: call > 3)  # steps 1-3 fit (one pass each); then nothing does
    with pytest.raises(UserError) as e:
        trainer.train()
    message = e.value.message
    assert re.search(r"out of GPU memory: one row of \d+ tokens does not fit .* \(checkpoint-3 saved\)", message)
    assert "gradient_checkpointing=unsloth" in e.value.hint and "max_seq_length=256" in e.value.hint
    assert f"--resume --run-dir {tmp_path / 'run'}" in e.value.hint
    saved = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert saved == ["checkpoint-2", "checkpoint-3"]  # the last completed step, resumable
    assert all(p.grad is None for p in trainer.model.parameters())  # nothing of the failed step is left
