"""Preference pairs for DPO and ORPO: read, check and convert to one prompt with two answers.

The layouts, as the tools that define them write them:
- TRL standard: `prompt`, `chosen` and `rejected` strings.
- TRL conversational: `chosen` and `rejected` message lists that share their prompt turns and end with different
  assistant answers, or an explicit `prompt` (messages) with `chosen` and `rejected` as the answers (a string, one
  assistant message, or a list holding one).
- LLaMA-Factory: the prompt turns in `conversations` (or `messages`), `chosen` and `rejected` as turn objects
  (`{"from": "gpt", "value": ...}`); or alpaca's `instruction` (+ `input`) with `chosen` and `rejected` strings.
- OpenAI's DPO: `input.messages` as the prompt, `preferred_output` and `non_preferred_output` each a list holding one
  assistant message.
- `chosen_messages` and `rejected_messages`: TRL's conversational pair under other names (LLaMA-Factory v1's).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import Config
from trainer.data import formats, sources
from trainer.data.formats import (
    OPENAI_ROLES,
    SHAREGPT_ROLES,
    InvalidRow,
    Messages,
    Unsupported,
    check_roles,
    invalid_rows,
)
from trainer.data.sources import Table
from trainer.errors import UserError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

FORMATS = ("auto", "standard", "conversational", "llamafactory", "openai", "messages")
# The fields each layout reads; the others are listed by `trainer data` as not used.
READS = {"standard": ("prompt", "chosen", "rejected"), "conversational": ("prompt", "chosen", "rejected"),
         "llamafactory": ("conversations", "messages", "instruction", "input", "system", "chosen", "rejected"),
         "openai": ("input", "preferred_output", "non_preferred_output"),
         "messages": ("chosen_messages", "rejected_messages")}
# The fields every row of a layout must have (the format's signature).
REQUIRED = {"standard": ("chosen", "rejected"), "conversational": ("chosen", "rejected"),
            "llamafactory": ("chosen", "rejected"), "openai": ("input", "preferred_output", "non_preferred_output"),
            "messages": ("chosen_messages", "rejected_messages")}
PROMPT_FIELDS = ("conversations", "messages", "instruction")  # where LLaMA-Factory's rows keep the prompt
SAMPLE = Path(__file__).with_name("preferences_sample.jsonl")  # scripts/make_preference_sample.py writes it


@dataclass
class Pairs:
    """Each pair's prompt (chat messages ending with a user turn) and its chosen and rejected answers."""

    format: str
    prompts: list[Messages] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    skipped: int = 0
    fingerprint: str = ""
    fields_read: list[str] = field(default_factory=list)
    fields_unused: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)


def detect(row: dict[str, Any], source: str) -> str:
    """The row's layout (module docstring): by its fields, then, for chosen/rejected, by what they hold."""
    if "preferred_output" in row and "non_preferred_output" in row:
        return "openai"
    if "chosen_messages" in row and "rejected_messages" in row:
        return "messages"
    missing = [f for f in ("chosen", "rejected") if f not in row]
    if missing:
        found = ", ".join(sorted(row)) or "none"
        label = next((f for f in formats.LABEL_FIELDS if f in row), None)
        if label:
            raise UserError(f"{source} holds unpaired answers marked good or bad by '{label}' (KTO's data), not "
                            "preference pairs", "Train them with --method kto (TRL's KTOTrainer).")
        raise UserError(f"{source} is not preference data: its first row has the fields {found}",
                        "A preference row needs 'chosen' and 'rejected' (TRL's standard or conversational format, "
                        "LLaMA-Factory's with 'conversations'), 'chosen_messages' and 'rejected_messages', or "
                        "OpenAI's 'input', 'preferred_output' and 'non_preferred_output'. Conversations without a "
                        "rejected answer train with SFT: leave out --method.")
    if "prompt" not in row and any(f in row for f in PROMPT_FIELDS):
        return "llamafactory"
    chosen = parsed(row["chosen"])
    return "conversational" if isinstance(chosen, list) or isinstance(row.get("prompt"), list) else "standard"


