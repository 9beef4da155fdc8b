"""TRL's DPOTrainer and ORPOTrainer for a run: its checkpoints and token counts (run_trainer.py); TRL's own data
preparation, collator, sampler and losses, as they are.

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

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


TRAINERS = {"dpo": RunDPOTrainer, "orpo": RunORPOTrainer}
