"""The run's held-out rows, as it trained them: the same split, tokens and masks (for the loss), and the prompts with
their reference answers (for the answers)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainer.config import Config
from trainer.data import stage
from trainer.errors import UserError


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]  # the conversation up to its last user turn
    reference: str  # the held-out answer to it


def check_method(config: Config, run: str) -> None:
    if config.train.method != "sft":
        raise UserError(f"run {run} trained {config.train.method}: eval compares SFT runs for now",
                        "Evaluate the SFT run it started from (--from), or compare in the UI's Compare tab.")


def prompts(config: Config, rows: Any, n: int) -> list[Prompt]:
    """The first `n` held-out conversations that end with an answer, as a prompt and that answer."""
    held = stage.split(rows, config).eval
    if rows.format == "text":
        raise UserError(f"{config.data.dataset} is plain text: there are no prompts to answer",
                        "Eval's answers need conversations; its loss is still in the run's metrics.")
    found = []
    for i in held:
        conversation = rows.conversations[i]
        last = max((k for k, m in enumerate(conversation) if m["role"] == "assistant"), default=None)
        if last is not None and last > 0:
            found.append(Prompt([dict(m) for m in conversation[:last]], conversation[last]["content"]))
        if len(found) == n:
            break
    return found


BATCH_ROWS = 4


def loss(model: Any, dataset: Any, advance: Callable[[int], None] = lambda batches: None) -> tuple[float, int]:
    """Mean loss per trained token of `model` on a tokenized dataset (input_ids, labels with -100 where no loss
    applies), and how many tokens it is over; `advance` counts its batches of BATCH_ROWS rows."""
    import torch

    total, count = 0.0, 0
    device = next(model.parameters()).device
    for start in range(0, len(dataset), BATCH_ROWS):
        rows = dataset[start:start + BATCH_ROWS]
        ids, labels = padded(rows["input_ids"], 0), padded(rows["labels"], -100)
        mask = padded([[1] * len(s) for s in rows["input_ids"]], 0)
        with torch.inference_mode():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        targets = labels[:, 1:].to(device)
        losses = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                   targets.reshape(-1), ignore_index=-100, reduction="sum")
        total += float(losses)
        count += int((targets != -100).sum())
        advance(1)
    if not count:
        raise UserError("the held-out rows have no trained tokens", "Train with eval_size > 0 on conversations.")
    return total / count, count


def padded(sequences: list[list[int]], value: int) -> Any:
    """The sequences as one tensor, each padded at its end with `value` to the longest."""
    import torch

    width = max(len(s) for s in sequences)
    return torch.tensor([list(s) + [value] * (width - len(s)) for s in sequences])