def parsed(value: Any) -> Any:
    """CSV cells carry message lists as JSON text."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def read_messages(value: Any, what: str) -> Messages:
    value = parsed(value)
    if isinstance(value, str):
        raise InvalidRow(f"'{what}' is text that is not a JSON list of messages")
    if not isinstance(value, list) or not value:
        raise InvalidRow(f"'{what}' must be a non-empty list of messages")
    messages = []
    for n, turn in enumerate(value, start=1):
        if isinstance(turn, dict) and ("role" in turn or "from" in turn):
            formats.tool_role(turn.get("role", turn.get("from")), f"message {n} of '{what}'")
        if isinstance(turn, dict) and "role" in turn and "content" in turn:
            role, content = OPENAI_ROLES.get(str(turn["role"]).lower()), turn["content"]
        elif isinstance(turn, dict) and "from" in turn and "value" in turn:
            role, content = SHAREGPT_ROLES.get(str(turn["from"]).lower()), turn["value"]
        else:
            raise InvalidRow(f"message {n} of '{what}' needs 'role' and 'content'")
        if role is None:
            raise InvalidRow(f"message {n} of '{what}' has an unsupported role (expected system, user, assistant)")
        formats.check_message_fields(turn, role, f"message {n} of '{what}'")
        messages.append({"role": role, "content": formats.content_text(content, f"message {n} of '{what}'")})
    return messages


def _text(value: Any, what: str) -> str:
    return formats.content_text(value, what)


def read_answer(value: Any, what: str) -> str:
    """An explicit prompt's answer: text, one assistant message, or a list holding one."""
    value = parsed(value)
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        messages = read_messages(value, what)
        if len(messages) != 1 or messages[0]["role"] != "assistant":
            raise InvalidRow(f"'{what}' must be one assistant answer to the prompt")
        return messages[0]["content"]
    return _text(value, f"the '{what}' answer")


def from_standard(row: dict[str, Any]) -> tuple[Messages, str, str]:
    if "prompt" not in row:
        raise InvalidRow("has no 'prompt' field (the standard preference format needs prompt, chosen, rejected)")
    prompt = [{"role": "user", "content": _text(row["prompt"], "the 'prompt'")}]
    return prompt, _text(row["chosen"], "the 'chosen' answer"), _text(row["rejected"], "the 'rejected' answer")


def from_conversational(row: dict[str, Any], names: tuple[str, str] = ("chosen", "rejected")
                        ) -> tuple[Messages, str, str]:
    if "prompt" in row and row["prompt"] is not None:
        prompt = read_messages(row["prompt"], "prompt")
        return prompt, read_answer(row["chosen"], "chosen"), read_answer(row["rejected"], "rejected")
    chosen, rejected = read_messages(row["chosen"], names[0]), read_messages(row["rejected"], names[1])
    for what, messages in zip(names, (chosen, rejected), strict=True):
        if messages[-1]["role"] != "assistant":
            raise InvalidRow(f"'{what}' does not end with an assistant answer")
    if chosen[:-1] != rejected[:-1]:
        turn = next((n for n, (a, b) in enumerate(zip(chosen[:-1], rejected[:-1], strict=False), 1) if a != b),
                    min(len(chosen), len(rejected)))
        raise InvalidRow(f"chosen and rejected have different prompts (message {turn} differs): a pair answers "
                         "one prompt twice")
    return chosen[:-1], chosen[-1]["content"], rejected[-1]["content"]


def from_llamafactory(row: dict[str, Any]) -> tuple[Messages, str, str]:
    name = next(f for f in PROMPT_FIELDS if f in row)
    if name == "instruction":
        text, extra = _text(row["instruction"], "'instruction'"), row.get("input")
        prompt = [{"role": "user", "content": f"{text}\n\n{extra}" if isinstance(extra, str) and extra.strip()
                   else text}]
    else:
        prompt = read_messages(row[name], name)
    return (formats.with_system(prompt, row), read_answer(row["chosen"], "chosen"),
            read_answer(row["rejected"], "rejected"))


