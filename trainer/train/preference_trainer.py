"""TRL's DPOTrainer and ORPOTrainer for a run: its checkpoints and token counts (run_trainer.py); TRL's own data
preparation, collator, sampler and losses, as they are.

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from trl import DPOTrainer
from trl.experimental.orpo import ORPOTrainer

from trainer.errors import UserError
from trainer.train.run_trainer import RunTrainerMixin
from trainer.train.sft_trainer import free_gpu_memory


class OutOfMemoryStops(RunTrainerMixin):
    """A step that runs out of GPU memory stops the run with a checkpoint of the last completed step and the fixes
    (a pair cannot be split into smaller passes as SFT's rows are)."""

    samples = "preference pair(s)"
    each = " a side"  # what max_seq_length cuts: each sequence of a pair
    fewest_per_pass = 1  # KTO's KL term needs two answers a pass

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        try:
            return super().training_step(model, inputs, num_items_in_batch)
        except torch.OutOfMemoryError:
            pass  # handled outside the except block: its traceback holds the failed step's tensors
        free_gpu_memory()
        self._save_checkpoint(model, trial=None)
        train, fixes = self.config.train, ["close other programs that use the GPU"]
        fewest = self.fewest_per_pass
        if train.micro_batch_size > fewest:
            accum = max(1, train.micro_batch_size * train.grad_accum_steps // fewest)
            fixes.append(f"train {fewest} per pass (--set micro_batch_size={fewest}, and grad_accum_steps "
                         f"{accum} for the same number per step)")
        if train.gradient_checkpointing == "off":
            fixes.append("turn gradient checkpointing on (--set gradient_checkpointing=unsloth)")
        if self.config.model.max_seq_length > 256:
            fixes.append(f"train shorter pairs (--set max_seq_length={self.config.model.max_seq_length // 2})")
        hint = ", ".join(fixes[:-1]) + " or " + fixes[-1]
        raise UserError(f"out of GPU memory: {train.micro_batch_size} {self.samples} of up to "
                        f"{self.config.model.max_seq_length} tokens{self.each} do not fit in what is free on the GPU "
                        f"(checkpoint-{self.state.global_step} saved)",
                        f"{hint[0].upper()}{hint[1:]}; then continue with: {self.run.resume_command}")


class DPORunTrainer(OutOfMemoryStops, DPOTrainer):
    """DPO; its batches hold the chosen and the rejected rows, with one attention mask."""


class ORPORunTrainer(OutOfMemoryStops, ORPOTrainer):
    """ORPO; its batches hold the prompt again beside the chosen and rejected rows."""

    def real_tokens(self, inputs: dict[str, Any]) -> Any:
        return inputs["chosen_attention_mask"].sum() + inputs["rejected_attention_mask"].sum()

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
        """Each sequence cut to max_length keeping its start, as DPO's collator cuts (truncation_mode keep_start).
        TRL 1.14.2's ORPO instead cuts both answers of a longer pair to max_length minus the longer answer's length,
        and never the prompt: a pair with a long prompt would train longer than max_length, one with a long answer
        would keep only the answers' first few tokens."""
        limit, self.max_length = self.max_length, sys.maxsize  # TRL's own cut off
        try:
            row = super().tokenize_row(feature, model)
        finally:
            self.max_length = limit
        for key in [k for k in row if k.startswith(("chosen_", "rejected_"))]:
            row[key] = row[key][:limit]
        return row

