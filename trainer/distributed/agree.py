"""The decisions every rank of a job must take together at the end of a step: log, save, stop.

Imported only once training starts (it imports transformers, after the engine).
"""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from trainer.distributed import ranks


class AgreeEachStep(TrainerCallback):
    """After the other callbacks decided, the decision of any rank becomes every rank's. Logging follows a clock
    (train.log_every_s) and a signal may reach one machine only; each of them makes the ranks gather or save
    together, and a rank that did it alone would wait forever for the others. Last in the list of callbacks."""

    def __init__(self, job: ranks.Job) -> None:
        self.job = job

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        flags = [int(control.should_log), int(control.should_save), int(control.should_training_stop)]
        control.should_log, control.should_save, control.should_training_stop = map(bool, ranks.agree(self.job, flags))
