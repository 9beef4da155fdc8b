"""Dataset formats (ShareGPT, OpenAI messages, Alpaca, plain text): detect them and convert rows to chat messages."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from trainer.console import console
from trainer.data.sources import Table, json_error
from trainer.errors import UserError

# The field that identifies each format, in detection order.
SIGNATURES = {
    "sharegpt": ("conversations",),
    "openai": ("messages",),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}

Messages = list[dict[str, str]]


@dataclass
class Examples:
    """Rows converted to one format: chat conversations, or plain texts for `text`."""

    format: str
    conversations: list[Messages]
    texts: list[str]
    skipped: int = 0
    fingerprint: str = ""  # the source's (Table.fingerprint); empty when unknown

    def __len__(self) -> int:
        return len(self.texts) if self.format == "text" else len(self.conversations)


class InvalidRow(ValueError):
    """One row the chosen format cannot use; collected so the user sees every bad row at once."""


def detect_format(row: dict[str, Any], source: str) -> str:
    for name, fields in SIGNATURES.items():
        if all(f in row for f in fields):
            return name
    found = ", ".join(sorted(row)) or "none"
    raise UserError(
        f"cannot tell the format of {source}: its first row has the fields {found}",
        "Expected 'conversations' (ShareGPT), 'messages' (OpenAI), 'instruction' + 'output' (Alpaca) or 'text'; "
        "rename the fields or pass --format.",
    )


def _turns(value: Any, field: str) -> list[Any]:
    if isinstance(value, str):  # CSV cells carry JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise InvalidRow(f"'{field}' is text that is not valid JSON ({json_error(e)} at column {e.colno})"
                             ) from None
    if not isinstance(value, list) or not value:
        raise InvalidRow(f"'{field}' must be a non-empty list of turns")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRow(f"{what} is empty or not text")
    return value


def from_sharegpt(row: dict[str, Any]) -> Messages:
    messages = []
    for n, turn in enumerate(_turns(row["conversations"], "conversations"), start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise InvalidRow(f"turn {n} needs the fields 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise InvalidRow(f"turn {n} has the unknown role '{turn['from']}' (expected human, gpt or system)")
        messages.append({"role": role, "content": _text(turn["value"], f"turn {n}")})
    return messages


def from_openai(row: dict[str, Any]) -> Messages:
    messages = []
    for n, turn in enumerate(_turns(row["messages"], "messages"), start=1):
        if not isinstance(turn, dict) or "role" not in turn or "content" not in turn:
            raise InvalidRow(f"message {n} needs the fields 'role' and 'content'")
        role = OPENAI_ROLES.get(str(turn["role"]).lower())
        if role is None:
            raise InvalidRow(f"message {n} has the unsupported role '{turn['role']}' "
                             "(expected system, user, assistant)")
        messages.append({"role": role, "content": _text(turn["content"], f"message {n}")})
    return messages


def from_alpaca(row: dict[str, Any]) -> Messages:
    prompt = _text(row["instruction"], "'instruction'")
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{extra}"
    messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row["output"], "'output'")}]
    system = row.get("system")
    if isinstance(system, str) and system.strip():
        messages.insert(0, {"role": "system", "content": system})
    return messages


def check_roles(messages: Messages) -> None:
    """An optional system message, then user and assistant strictly alternating, ending with the assistant."""
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns:
        raise InvalidRow("has only a system message")
    for n, message in enumerate(turns):
        expected = "user" if n % 2 == 0 else "assistant"
        if message["role"] != expected:
            order = ", ".join(m["role"] for m in messages)
            raise InvalidRow(f"roles don't alternate user/assistant ({order})")
    if turns[-1]["role"] != "assistant":
        raise InvalidRow("ends with a user turn, so there is no answer to learn")


CONVERTERS = {"sharegpt": from_sharegpt, "openai": from_openai, "alpaca": from_alpaca}


def convert(table: Table, fmt: str = "auto", skip_invalid: bool = False) -> Examples:
    """Every row of `table` in one format; bad rows are an error listing them, or skipped when asked."""
    if fmt == "auto":
        fmt = detect_format(table.rows[0], table.source)
    required = SIGNATURES[fmt]
    examples = Examples(fmt, [], [])
    bad: list[str] = []
    for i, row in enumerate(table.rows):
        try:
            missing = [f for f in required if f not in row]
            if missing:
                raise InvalidRow(f"has no '{missing[0]}' field (format {fmt} needs {', '.join(required)})")
            if fmt == "text":
                examples.texts.append(_text(row["text"], "'text'"))
            else:
                messages = CONVERTERS[fmt](row)
                check_roles(messages)
                examples.conversations.append(messages)
        except InvalidRow as e:
            bad.append(f"{table.where(i)}: {e}")
    examples.skipped = invalid_rows(bad, table, fmt, skip_invalid)
    examples.fingerprint = table.fingerprint
    if not len(examples):
        raise UserError(f"no usable rows in {table.source}")
    return examples


def invalid_rows(bad: list[str], table: Table, what: str, skip_invalid: bool) -> int:
    """The rows of `table` that cannot be used as `what` (each "where: why"): an error listing them, or, when they
    may be skipped, a line saying so; how many were skipped."""
    if bad and not skip_invalid:
        shown = "\n".join(f"  {b}" for b in bad[:5])
        more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise UserError(f"{len(bad)} of {len(table.rows)} rows in {table.source} can't be used as {what}:\n"
                        f"{shown}{more}", "Fix those rows, or pass --set skip_invalid_rows=true to leave them out.")
    if bad:
        console.print(f"[yellow]Skipped {len(bad)} invalid rows of {table.source}[/] (first: {bad[0]})")
    return len(bad)
