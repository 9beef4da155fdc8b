"""A micro-batch as several forward/backward passes of whole rows or whole packed conversations.

Two things need it: training without gradient checkpointing within a card's memory (`train.max_tokens_per_pass`),
and a step that ran out of GPU memory, run again in smaller passes (sft_trainer.SFTRunTrainer). Splitting is exact
where the loss is summed over the step's tokens and divided once by their count (num_items_in_batch): the passes add up
to the micro-batch's loss and gradients. A padded batch splits between rows; a flattened one (packing, padding-free: one
row, position ids restarting at each conversation) splits between conversations, which never attend to each other.
"""

from __future__ import annotations

from typing import Any

Batch = dict[str, Any]


def is_flattened(inputs: Batch) -> bool:
    """One row of several conversations, told apart by position ids (TRL's padding-free and packed batches)."""
    return "position_ids" in inputs and "attention_mask" not in inputs and inputs["input_ids"].shape[0] == 1


def segment_lengths(inputs: Batch) -> list[int]:
    """Token counts of a flattened row's conversations, in order. Padding at the end of the row is not one of them;
    where only position ids tell them apart, each padding token looks like a conversation of one token."""
    if "packed_seq_lengths" in inputs:  # Unsloth's collator names them
        return [int(n) for n in inputs["packed_seq_lengths"].tolist()]
    starts = (inputs["position_ids"][0] == 0).nonzero().flatten().tolist() + [inputs["input_ids"].shape[1]]
    return [end - start for start, end in zip(starts, starts[1:], strict=False)]


def tokens(inputs: Batch) -> int:
    rows, width = inputs["input_ids"].shape
    return rows * width


def smallest_pass(inputs: Batch) -> int:
    """Tokens of the largest piece a pass cannot cut: a padded row, or the longest conversation of a flattened row."""
    return max(segment_lengths(inputs)) if is_flattened(inputs) else inputs["input_ids"].shape[1]


def split(inputs: Batch, budget: int) -> list[Batch]:
    """`inputs` as passes of at most `budget` tokens each (whole rows or conversations; a piece larger than the
    budget is a pass of its own); [inputs] when it fits or the budget is 0."""
    if not budget or tokens(inputs) <= budget:
        return [inputs]
    if is_flattened(inputs):
        return split_flattened(inputs, budget)
    rows, width = inputs["input_ids"].shape
    per_pass = max(1, budget // width)
    return [{key: value[start:start + per_pass] for key, value in inputs.items()} for start in range(0, rows, per_pass)]


def split_flattened(inputs: Batch, budget: int) -> list[Batch]:
    import torch

    lengths = segment_lengths(inputs)
    groups: list[list[int]] = [[]]
    for length in lengths:
        if groups[-1] and sum(groups[-1]) + length > budget:
            groups.append([])
        groups[-1].append(length)
    width = inputs["input_ids"].shape[1]
    parts, start = [], 0
    for number, group in enumerate(groups, 1):
        end = width if number == len(groups) else start + sum(group)  # the last pass takes the padding tail
        part = {key: value[:, start:end] for key, value in inputs.items()
                if hasattr(value, "dim") and value.dim() == 2 and value.shape[1] == width}
        if "packed_seq_lengths" in inputs:
            part["packed_seq_lengths"] = torch.tensor(group, dtype=inputs["packed_seq_lengths"].dtype)
        parts.append(part)
        start = end
    return parts
