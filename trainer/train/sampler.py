"""The Trainer's group_by_length order, from its own generator (the run's seed and the epoch)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from transformers.trainer_pt_utils import LengthGroupedSampler


class SeededLengthGroupedSampler(LengthGroupedSampler):
    """The Trainer's group_by_length order, shuffled by its own generator (the run's seed plus the epoch) instead of
    torch's global one: the order is then the same wherever the run starts, resumed or not, on every rank. The
    Trainer's sampler draws from the global generator when the epoch starts, whose state depends on what ran before
    (unsloth's model loading on a GPU): a resumed unsloth run trained other rows than the run it continued."""

    def __init__(self, rows_per_step: int, lengths: list[int], seed: int) -> None:
        super().__init__(rows_per_step, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:  # the Trainer calls it through accelerate's data loader
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        self.generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return super().__iter__()


def length_grouped_sampler(dataset: Any, rows_per_step: int, seed: int) -> SeededLengthGroupedSampler:
    """The grouped order of `dataset`, with the rows' lengths read in one go (data.build_rows' `length` column, or, for
    TRL's packed rows, the lengths of the token lists from Arrow): the Trainer reads them one row at a time (18 s for
    100k rows)."""
    if "length" in dataset.column_names:
        lengths = dataset["length"][:]
    else:
        import pyarrow.compute as pc

        lengths = pc.list_value_length(dataset.with_format("arrow")[:]["input_ids"]).to_pylist()
    return SeededLengthGroupedSampler(rows_per_step, lengths, seed)