def from_openai(row: dict[str, Any]) -> tuple[Messages, str, str]:
    given = parsed(row["input"])
    if not isinstance(given, dict) or "messages" not in given:
        raise InvalidRow("'input' must be an object with 'messages' (OpenAI's DPO format)")
    formats.check_row_fields(given)  # its `tools`
    prompt = read_messages(given["messages"], "input.messages")
    return prompt, read_answer(row["preferred_output"], "preferred_output"), read_answer(row["non_preferred_output"],
                                                                                 "non_preferred_output")


def from_messages(row: dict[str, Any]) -> tuple[Messages, str, str]:
    return from_conversational({"chosen": row["chosen_messages"], "rejected": row["rejected_messages"]},
                               ("chosen_messages", "rejected_messages"))


CONVERTERS = {"standard": from_standard, "conversational": from_conversational, "llamafactory": from_llamafactory,
              "openai": from_openai, "messages": from_messages}


def convert(table: Table, fmt: str = "auto", skip_invalid: bool = False) -> Pairs:
    """Every row of `table` as a pair; bad rows are an error listing them (file and line), or skipped when asked."""
    if fmt not in FORMATS:
        raise UserError(f"format {fmt!r} is not a preference format", f"Use one of {', '.join(FORMATS)}.")
    if fmt == "auto":
        fmt = detect(table.rows[0], table.source)
    pairs = Pairs(fmt)
    bad: list[str] = []
    for i, row in enumerate(table.rows):
        try:
            formats.check_row_fields(row)
            missing = [f for f in REQUIRED[fmt] if f not in row]
            if missing:
                raise InvalidRow(f"has no '{missing[0]}' field (a preference pair needs "
                                 f"{' and '.join(REQUIRED[fmt])})")
            prompt, chosen, rejected = CONVERTERS[fmt](row)
            check_roles([*prompt, {"role": "assistant", "content": chosen}])
            if chosen.strip() == rejected.strip():
                raise InvalidRow("chosen and rejected are the same answer: there is nothing to prefer")
            pairs.prompts.append(prompt)
            pairs.chosen.append(chosen)
            pairs.rejected.append(rejected)
        except InvalidRow as e:
            bad.append(f"{table.where(i)}: {e}")
        except Unsupported as e:
            raise formats.unsupported(e, table.where(i)) from None
    pairs.skipped = invalid_rows(bad, table, f"{fmt} preference pairs", skip_invalid)
    pairs.fingerprint = table.fingerprint
    pairs.fields_read, pairs.fields_unused = formats.fields_of(table.rows, READS[fmt])
    if not len(pairs):
        raise UserError(f"no usable preference pairs in {table.source}")
    return pairs


def load(dataset: str, split: str, skip_invalid: bool, columns: tuple[str, ...] = ()) -> Pairs:
    """The pairs of `dataset`, its fields renamed by data.columns; "sample" is the bundled preference sample."""
    table = sources.read(str(SAMPLE) if dataset == "sample" else dataset, split)
    return convert(formats.rename_columns(table, columns), skip_invalid=skip_invalid)


def as_text(tokenizer: PreTrainedTokenizerBase, prompt: Messages, answer: str, date_string: str) -> tuple[str, str]:
    """The prompt as the chat template renders it up to the generation prompt, and the answer as the template ends
    that turn: TRL's standard format, so that TRL trains the tokens our SFT rendering trains (render.py).

    The answer stops after the tokenizer's EOS (<|im_end|>, <|eot_id|>): TRL adds an EOS to an answer that does not end
    with one, which would double SmolLM2's, whose template writes a newline after it (that newline is the one token
    SFT trains and preference tuning does not). The prompt leaves out a BOS the tokenizer adds itself when encoding
    (Llama's <|begin_of_text|>): DPOTrainer encodes the text with special tokens, ORPOTrainer adds a missing BOS.
    """
    def render(turns: Messages, **options: bool) -> str:
        return tokenizer.apply_chat_template(turns, tokenize=False, date_string=date_string, **options)

    text = render(prompt, add_generation_prompt=True)
    whole = render([*prompt, {"role": "assistant", "content": answer}])
    if not whole.startswith(text):
        raise UserError(f"the chat template of {tokenizer.name_or_path} renders the prompt differently once an answer "
                        "follows, so the answer can't be separated from it",
                        "Use a model whose template renders conversations prefix by prefix (Llama, SmolLM2 do).")
    completion = whole[len(text):]
    eos = tokenizer.eos_token
    if eos and eos in completion:
        completion = completion[: completion.rindex(eos) + len(eos)]
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text, completion


