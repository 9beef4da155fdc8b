"""Unpaired answers for KTO: read, check and convert to one prompt, one answer and its label (true: an answer to learn,
false: one to avoid).

The layouts, as the tools that define them write them:
- TRL standard: `prompt` and `completion` strings, and a boolean `label`.
- TRL conversational: `prompt` (messages) and `completion` (one assistant message, or a list holding one), `label`.
- LLaMA-Factory's KTO layout (and issue 33's `messages` + `label`): a conversation in `messages` or `conversations`
  (role/content or from/value turns) that ends with the marked answer, and `label` (LLaMA-Factory's column name
  for its `kto_tag`, which is read under that name too).
- Preference pairs in any layout of preferences.py, each as two answers (chosen: true, rejected: false), as TRL's
  KTOTrainer unpairs them (`unpair_preference_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import Config
from trainer.data import formats, preferences, sources
from trainer.data.formats import InvalidRow, Messages, Unsupported, check_roles, invalid_rows
from trainer.data.sources import Table
from trainer.errors import UserError

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

FORMATS = ("standard", "conversational", "messages", "pairs")
CONVERSATION_FIELDS = ("messages", "conversations")  # where LLaMA-Factory's rows keep the conversation
# The fields each layout reads; the others are listed by `trainer data` as not used.
READS = {"standard": ("prompt", "completion", *formats.LABEL_FIELDS),
         "conversational": ("prompt", "completion", *formats.LABEL_FIELDS),
         "messages": (*CONVERSATION_FIELDS, "system", *formats.LABEL_FIELDS)}
MARKS = "true (an answer to learn) or false (an answer to avoid)"


@dataclass
class Unpaired:
    """Each answer's prompt (chat messages ending with a user turn), the answer, and its label."""

    format: str
    prompts: list[Messages] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    labels: list[bool] = field(default_factory=list)
    skipped: int = 0
    fingerprint: str = ""
    fields_read: list[str] = field(default_factory=list)
    fields_unused: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def desirable(self) -> int:
        return sum(self.labels)


def detect(row: dict[str, Any], source: str) -> str:
    """The row's layout (module docstring), by its fields."""
    if formats.preference_fields(row):
        return "pairs"
    if not any(f in row for f in formats.LABEL_FIELDS):
        found = ", ".join(sorted(row)) or "none"
        raise UserError(f"{source} is not KTO data: its first row has the fields {found}, and no 'label' marking its "
                        "answer good or bad",
                        f"A KTO row is one answer with a 'label' of {MARKS}: TRL's 'prompt' + 'completion' + "
                        "'label', or a conversation in 'messages' (or 'conversations') + 'label' (LLaMA-Factory's). "
                        "Conversations without a label train with SFT: leave out --method.")
    if "completion" in row:
        completion = preferences.parsed(row["completion"])
        prompt = preferences.parsed(row.get("prompt"))
        return "conversational" if isinstance(completion, list | dict) or isinstance(prompt, list) else "standard"
    if any(f in row for f in CONVERSATION_FIELDS):
        return "messages"
    raise UserError(f"{source} has a '{next(f for f in formats.LABEL_FIELDS if f in row)}' but no answer: its first "
                    f"row has the fields {', '.join(sorted(row))}",
                    "Put the answer in 'completion' (with its 'prompt'), or the whole conversation in 'messages'.")


def label_of(row: dict[str, Any]) -> bool:
    """The row's label: a boolean, or its text in a CSV cell."""
    name = next((f for f in formats.LABEL_FIELDS if f in row), None)
    if name is None:
        raise InvalidRow(f"has no 'label' field: add \"label\": {MARKS}")
    value = row[name]
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    shown = "null" if value is None else repr(value)
    raise InvalidRow(f"'{name}' is {shown}, not a boolean: write {MARKS}")


def from_standard(row: dict[str, Any]) -> tuple[Messages, str]:
    if "prompt" not in row:
        raise InvalidRow("has no 'prompt' field (TRL's standard layout needs prompt, completion, label)")
    return ([{"role": "user", "content": formats.content_text(row["prompt"], "the 'prompt'")}],
            formats.content_text(row["completion"], "the 'completion'"))


def from_conversational(row: dict[str, Any]) -> tuple[Messages, str]:
    if "prompt" not in row:
        raise InvalidRow("has no 'prompt' field (TRL's conversational layout needs prompt, completion, label)")
    return preferences.read_messages(row["prompt"], "prompt"), preferences.read_answer(row["completion"], "completion")


def from_messages(row: dict[str, Any]) -> tuple[Messages, str]:
    name = next((f for f in CONVERSATION_FIELDS if f in row), None)
    if name is None:
        raise InvalidRow("has no 'messages' field (the conversation whose last answer the label marks)")
    messages = formats.with_system(preferences.read_messages(row[name], name), row)
    if messages[-1]["role"] != "assistant":
        raise InvalidRow(f"'{name}' does not end with an assistant answer (the answer the label marks)")
    return messages[:-1], messages[-1]["content"]


CONVERTERS = {"standard": from_standard, "conversational": from_conversational, "messages": from_messages}


