"""TRL's KTOTrainer for a run: its checkpoints and token counts (run_trainer.py), a step out of GPU memory stopped with
a checkpoint (preference_trainer.py); TRL's own data preparation, KL term, collator, sampler and loss, as they are.

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

from trl import KTOTrainer

from trainer.train.preference_trainer import OutOfMemoryStops


class KTORunTrainer(OutOfMemoryStops, KTOTrainer):
    """KTO; its batches hold each answer's sequence (trained; the tokens counted) and the KL term's sequence of the
    same answer after another prompt (scored without a gradient)."""

    samples = "labelled answer(s)"
    each = ""

    @property
    def fewest_per_pass(self) -> int:
        """TRL refuses one answer a pass where its loss has the KL term (methods/kto.py refuses it first)."""
        return 2 if self.calculate_KL else 1