def build(config: Config, pairs: Pairs, tokenizer: PreTrainedTokenizerBase, train_at: list[int],
          eval_at: list[int]) -> tuple[datasets.Dataset | None, datasets.Dataset | None, dict[str, Any],
                                       UserError | None]:
    """The pairs at `train_at` and `eval_at` as TRL's standard preference rows (prompt, chosen, rejected text), their
    token lengths, and why they can't train (too few pairs), if so. A pair whose prompt alone fills max_seq_length
    is dropped (no answer token would be left), as TRL's DPO drops it; in a longer pair each sequence (prompt and an
    answer) is cut to max_seq_length keeping its start: by TRL's collator for DPO (truncation_mode keep_start), by
    ORPORunTrainer.tokenize_row for ORPO."""
    import datasets

    from trainer.data.render import check_tokenizer

    check_tokenizer(tokenizer, needs_template=True)
    date = config.data.date_string
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for prompt, chosen, rejected in zip(pairs.prompts, pairs.chosen, pairs.rejected, strict=True):
        text, chosen_text = as_text(tokenizer, prompt, chosen, date)
        rows["prompt"].append(text)
        rows["chosen"].append(chosen_text)
        rows["rejected"].append(as_text(tokenizer, prompt, rejected, date)[1])
    count = lambda texts: np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])  # noqa: E731
    prompt_tokens = count(rows["prompt"])
    # The answers' tokens as TRL counts them: those of prompt + answer after the prompt's (a token or two may move
    # across the boundary, tests/test_preference_tuning.py).
    chosen_tokens = count([p + c for p, c in zip(rows["prompt"], rows["chosen"], strict=True)]) - prompt_tokens
    rejected_tokens = count([p + r for p, r in zip(rows["prompt"], rows["rejected"], strict=True)]) - prompt_tokens
    longer = prompt_tokens + np.maximum(chosen_tokens, rejected_tokens)
    max_length = config.model.max_seq_length
    usable = prompt_tokens < max_length

    def dataset(at: list[int]) -> datasets.Dataset | None:
        kept = [i for i in at if usable[i]]
        return datasets.Dataset.from_dict({k: [v[i] for i in kept] for k, v in rows.items()}) if kept else None

    train, eval_ds = dataset(train_at), dataset(eval_at)
    lengths = longer[train_at]
    stats = {
        "method": config.train.method,
        "train_rows": len(train) if train is not None else 0,  # pairs
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "rows_over_max_length": int(((lengths > max_length) & usable[train_at]).sum()),  # cut, keeping the start
        "rows_dropped": int((~usable[train_at]).sum()),  # the prompt alone fills max_seq_length
        "tokens_min": int(lengths.min()),
        "tokens_median": float(np.median(lengths)),
        "tokens_max": int(lengths.max()),
        # both sequences of a pair, as trained: samples_per_s in benchmark.json counts pairs
        "tokens_mean": round(float(np.minimum(lengths, max_length).mean() * 2), 1),
    }
    for side, tokens in (("prompt", prompt_tokens), ("chosen", chosen_tokens), ("rejected", rejected_tokens)):
        part = tokens[train_at]
        stats.update({f"{side}_tokens_min": int(part.min()), f"{side}_tokens_median": float(np.median(part)),
                      f"{side}_tokens_max": int(part.max())})
    per_step = config.train.micro_batch_size * config.train.grad_accum_steps
    problem = None
    if stats["train_rows"] < per_step:
        problem = UserError(f"{config.data.dataset} has {stats['train_rows']} preference pairs to train on (within "
                            f"max_seq_length={max_length}), but one optimizer step needs micro_batch_size x "
                            f"grad_accum_steps = {per_step}", "Add pairs, or take fewer per step "
                            "(--set micro_batch_size=1 --set grad_accum_steps=1).")
    return train, eval_ds, stats, problem
