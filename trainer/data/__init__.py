"""The data stage: read rows, convert them to one format, split train/eval, and tokenize with assistant masks."""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trainer.config import Config
from trainer.data import formats, sources
from trainer.data.formats import Examples
from trainer.data.render import check_tokenizer, render_text, render_with_mask
from trainer.errors import UserError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase


@dataclass
class Split:
    train: Examples
    eval: Examples


@dataclass
class Prepared:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    stats: dict[str, float]


def load(config: Config) -> Examples:
    """Read and validate the configured dataset: every data problem is a UserError here, before the model loads."""
    table = sources.read(config.data.dataset, config.data.split)
    return formats.convert(table, config.data.format, config.data.skip_invalid_rows)


def split(examples: Examples, config: Config) -> Split:
    """A deterministic shuffle (seeded) and hold-out, then only as many train rows as max_steps can consume."""
    n = len(examples)
    order = list(range(n))
    random.Random(config.train.seed).shuffle(order)
    size = config.data.eval_size
    n_eval = int(size) if size >= 1 else round(n * size)
    n_eval = min(n_eval, config.data.eval_max_examples, max(n - 1, 0))
    eval_idx, train_idx = order[:n_eval], order[n_eval:]
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    if len(train_idx) < per_step:
        raise UserError(
            f"{config.data.dataset} has {len(train_idx)} training rows after holding out {n_eval} for eval, "
            f"but one optimizer step needs micro_batch_size x grad_accum_steps = {per_step}",
            "Add rows, lower micro_batch_size or grad_accum_steps (--set grad_accum_steps=1), or --set eval_size=0.",
        )
    if config.train.max_steps and not config.train.packing:
        # The trainer would never reach the rest; skipping it makes a 60-step run on 100k rows start in seconds.
        train_idx = train_idx[: config.train.max_steps * per_step]
    return Split(_subset(examples, train_idx), _subset(examples, eval_idx))


def _subset(examples: Examples, idx: list[int]) -> Examples:
    if examples.format == "text":
        return Examples("text", [], [examples.texts[i] for i in idx])
    return Examples(examples.format, [examples.conversations[i] for i in idx], [])


def tokenize(examples: Examples, tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[int]]]:
    check_tokenizer(tokenizer, needs_template=examples.format != "text")
    if examples.format == "text":
        return [render_text(tokenizer, text) for text in examples.texts]
    return [render_with_mask(tokenizer, messages) for messages in examples.conversations]


def to_dataset(rendered: list[tuple[list[int], list[int]]], max_length: int) -> tuple[datasets.Dataset, int, int]:
    """A dataset TRL trains on as is (it builds labels from `assistant_masks`), truncated to max_length (as TRL would;
    done here so padding-free batches, which TRL does not truncate, are capped too), with rows whose answer starts
    past max_length dropped; also returns how many rows were too long and how many were dropped."""
    import datasets

    kept = [(ids[:max_length], mask[:max_length]) for ids, mask in rendered if any(mask[:max_length])]
    too_long = sum(len(ids) > max_length for ids, _ in rendered)
    columns = {"input_ids": [ids for ids, _ in kept], "assistant_masks": [mask for _, mask in kept]}
    return datasets.Dataset.from_dict(columns), too_long, len(rendered) - len(kept)


def build(config: Config, examples: Examples, tokenizer: PreTrainedTokenizerBase) -> Prepared:
    """Split and tokenize; the train/eval datasets carry `input_ids` and `assistant_masks`."""
    parts = split(examples, config)
    max_length = config.model.max_seq_length
    rendered = tokenize(parts.train, tokenizer)
    train, too_long, dropped = to_dataset(rendered, max_length)
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    if len(train) < per_step:
        raise UserError(
            f"only {len(train)} training rows have an answer within max_seq_length={max_length} tokens; one "
            f"optimizer step needs {per_step}",
            "Raise max_seq_length (--set max_seq_length=4096) or use shorter examples.",
        )
    eval_ds = to_dataset(tokenize(parts.eval, tokenizer), max_length)[0] if len(parts.eval) else None
    if eval_ds is not None and not len(eval_ds):
        eval_ds = None
    lengths = [len(ids) for ids, _ in rendered]
    trained_lengths = [len(ids) for ids in train["input_ids"]]
    stats = {
        "train_rows": len(train),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "rows_over_max_length": too_long,
        "rows_dropped": dropped,
        "tokens_min": min(lengths),
        "tokens_median": statistics.median(lengths),
        "tokens_max": max(lengths),
        "tokens_mean": round(statistics.mean(trained_lengths), 1),  # of the rows trained on, after truncation
        "train_tokens": sum(trained_lengths),
        "trained_token_fraction": sum(sum(m[:max_length]) for _, m in rendered)
        / sum(min(n, max_length) for n in lengths),
    }
    return Prepared(train, eval_ds, stats)
