"""Tokenize rows into Arrow columns, a chunk at a time, with a progress bar: what the trainer reads, plus each row's
numbers for the statistics.

Each chunk's templates are rendered in Python (fast), then the whole chunk is encoded in one call to the tokenizers
library, which spreads a batch over every core (1.5-2x the former row-by-row loop on 2 busy cores with the Llama 3.2
tokenizer; README, Data). Columns (one row per example, in the order asked for):
- input_ids, labels: truncated to max_seq_length; labels are the ids where the loss applies, -100 elsewhere (what
  TRL's collator takes as is);
- length: len(input_ids) (what group_by_length sorts by); full_length: before truncation;
- trained_tokens: labels that are not -100 (0: no answer within max_seq_length, the row is dropped);
- spells_control_token: a message (or text) spells one of the tokenizer's control tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from trainer.console import console
from trainer.data.formats import Examples
from trainer.data.render import ControlTokens, Rendered, encode, render, render_text, with_eos
from trainer.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

CHUNK_ROWS = 1000
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32())), ("length", pa.int32()),
                    ("full_length", pa.int32()), ("trained_tokens", pa.int32()), ("spells_control_token", pa.bool_())])


@dataclass(frozen=True)
class Settings:
    """Everything besides the rows and the tokenizer that the tokens depend on (all part of the cache key)."""

    max_length: int
    date_string: str
    control_tokens_as_text: bool


def batches(examples: Examples, indices: list[int], tokenizer: PreTrainedTokenizerBase,
            settings: Settings) -> Iterator[pa.RecordBatch]:
    """The rows `indices` of `examples`, tokenized, one RecordBatch per chunk; a progress bar when there are several."""
    control = ControlTokens(tokenizer)
    chunks = [indices[i:i + CHUNK_ROWS] for i in range(0, len(indices), CHUNK_ROWS)]
    if len(chunks) <= 1:
        for chunk in chunks:
            yield tokenize_chunk(examples, chunk, tokenizer, control, settings)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("Tokenizing"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("tokenize", total=len(indices))
        for chunk in chunks:
            yield tokenize_chunk(examples, chunk, tokenizer, control, settings)
            progress.advance(task, len(chunk))


def tokenize_chunk(examples: Examples, chunk: list[int], tokenizer: PreTrainedTokenizerBase, control: ControlTokens,
                   settings: Settings) -> pa.RecordBatch:
    if examples.format == "text":
        texts = [examples.texts[i] for i in chunk]
        spelled = [control.spelled(text) for text in texts]
        batch = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=True)
        encoded = []
        for text, spells, encoding in zip(texts, spelled, batch, strict=True):
            ids = (render_text(tokenizer, text, True)[0] if spells and settings.control_tokens_as_text
                   else with_eos(tokenizer, encoding.ids))
            encoded.append((np.asarray(ids, dtype=np.int32), np.ones(len(ids), dtype=np.int8)))
    else:
        rows = [rendered(examples, i, tokenizer, control, settings) for i in chunk]
        spelled = [row.spells_control_token for row in rows]
        encoded = encode(tokenizer, rows)
    return to_batch(encoded, spelled, settings.max_length)


def rendered(examples: Examples, i: int, tokenizer: PreTrainedTokenizerBase, control: ControlTokens,
             settings: Settings) -> Rendered:
    """Conversation i rendered; a template that refuses it (raise_exception: Llama 3's one tool call per answer) is
    an error naming the conversation, not a traceback."""
    from jinja2 import TemplateError

    try:
        return render(tokenizer, examples.conversations[i], control, settings.date_string,
                      settings.control_tokens_as_text, examples.tools_of(i))
    except TemplateError as e:
        raise UserError(
            f"the chat template of {tokenizer.name_or_path} refuses conversation {i + 1} of the rows read: {e}",
            "Leave out the rows it refuses, or use a model whose template renders them.",
        ) from None


def to_batch(encoded: list[tuple[np.ndarray, np.ndarray]], spelled: list[bool], max_length: int) -> pa.RecordBatch:
    full = np.array([len(ids) for ids, _ in encoded], dtype=np.int32)
    length = np.minimum(full, max_length)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(length, out=offsets[1:])
    ids = np.concatenate([ids[:max_length] for ids, _ in encoded]) if encoded else np.zeros(0, np.int32)
    mask = np.concatenate([mask[:max_length] for _, mask in encoded]) if encoded else np.zeros(0, np.int8)
    labels = np.where(mask == 1, ids, -100).astype(np.int32)
    trained = np.add.reduceat(mask.astype(np.int32), offsets[:-1]) if len(mask) else np.zeros(len(encoded), np.int32)
    trained[length == 0] = 0  # reduceat reads the next row's first value for an empty row
    return pa.RecordBatch.from_arrays(
        [pa.ListArray.from_arrays(pa.array(offsets), pa.array(ids)),
         pa.ListArray.from_arrays(pa.array(offsets), pa.array(labels)),
         pa.array(length), pa.array(full), pa.array(trained.astype(np.int32)), pa.array(spelled, pa.bool_())],
        schema=SCHEMA)


def in_memory(examples: Examples, indices: list[int], tokenizer: PreTrainedTokenizerBase,
              settings: Settings) -> pa.Table:
    return pa.Table.from_batches(list(batches(examples, indices, tokenizer, settings)), schema=SCHEMA)
