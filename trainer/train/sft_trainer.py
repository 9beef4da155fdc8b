"""TRL's SFTTrainer for a run: micro-batches run as passes (and again in smaller ones after running out of GPU
memory), the seeded length-grouped order; checkpoints and token counts as every run's trainer (run_trainer.py).

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
from typing import Any

import torch
from trl import SFTTrainer

from trainer.config import Config
from trainer.console import console
from trainer.errors import UserError
from trainer.train import micro_batches
from trainer.train.run_trainer import RunTrainerMixin
from trainer.train.sampler import length_grouped_sampler


class ExactPacking(logging.Filter):
    """Drops TRL's warning that packed or padding-free rows need a FlashAttention implementation, or conversations may
    attend to each other. Ours do not: transformers builds a block-diagonal mask from the restarting position ids, and
    Unsloth attends within the conversation lengths its collator adds (tests/test_passes.py and
    tests/gpu/test_packing_gpu.py compare each conversation with itself alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "attention implementation is not set to a supported Flash Attention" not in record.getMessage()


EXACT_PACKING = ExactPacking()


class SFTRunTrainer(RunTrainerMixin, SFTTrainer):
    """SFT for a run: the run's checkpoints and token counts (RunTrainerMixin), micro-batches as passes, our sampler."""

    def __init__(self, *args: Any, config: Config, **kwargs: Any) -> None:
        logging.getLogger("trl.trainer.sft_trainer").addFilter(EXACT_PACKING)
        super().__init__(*args, config=config, **kwargs)
        self.max_tokens_per_pass = config.train.max_tokens_per_pass  # lowered for good after running out of memory

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """The micro-batch as passes of at most `max_tokens_per_pass` tokens (micro_batches.py), so only one pass's
        activations are alive at a time. When a pass runs out of GPU memory (another program took some), the
        gradients are put back as they were, and the micro-batch runs again as passes of half the tokens; the smaller
        budget is kept. Only when one row or conversation alone does not fit does training stop, with a checkpoint."""
        saved = [p.grad.clone() if p.grad is not None else None for p in self.trainable]
        while True:
            parts = micro_batches.split(inputs, self.max_tokens_per_pass)
            if len(parts) > 1:
                self.check_split_is_exact(num_items_in_batch)
            try:
                loss = 0
                for number, part in enumerate(parts, 1):
                    # Under DDP only the last pass's backward all-reduces the micro-batch's gradients, once.
                    last = number == len(parts)
                    with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                        loss = loss + super().training_step(model, part, num_items_in_batch)
                return loss
            except torch.OutOfMemoryError:
                pass  # handled below, outside this block: its traceback holds the failed pass's tensors
            if self.args.world_size > 1:
                self.stop_out_of_memory_in_job(inputs)
            for param, grad in zip(self.trainable, saved, strict=True):
                param.grad = grad
            free_gpu_memory()
            budget = max(micro_batches.tokens(part) for part in parts) // 2
            if budget < micro_batches.smallest_pass(inputs) or num_items_in_batch is None:
                self.stop_out_of_memory(model, inputs)
            self.max_tokens_per_pass = budget
            console.print(f"[yellow]Out of GPU memory on a micro-batch of {micro_batches.tokens(inputs)} tokens: "
                          f"running it again, and from now on, as passes of at most {budget} tokens[/]")

    @functools.cached_property
    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def check_split_is_exact(self, num_items_in_batch: Any) -> None:
        if num_items_in_batch is None or not (self.model_accepts_loss_kwargs or self.compute_loss_func):
            raise UserError("train.max_tokens_per_pass needs a loss summed over the step's tokens; this model's loss "
                            "is a mean per micro-batch, which split passes would weigh wrongly",
                            "Set max_tokens_per_pass = 0 (and gradient checkpointing on, if memory runs out).")

    def stop_out_of_memory(self, model: Any, inputs: dict[str, Any]) -> None:
        """A checkpoint of the last completed step, then a UserError with the fixes not already in force."""
        self._save_checkpoint(model, trial=None)
        piece = "conversation" if micro_batches.is_flattened(inputs) else "row"
        fixes = ["close other programs that use the GPU"]
        if self.config.train.gradient_checkpointing == "off":
            fixes.append("turn gradient checkpointing on (--set gradient_checkpointing=unsloth)")
        if self.config.model.max_seq_length > 256:
            fixes.append(f"train shorter rows (--set max_seq_length={self.config.model.max_seq_length // 2})")
        hint = ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]
        raise UserError(f"out of GPU memory: one {piece} of {micro_batches.smallest_pass(inputs)} tokens does not fit "
                        f"in what is free on the GPU (checkpoint-{self.state.global_step} saved)",
                        f"{hint[0].upper()}{hint[1:]}; then continue with: {self.run.resume_command}")

    def stop_out_of_memory_in_job(self, inputs: dict[str, Any]) -> None:
        """Several processes cannot run a step again in smaller passes: the others may already be all-reducing its
        gradients. The job stops; its last checkpoint stays."""
        raise UserError(f"out of GPU memory on rank {self.args.process_index}, on a micro-batch of "
                        f"{micro_batches.tokens(inputs)} tokens",
                        f"Close other programs that use the GPU, or --set max_tokens_per_pass="
                        f"{max(micro_batches.tokens(inputs) // 2, 1)} (passes of fewer tokens); then continue with: "
                        f"{self.run.resume_command} and the same number of processes.")

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length":
            # The rows of an optimizer step of the whole job: several processes train the order one process would,
            # each step's micro-batches of similar lengths on every rank.
            rows = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return length_grouped_sampler(dataset, rows, self.args.seed)
        return super()._get_train_sampler(train_dataset)


def free_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
