"""The data stage: read rows, convert them to one format, split train/eval, and tokenize with assistant masks (from
the token cache when it has them); or split preference pairs (or KTO's labelled answers) and render them as TRL's
preference (or unpaired) rows."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.markup import escape

from trainer.config import Config
from trainer.console import console
from trainer.data import cache, formats, preferences, sources, tokens, unpaired
from trainer.data.formats import Examples
from trainer.data.preferences import Pairs
from trainer.data.render import check_tokenizer, check_tools
from trainer.data.unpaired import Unpaired
from trainer.errors import UserError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase


@dataclass
class Split:
    """Row numbers of the examples to train and to evaluate on; `note` says why the hold-out is smaller than asked,
    `capped` why fewer rows train than the file has (max_steps) and how to train them all."""

    train: list[int]
    eval: list[int]
    note: str = ""
    capped: str = ""


@dataclass
class Prepared:
    train: datasets.Dataset
    eval: datasets.Dataset | None
    stats: dict[str, float]
    problem: UserError | None = None  # why these rows can't train (build raises it unless asked only to inspect)


# Below this many rows nothing is held out: a fifth of them (at most 3 rows) tells little about the eval loss's trend,
# and costs a fifth of what there is to learn from.
MIN_ROWS_FOR_EVAL = 20
EVAL_SHARE_MAX = 5  # the hold-out is at most a fifth of the rows


def load_rows(config: Config) -> Examples:
    """Read and validate the configured dataset as conversations or text (SFT's rows): every data problem is a
    UserError here, before the model loads."""
    table = formats.rename_columns(sources.read(config.data.dataset, config.data.split), config.data.columns)
    return formats.convert(table, config.data.format, config.data.skip_invalid_rows)


def split(examples: Examples | Pairs | Unpaired, config: Config) -> Split:
    """A deterministic shuffle (seeded) and hold-out of at most a fifth of the rows (none below MIN_ROWS_FOR_EVAL)
    that leaves at least one optimizer step's rows to train on, then only as many train rows as max_steps can
    consume."""
    n = len(examples)
    order = list(range(n))
    random.Random(config.train.seed).shuffle(order)
    size = config.data.eval_size
    asked = min(int(size) if size >= 1 else round(n * size), config.data.eval_max_examples)
    per_step = rows_per_step(config)
    n_eval = 0 if n < MIN_ROWS_FOR_EVAL else min(asked, n // EVAL_SHARE_MAX, max(n - per_step, 0))
    note = ""
    if n_eval < asked:
        if n < MIN_ROWS_FOR_EVAL:
            note = (f"{n} rows: no eval hold-out (eval_size asks for {asked}) below {MIN_ROWS_FOR_EVAL} rows, every "
                    "row trains")
        elif n_eval == n // EVAL_SHARE_MAX:
            note = f"{n} rows: holding out {n_eval} for eval instead of {asked}, at most a fifth of the rows"
        elif n_eval:
            note = (f"{n} rows: holding out {n_eval} for eval instead of {asked}, so that one optimizer step's "
                    f"{per_step} rows are left to train on")
        else:
            note = f"{n} rows: no eval hold-out (eval_size asks for {asked}), every row is needed to train"
    train_idx = order[n_eval:]
    capped = ""
    if config.train.max_steps:
        # The trainer would never reach the rest; skipping it makes a 60-step run on 100k rows start in seconds.
        kept = rows_for_steps(examples, train_idx, config)
        if kept < len(train_idx):
            epochs = config.train.epochs
            capped = (f"max_steps={config.train.max_steps} (profile {config.profile}) trains at most {kept} of the "
                      f"{len(train_idx)} train rows ({per_step} a step); --set max_steps=0 trains them all "
                      f"({epochs:g} epoch{'' if epochs == 1 else 's'}, --set epochs=N for more)")
        train_idx = train_idx[:kept]
    return Split(train_idx, order[:n_eval], note, capped)


CHARACTERS_PER_TOKEN = 6  # more than English text takes per token with Llama's or SmolLM2's vocabulary (about 4)


def rows_for_steps(examples: Examples | Pairs | Unpaired, order: list[int], config: Config) -> int:
    """How many rows of `order` max_steps optimizer steps can use: one per row of a step, or, when packing, enough
    conversations to fill that many rows of max_seq_length tokens, estimated from their characters so that the
    estimate errs towards more rows. A conversation longer than a row is cut to one row: it fills no more."""
    rows = config.train.max_steps * rows_per_step(config)
    if not config.train.packing or not isinstance(examples, Examples):
        return rows
    row = config.model.max_seq_length * CHARACTERS_PER_TOKEN
    needed = rows * row
    for taken, i in enumerate(order, 1):
        text = examples.texts[i] if examples.format == "text" else examples.conversations[i]
        needed -= min(row, len(text) if isinstance(text, str) else sum(len(m["content"]) for m in text))
        if needed <= 0:
            return taken
    return len(order)


def rows_per_step(config: Config) -> int:
    return config.train.micro_batch_size * config.train.grad_accum_steps


def fewer_rows_per_step(rows: int, config: Config) -> str:
    """Settings that make one optimizer step take at most `rows` rows, naming only values that change."""
    micro, accum = config.train.micro_batch_size, config.train.grad_accum_steps
    if micro <= rows:
        return f"--set grad_accum_steps={max(1, rows // micro)}"
    return f"--set micro_batch_size={max(1, rows)}" + (" --set grad_accum_steps=1" if accum != 1 else "")


def too_few_rows(config: Config, rows: int, what: str) -> UserError | None:
    per_step = rows_per_step(config)
    if rows >= per_step:
        return None
    fix = f"take fewer rows per step ({fewer_rows_per_step(rows, config)})" if rows else "use other examples"
    return UserError(f"{config.data.dataset} has {rows} {what}, but one optimizer step needs micro_batch_size x "
                     f"grad_accum_steps = {per_step}", f"Add rows, or {fix}.")


def build_pairs(config: Config, pairs: Pairs, tokenizer: PreTrainedTokenizerBase, check: bool = True) -> Prepared:
    """Split the pairs as rows are split, then TRL's standard preference rows (preferences.build), which TRL
    tokenizes. With check=False, pairs too few to train on are no error (Prepared.problem says so)."""
    parts = split(pairs, config)
    for line in (parts.note, parts.capped):
        if line:
            console.print(f"[yellow]{line.replace(' rows', ' pairs')}[/]")
    prepared = Prepared(*preferences.build(config, pairs, tokenizer, parts.train, parts.eval))
    if prepared.problem is not None and check:
        raise prepared.problem
    return prepared


def build_unpaired(config: Config, data: Unpaired, tokenizer: PreTrainedTokenizerBase, check: bool = True
                   ) -> Prepared:
    """Split KTO's labelled answers as rows are split, then TRL's standard unpaired rows (unpaired.build), which TRL
    tokenizes. With check=False, answers too few to train on are no error (Prepared.problem says so)."""
    parts = split(data, config)
    for line in (parts.note, parts.capped):
        if line:
            console.print(f"[yellow]{line.replace(' rows', ' answers')}[/]")
    train, eval_ds, stats = unpaired.build(config, data, tokenizer, parts.train, parts.eval)
    within = f"labelled answers to train on (within max_seq_length={config.model.max_seq_length})"
    prepared = Prepared(train, eval_ds, stats, too_few_rows(config, stats["train_rows"], within))
    if stats["train_rows"] and 0 in (stats["desirable"], stats["undesirable"]):
        kind = "true" if stats["desirable"] else "false"
        console.print(f"[yellow]The {stats['train_rows']} answers that train are all marked {kind} ({data.desirable} "
                      f"of the {len(data)} in {config.data.dataset} are true): this run learns nothing from the other "
                      "kind (--set max_steps=0 trains every row)[/]")
    if prepared.problem is not None and check:
        raise prepared.problem
    return prepared


def build_rows(config: Config, examples: Examples, tokenizer: PreTrainedTokenizerBase, check: bool = True) -> Prepared:
    """Split and tokenize (from the token cache when it has these rows); the train/eval datasets carry `input_ids`,
    `labels` (-100 where no loss applies) and `length`. With check=False, rows too few to train on are no error
    (Prepared.problem says so): `trainer data` inspects any file."""
    check_tokenizer(tokenizer, needs_template=examples.format != "text")
    if examples.rows_with_tools():
        check_tools(tokenizer, examples.rows_with_tools(), config.data.date_string)
    parts = split(examples, config)
    for line in (parts.note, parts.capped):
        if line:
            console.print(f"[yellow]{line}[/]")
    rows, train_at, eval_at = tokenized(config, examples, tokenizer, parts)
    # Straight from Arrow: reading a datasets column row by row takes seconds for 100k rows.
    columns = {name: rows.data.column(name).to_numpy()
               for name in ("length", "full_length", "trained_tokens", "spells_control_token")}
    trained = columns["trained_tokens"]
    train_at, eval_at = np.asarray(train_at, dtype=np.int64), np.asarray(eval_at, dtype=np.int64)
    kept = train_at[trained[train_at] > 0]
    train = rows.select(kept).select_columns(["input_ids", "labels", "length"])
    eval_kept = eval_at[trained[eval_at] > 0]
    eval_ds = rows.select(eval_kept).select_columns(["input_ids", "labels", "length"]) if len(eval_kept) else None
    max_length = config.model.max_seq_length
    full, length = columns["full_length"][train_at], columns["length"][train_at]
    spelled = int(columns["spells_control_token"][np.concatenate([train_at, eval_at])].sum())
    stats = {
        "train_rows": len(train),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "rows_over_max_length": int((full > max_length).sum()),
        "rows_dropped": len(train_at) - len(kept),
        "tokens_min": int(full.min()) if len(full) else 0,
        "tokens_median": float(np.median(full)) if len(full) else 0.0,
        "tokens_max": int(full.max()) if len(full) else 0,
        "tokens_mean": round(float(columns["length"][kept].mean()), 1) if len(kept) else 0.0,  # trained rows
        "train_tokens": int(columns["length"][kept].sum()),
        "trained_token_fraction": float(trained[train_at].sum() / max(1, length.sum())),
        "rows_spelling_control_tokens": spelled,
    }
    if spelled:
        how = ("encoded as plain text (control_tokens_as_text)" if config.data.control_tokens_as_text else
               "encoded as control tokens; --set control_tokens_as_text=true encodes them as plain text")
        console.print(f"[yellow]{spelled} rows spell a control token of the tokenizer in their text (such as "
                      f"{escape(sample_control_token(tokenizer))}): {how}[/]")
    problem = too_few_rows(config, len(train_at), "rows to train on")
    if problem is None and len(kept) < rows_per_step(config):
        problem = UserError(
            f"only {len(kept)} training rows have an answer within max_seq_length={max_length} tokens; one "
            f"optimizer step needs {rows_per_step(config)}",
            f"Raise max_seq_length (--set max_seq_length={2 * max_length}) or use shorter examples"
            + (f", or take fewer rows per step ({fewer_rows_per_step(len(kept), config)})." if len(kept) else "."),
        )
    if problem is not None and check:
        raise problem
    return Prepared(train, eval_ds, stats, problem)


def tokenized(config: Config, examples: Examples, tokenizer: PreTrainedTokenizerBase,
              parts: Split) -> tuple[datasets.Dataset, list[int], list[int]]:
    """The tokenized rows, and where the train and eval rows of `parts` are in them. A run that reads every row
    (an epoch) takes them from the cache, building it if needed; a run of a few steps tokenizes only its rows, unless
    the cache has them."""
    import datasets

    settings = tokens.Settings(config.model.max_seq_length, config.data.date_string,
                               config.data.control_tokens_as_text)
    whole = len(parts.train) + len(parts.eval) == len(examples)
    if config.data.cache_tokens and examples.fingerprint:
        root = Path(config.run.cache_dir) / "tokenized"
        name, about = cache.key(examples.fingerprint, examples.format, config.data.skip_invalid_rows, tokenizer,
                                settings)
        rows = cache.load(root, name)
        if rows is None and whole:
            console.print(f"Tokenizing {len(examples)} rows once; kept in {root / name}", soft_wrap=True)
            rows = cache.ensure(root, name, about, tokens.batches(examples, list(range(len(examples))), tokenizer,
                                                                  settings))
        elif rows is not None:
            console.print(f"Tokenized rows from the cache: {root / name}", soft_wrap=True)
        if rows is not None:
            return rows, parts.train, parts.eval
    subset = parts.train + parts.eval
    table = tokens.in_memory(examples, subset, tokenizer, settings)
    at = list(range(len(subset)))
    return datasets.Dataset(table), at[: len(parts.train)], at[len(parts.train):]


def sample_control_token(tokenizer: PreTrainedTokenizerBase) -> str:
    return tokenizer.eos_token or next(iter(tokenizer.all_special_tokens), "")
