"""TRL's DPOTrainer and ORPOTrainer for a run: its checkpoints and token counts (run_trainer.py); TRL's own data
preparation, collator, sampler and losses, as they are.

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

import sys
from typing import Any

from trl import DPOTrainer
from trl.experimental.orpo import ORPOTrainer

from trainer.train.run_trainer import RunTrainerMixin


class RunDPOTrainer(RunTrainerMixin, DPOTrainer):
    """DPO; its batches hold the chosen and the rejected rows, with one attention mask."""


class RunORPOTrainer(RunTrainerMixin, ORPOTrainer):
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


TRAINERS = {"dpo": RunDPOTrainer, "orpo": RunORPOTrainer}