def convert(table: Table, skip_invalid: bool = False) -> Unpaired:
    """Every row of `table` as a labelled answer; bad rows are an error listing them (file and line), or skipped when
    asked. Answers of one label only are refused: KTO learns from the two kinds."""
    fmt = detect(table.rows[0], table.source)
    if fmt == "pairs":
        data = from_pairs(preferences.convert(table, skip_invalid=skip_invalid))
    else:
        data = Unpaired(fmt)
        bad: list[str] = []
        for i, row in enumerate(table.rows):
            try:
                formats.check_row_fields(row, reads_labels=True)
                if fmt != "messages" and "completion" not in row:
                    raise InvalidRow(f"has no 'completion' field (TRL's {fmt} layout needs prompt, completion, label)")
                prompt, completion = CONVERTERS[fmt](row)
                label = label_of(row)
                check_roles([*prompt, {"role": "assistant", "content": completion}])
                data.prompts.append(prompt)
                data.completions.append(completion)
                data.labels.append(label)
            except InvalidRow as e:
                bad.append(f"{table.where(i)}: {e}")
            except Unsupported as e:
                raise formats.unsupported(e, table.where(i)) from None
        data.skipped = invalid_rows(bad, table, f"{fmt} KTO rows", skip_invalid)
        data.fields_read, data.fields_unused = formats.fields_of(table.rows, READS[fmt])
    data.fingerprint = table.fingerprint
    if not len(data):
        raise UserError(f"no usable KTO rows in {table.source}")
    if data.desirable in (0, len(data)):
        kind, other = ("true", "false") if data.desirable else ("false", "true")
        raise UserError(f"every answer in {table.source} is marked {kind} ({len(data)} rows): KTO learns from answers "
                        f"to learn (true) and answers to avoid (false), and needs both",
                        f"Add rows whose label is {other}"
                        + (", or train the answers with SFT: leave out --method kto and remove the label field."
                           if kind == "true" else "."))
    return data


def from_pairs(pairs: preferences.Pairs) -> Unpaired:
    """Each pair as two answers to its prompt: chosen true, rejected false (TRL's unpair_preference_dataset)."""
    n = len(pairs)
    return Unpaired(f"{pairs.format} (pairs, unpaired)", prompts=[*pairs.prompts, *pairs.prompts],
                    completions=[*pairs.chosen, *pairs.rejected], labels=[True] * n + [False] * n,
                    skipped=pairs.skipped, fields_read=pairs.fields_read, fields_unused=pairs.fields_unused)


def load(dataset: str, split: str, skip_invalid: bool, columns: tuple[str, ...] = ()) -> Unpaired:
    """The labelled answers of `dataset`, its fields renamed by data.columns; "sample" is the bundled preference pairs,
    unpaired."""
    table = sources.read(str(preferences.SAMPLE) if dataset == "sample" else dataset, split)
    return convert(formats.rename_columns(table, columns), skip_invalid)


def build(config: Config, data: Unpaired, tokenizer: PreTrainedTokenizerBase, train_at: list[int],
          eval_at: list[int]) -> tuple[datasets.Dataset | None, datasets.Dataset | None, dict[str, Any]]:
    """The answers at `train_at` and `eval_at` as TRL's standard unpaired rows (prompt and completion text as the
    chat template renders them, preferences.as_text; label) and their token lengths. An answer whose prompt alone
    fills max_seq_length is dropped, as TRL's KTO drops it; a longer one is cut to max_seq_length keeping its start,
    by TRL's collator."""
    import datasets

    from trainer.data.render import check_tokenizer

    check_tokenizer(tokenizer, needs_template=True)
    rows: dict[str, list[Any]] = {"prompt": [], "completion": [], "label": list(data.labels)}
    for prompt, completion in zip(data.prompts, data.completions, strict=True):
        text, answer = preferences.as_text(tokenizer, prompt, completion, config.data.date_string)
        rows["prompt"].append(text)
        rows["completion"].append(answer)
    count = lambda texts: np.array([len(ids) for ids in tokenizer(texts)["input_ids"]])  # noqa: E731
    prompt_tokens = count(rows["prompt"])
    # The answer's tokens as TRL counts them: those of prompt + answer after the prompt's.
    total = count([p + c for p, c in zip(rows["prompt"], rows["completion"], strict=True)])
    max_length = config.model.max_seq_length
    usable = prompt_tokens < max_length
    labels = np.array(data.labels)

    def dataset(at: list[int]) -> datasets.Dataset | None:
        kept = [i for i in at if usable[i]]
        return datasets.Dataset.from_dict({k: [v[i] for i in kept] for k, v in rows.items()}) if kept else None

    train, eval_ds = dataset(train_at), dataset(eval_at)
    trained = [i for i in train_at if usable[i]]
    lengths = total[train_at]
    stats = {
        "method": config.train.method,
        "train_rows": len(trained),
        "eval_rows": len(eval_ds) if eval_ds is not None else 0,
        "desirable": int(labels[trained].sum()) if trained else 0,  # of the train rows
        "undesirable": int((~labels[trained]).sum()) if trained else 0,
        "rows_over_max_length": int(((lengths > max_length) & usable[train_at]).sum()),  # cut, keeping the start
        "rows_dropped": int((~usable[train_at]).sum()),  # the prompt alone fills max_seq_length
        "tokens_min": int(lengths.min()),
        "tokens_median": float(np.median(lengths)),
        "tokens_max": int(lengths.max()),
        # the answer's sequence, as trained (the KL term's mismatched sequence is scored without a gradient)
        "tokens_mean": round(float(np.minimum(lengths, max_length).mean()), 1),
    }
    for side, tokens in (("prompt", prompt_tokens), ("completion", total - prompt_tokens)):
        part = tokens[train_at]
        stats.update({f"{side}_tokens_min": int(part.min()), f"{side}_tokens_median": float(np.median(part)),
                      f"{side}_tokens_max": int(part.max())})
    return train, eval_ds, stats
