"""Packed rows on the unsloth engine: does each conversation give the loss and gradients it gives alone?

    python -m tests.gpu.packing_check MODEL_DIR RUN_DIR OUT.json PROFILE SDPA_BACKENDS      (run by test_packing_gpu.py)

Its own process, because unsloth must be imported before trl and transformers. The batch comes from the real
trainer: TRL packs whole conversations into one row, Unsloth's collator names their lengths (packed_seq_lengths),
and its attention keeps them apart. The same conversations are then run one by one, and the row once more with the
boundaries hidden (one position sequence, no lengths): that one must differ, or the comparison proves nothing.
"""

from __future__ import annotations

import json
import sys

import torch
import unsloth  # noqa: F401  (before trainer, trl and transformers: it patches them)

from trainer import data, engines, profiles
from trainer.distributed.ranks import Job
from trainer.engines import attention, policy
from trainer.profiles import resolve
from trainer.runs import RunDir
from trainer.train import recipe


def step(trainer, batch, count):
    trainer.model.zero_grad()
    loss = trainer.training_step(trainer.model, dict(batch), num_items_in_batch=count)
    return loss.item(), torch.cat([p.grad.flatten().float() for p in trainer.trainable])


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def main(model: str, run_dir: str, out: str, profile: str, backends: str) -> None:
    config, _ = resolve(profile, ["engine=unsloth", "packing=true", "padding_free=auto", "micro_batch_size=1",
                                  "grad_accum_steps=1", "gradient_checkpointing=off", "max_tokens_per_pass=0",
                                  "eval_size=0", "dropout=0", f"sdpa_backends={backends}"],
                        {"model.name": model, "data.dataset": "finetome-like", "run.run_dir": run_dir,
                         "train.max_steps": 10})
    config, _ = policy.settle(config, "unsloth")
    gpu = profiles.detect_gpu()
    enabled = attention.restrict(config)
    model_, tokenizer = engines.get("unsloth").load(config, gpu)
    prepared = data.build_rows(config, data.load_rows(config), tokenizer)
    trainer = recipe.make_trainer(config, Job(), gpu, model_, tokenizer, prepared, RunDir.create(config))
    trainer.model.train()
    batches = iter(trainer.get_train_dataloader())
    batch = max((next(batches) for _ in range(8)), key=lambda b: len(b.get("packed_seq_lengths", [])))
    batch = {k: v.to("cuda") for k, v in batch.items()}
    lengths = [int(n) for n in batch["packed_seq_lengths"].tolist()]
    count = (batch["labels"] != -100).sum()
    packed_loss, packed_grads = step(trainer, batch, count)
    alone_loss, alone_grads, start = 0.0, torch.zeros_like(packed_grads), 0
    for length in lengths:
        part = {k: v[:, start:start + length] for k, v in batch.items() if k != "packed_seq_lengths"}
        part["packed_seq_lengths"] = torch.tensor([length], dtype=torch.int32)
        loss, grads = step(trainer, part, count)
        alone_loss, alone_grads, start = alone_loss + loss, alone_grads + grads, start + length
    crossed = {k: v for k, v in batch.items() if k != "packed_seq_lengths"}
    crossed["position_ids"] = torch.arange(batch["input_ids"].shape[1], device="cuda").unsqueeze(0)
    crossed_loss, crossed_grads = step(trainer, crossed, count)
    result = {
        "conversations": lengths, "row_tokens": batch["input_ids"].shape[1], "keys": sorted(batch),
        "packed_loss": packed_loss, "alone_loss": alone_loss, "crossed_loss": crossed_loss,
        "loss_relative_difference": abs(packed_loss - alone_loss) / alone_loss,
        "grad_relative_difference": relative(packed_grads, alone_grads),
        "crossed_loss_relative_difference": abs(crossed_loss - alone_loss) / alone_loss,
        "crossed_grad_relative_difference": relative(crossed_grads, alone_grads),
        "attention": getattr(trainer.model.config, "_attn_implementation", None), "sdpa_backends": list(enabled),
    }
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:6])
