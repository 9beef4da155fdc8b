"""The run's spill watch: each metrics record goes through the slow-step rule (runs/spill.py); the first time it
fires, the console says what happened and the fix, and metrics.jsonl records it (the UI shows it beside the progress).
"""

from __future__ import annotations

import sys
from typing import Any

from rich.markup import escape

from trainer.console import console
from trainer.runs import RunDir, spill

# The records the rule looks back on: at one record per 2 s (log_every_s) about half an hour of pace for the median,
# and the rule's cost per record stays about a millisecond however long the run (a spill sets in at once, when the
# memory stops fitting, so an older baseline adds nothing).
HISTORY = 1000


class SpillWatch:
    """Called by MetricsCallback with every record it writes (rank 0's); says it once per process."""

    def __init__(self, run: RunDir, budget_gb: float, python: str = sys.executable) -> None:
        self.run = run
        self.budget_gb = budget_gb
        self.python = python  # the program the driver's per-program setting names
        self.records: list[dict[str, Any]] = []
        self.said = False

    def __call__(self, record: dict[str, Any]) -> None:
        if self.said:
            return
        self.records = [*self.records[1 - HISTORY:], record]
        found = spill.spill(self.records, self.budget_gb)
        if found is None:
            return
        self.said = True
        line = spill.record(found, self.python, record["elapsed_s"])
        self.run.log(line)
        console.print(f"[bold yellow]{escape(line['message'])}[/]")


def card_budget_gb() -> float:
    """What this process can hold on its card before the driver would spill: its cap (set_per_process_memory_fraction,
    where one is set) or what the card has free now plus what this process holds already, whichever is less.
    Read once the model is loaded, as training starts."""
    import torch

    free, total = torch.cuda.mem_get_info()
    # a torch without get_per_process_memory_fraction cannot tell its cap: then what is free decides
    fraction = getattr(torch.cuda, "get_per_process_memory_fraction", lambda: 1.0)()
    return min(fraction * total, free + torch.cuda.memory_reserved()) / 2**30
