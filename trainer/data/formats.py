"""Dataset formats (ShareGPT, OpenAI messages, Alpaca, plain text): detect them and convert rows to chat messages.

Tool calls arrive in one internal form, transformers' tool-use messages (what `apply_chat_template` renders): an
assistant message `{"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name",
"arguments": {...}}}]}`, a result `{"role": "tool", "content": ...}`, and the row's tools as OpenAI's
`{"type": "function", "function": {...}}` (Examples.tools). An assistant message with OpenAI's `weight: 0` carries
`"train": False` (render.py leaves it out of the mask).

A field that would change what a row means and that this tool cannot train (images; a KTO label, but with --method
kto; a weight other than 0 or 1) is refused with its name, never dropped: training without it would teach something
else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from trainer.console import console
from trainer.data import sources, tool_calls
from trainer.data.row_errors import InvalidRow, Unsupported
from trainer.data.sources import Table, json_error
from trainer.data.tool_calls import Tools
from trainer.errors import UserError

# The field that identifies each format, in detection order.
SIGNATURES = {
    "sharegpt": ("conversations",),
    "openai": ("messages",),
    "alpaca": ("instruction", "output"),
    "text": ("text",),
}
# LLaMA-Factory's sharegpt tags: a `function_call` turn is the assistant calling, an `observation` the result.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system",
                  "function_call": "assistant", "observation": "tool", "tool": "tool"}
# OpenAI's `tool` results, its deprecated `function` ones, and Llama's name for them (`ipython`).
OPENAI_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system", "tool": "tool",
                "function": "tool", "ipython": "tool"}
# The fields each format reads (besides its signature), so that `data` can list what a file holds and goes unused.
READS = {"sharegpt": ("conversations", "system", "tools"), "openai": ("messages", "tools", "functions"),
         "alpaca": ("instruction", "input", "output", "system", "history"), "text": ("text",)}
# Preference layouts (preferences.py reads them): SFT refuses them by name instead of training half of each pair.
PREFERENCE_SIGNATURES = (("chosen", "rejected"), ("chosen_messages", "rejected_messages"),
                         ("preferred_output", "non_preferred_output"))
TEXT_PARTS = ("text", "input_text", "output_text")  # OpenAI's chat and Responses APIs' text part types
MEDIA_FIELDS = ("images", "image", "videos", "audios")  # LLaMA-Factory's and TRL's vision/audio columns
MEDIA_PLACEHOLDERS = ("<image>", "<video>", "<audio>")  # LLaMA-Factory's: where the media goes in the text
TOOL_FIELDS = ("tools", "functions")  # OpenAI's (and sharegpt's) tool definitions; `functions` is OpenAI's older name
TOOL_TURN_FIELDS = ("tool_calls", "function_call")  # an OpenAI assistant message that calls a tool (new, deprecated)
TOOL_ROLES = ("tool", "function", "function_call", "observation", "ipython")  # roles of calls and their results
LABEL_FIELDS = ("label", "kto_tag")  # KTO's good/bad mark of an unpaired answer (TRL's, LLaMA-Factory's)
WEIGHT_FIELDS = ("weight", "loss_weight")  # OpenAI's per-message weight, LLaMA-Factory v1's

Messages = list[dict[str, Any]]


@dataclass
class Examples:
    """Rows converted to one format: chat conversations, or plain texts for `text`."""

    format: str
    conversations: list[Messages]
    texts: list[str]
    tools: list[Tools] = field(default_factory=list)  # each conversation's tool definitions ([] for none)
    skipped: int = 0
    fingerprint: str = ""  # the source's (Table.fingerprint); empty when unknown
    fields_read: list[str] = field(default_factory=list)  # the rows' fields this format reads
    fields_unused: list[str] = field(default_factory=list)  # the rows' other fields (ids, sources, scores)

    def __len__(self) -> int:
        return len(self.texts) if self.format == "text" else len(self.conversations)

    def tools_of(self, i: int) -> Tools | None:
        """Conversation i's tool definitions, None without (as apply_chat_template's `tools` takes them)."""
        return (self.tools[i] or None) if i < len(self.tools) else None

    def calls_tools(self, i: int) -> bool:
        return any(m["role"] == "tool" or "tool_calls" in m for m in self.conversations[i])

    def has_tools(self, i: int) -> bool:
        """Whether conversation i defines tools or calls them: it needs a template with tool support."""
        return bool(self.tools_of(i)) or self.calls_tools(i)

    def rows_with_tools(self) -> int:
        return sum(map(self.has_tools, range(len(self.conversations))))


def unsupported(e: Unsupported, where: str) -> UserError:
    return UserError(f"{where}: {e}", e.hint)


VISION = "this is vision data; this tool trains text models"
VISION_HINT = "Use text-only rows (no image, audio or file parts, no images field, no <image> placeholders)."
NO_TOOLS = "tool calls are trained as SFT conversations only (sharegpt or OpenAI messages)"
TOOLS_HINT = ("Write them as sharegpt function_call/observation turns or OpenAI messages with tool_calls and tool "
              "results, trained without --method dpo/orpo; or leave out the rows (and the field) with tools.")


def fields_of(rows: list[dict[str, Any]], read: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The fields of `rows` that `read` names, and the others, in first-seen order."""
    seen = list(dict.fromkeys(name for row in rows for name in row))
    return [f for f in seen if f in read], [f for f in seen if f not in read]


def filled(value: Any) -> bool:
    """Whether a field holds something: glaive's and CSV cells' "[]" (JSON text of an empty list) does not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return bool(value.strip())
    return bool(value)


def check_row_fields(row: dict[str, Any], reads_tools: bool = False, reads_labels: bool = False) -> None:
    """Refuse the row-level fields that change what a row means and that the format reading `row` does not train:
    tools, unless it `reads_tools`; KTO's labels, unless it `reads_labels` (unpaired.py)."""
    for name in MEDIA_FIELDS:
        if filled(row.get(name)):
            raise Unsupported(f"the field '{name}' holds media: {VISION}", VISION_HINT)
    for name in TOOL_FIELDS:
        if filled(row.get(name)) and not reads_tools:
            raise Unsupported(f"the field '{name}' defines tools, and {NO_TOOLS}", TOOLS_HINT)
    name = labelled(row)
    if name and not reads_labels:
        raise Unsupported(f"the field '{name}' marks each answer good or bad (KTO's unpaired data): SFT would train "
                          "the bad answers as targets", label_hint(name))


def labelled(row: dict[str, Any]) -> str | None:
    """The field of `row` that marks its answer good or bad (KTO's label), if it has one."""
    return next((name for name in LABEL_FIELDS
                 if isinstance(row.get(name), bool) or str(row.get(name)).lower() in ("true", "false")), None)


def label_hint(name: str) -> str:
    return (f"Add --method kto to train on the answers marked good and bad (TRL's KTOTrainer); or, for SFT on the "
            f"good answers only, keep the rows whose '{name}' is true and remove the field.")


def check_message_fields(message: dict[str, Any], role: str | None, what: str) -> None:
    """Refuse a message's tool calls and a weight that would leave an answer untrained (preference pairs: each
    answer is the pair's whole point)."""
    for name in TOOL_TURN_FIELDS:
        if message.get(name):
            raise Unsupported(f"{what} has '{name}', and {NO_TOOLS}", TOOLS_HINT)
    for name in WEIGHT_FIELDS:
        weight = message.get(name)
        if role == "assistant" and weight is not None and weight != 1:
            raise Unsupported(f"{what} has '{name}': {weight}, and a preference pair trains every answer",
                              f"Remove those messages, or set their '{name}' to 1.")


def trained(message: dict[str, Any], role: str, what: str) -> bool:
    """Whether an assistant message is trained: OpenAI's `weight` (LLaMA-Factory v1's `loss_weight`) 0 says no, 1 or
    none yes. Other roles are never trained, so a weight there changes nothing."""
    for name in WEIGHT_FIELDS:
        weight = message.get(name)
        if role != "assistant" or weight is None:
            continue
        if isinstance(weight, bool) or weight not in (0, 1):
            raise Unsupported(f"{what} has '{name}': {weight!r}, and an answer is trained (1) or not (0), nothing "
                              "between", f"Set '{name}' to 0 (not trained) or 1 (trained).")
        return weight == 1
    return True


def content_text(value: Any, what: str, field: str = "") -> str:
    """A message's content as text: a string, or a list of content parts (OpenAI's `{"type": "text", "text": ...}`,
    LLaMA-Factory's `{"type": "text", "value": ...}`) whose text parts are joined. Media is refused as vision data,
    naming `what` (of the row's `field`)."""
    where = f"{what} of '{field}'" if field else what
    if isinstance(value, list):
        texts = []
        for n, part in enumerate(value, start=1):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind in TEXT_PARTS:
                text = part.get("text", part.get("value"))
                if not isinstance(text, str):
                    raise InvalidRow(f"part {n} of {what} is a text part without text")
                texts.append(text)
            elif isinstance(kind, str) and any(media in kind for media in ("image", "audio", "video", "file")):
                raise Unsupported(f"part {n} of {where} is of type '{kind}': {VISION}", VISION_HINT)
            else:
                raise InvalidRow(f"part {n} of {what} is not a content part of type text (found {kind!r})")
        value = "".join(texts)
    text = _text(value, what)
    placeholder = next((p for p in MEDIA_PLACEHOLDERS if p in text), None)
    if placeholder:
        raise Unsupported(f"{where} holds the placeholder {placeholder}: {VISION}", VISION_HINT)
    return text


def preference_fields(row: dict[str, Any]) -> tuple[str, str] | None:
    return next((pair for pair in PREFERENCE_SIGNATURES if all(f in row for f in pair)), None)


def not_preference_data(row: dict[str, Any], source: str) -> None:
    """SFT refuses a preference or KTO file by name, with the flag that trains it (no skip_invalid_rows: every row
    would fail)."""
    pair = preference_fields(row)
    if pair:
        raise UserError(f"{source} is preference data (its first row has '{pair[0]}' and '{pair[1]}'), and SFT trains "
                        "on conversations", "Add --method dpo (or --method orpo) to train on the pairs.")
    name = labelled(row)
    if name:  # before the format is told: TRL's prompt/completion/label has no format of conversations
        raise UserError(f"{source} is KTO data (its first row's '{name}' marks the answer good or bad), and SFT would "
                        "train the bad answers as targets", label_hint(name))


# A file's own names for a prompt and an answer (TRL's prompt/completion, Q&A sets), offered as data.columns.
PROMPT_NAMES = ("question", "prompt", "query", "problem", "instruction", "input", "user", "human")
ANSWER_NAMES = ("answer", "completion", "response", "output", "solution", "reply", "assistant", "gpt")


def detect_format(row: dict[str, Any], source: str) -> str:
    for name, fields in SIGNATURES.items():
        if all(f in row for f in fields):
            return name
    found = ", ".join(sorted(row)) or "none"
    columns = columns_for(row)
    raise UserError(
        f"cannot tell the format of {source}: its first row has the fields {found}",
        "Expected 'conversations' (ShareGPT), 'messages' (OpenAI), 'instruction' + 'output' (Alpaca) or 'text'; "
        f"rename the fields, pass --format, or map them: --set columns={columns}.",
        setting="" if "YOUR_" in columns else f"columns={columns}",
    )


def columns_for(row: dict[str, Any]) -> str:
    """The data.columns value that reads this row's prompt and answer fields as Alpaca's: each side by its name, or,
    in a row of two fields, the other one; a placeholder for a side it cannot tell."""
    lower = {str(name).lower(): str(name) for name in row}
    prompt = next((lower[n] for n in PROMPT_NAMES if n in lower), None)
    answer = next((lower[n] for n in ANSWER_NAMES if n in lower and lower[n] != prompt), None)
    if len(row) == 2 and (prompt is None) != (answer is None):
        other = next(str(name) for name in row if str(name) not in (prompt, answer))
        prompt, answer = prompt or other, answer or other
    pairs = [f"{prompt or 'YOUR_PROMPT_FIELD'}:instruction"] if prompt != "instruction" else []
    pairs += [f"{answer or 'YOUR_ANSWER_FIELD'}:output"] if answer != "output" else []
    return ",".join(pairs)


def rename_columns(table: Table, columns: tuple[str, ...]) -> Table:
    """The rows with each FIELD of data.columns (FIELD:NAME) read as NAME; a FIELD no row has, or a NAME a row
    already has, is an error (one of the two would be silently ignored)."""
    if not columns:
        return table
    mapping = dict(item.split(":", 1) for item in columns)
    seen = set().union(*(row.keys() for row in table.rows))
    for old, new in mapping.items():
        if old not in seen:
            raise UserError(f"data.columns maps '{old}', which no row of {table.source} has (its fields: "
                            f"{', '.join(sorted(seen)) or 'none'})", "Name the file's own fields before the colon.")
        clash = next((i for i, row in enumerate(table.rows) if new in row and new not in mapping), None)
        if clash is not None:
            raise UserError(f"data.columns maps '{old}' to '{new}', but {table.where(clash)} already has '{new}'",
                            f"Map '{new}' to another name too, or leave '{old}' out.")
    rows = [{mapping.get(k, k): v for k, v in row.items()} for row in table.rows]
    # The rows differ from the file's: cached tokens are keyed by the mapping too.
    fingerprint = sources.digest(f"{table.fingerprint}:{','.join(columns)}".encode()) if table.fingerprint else ""
    return Table(table.source, rows, table.lines, fingerprint)


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


def tool_role(role: Any, what: str) -> None:
    """Preference pairs: a tool call or result is refused by name (not called an unknown role)."""
    if str(role).lower() in TOOL_ROLES:
        raise Unsupported(f"{what} has the role '{role}', and {NO_TOOLS}", TOOLS_HINT)


def read_tools(row: dict[str, Any]) -> Tools:
    """The row's tool definitions: `tools`, or OpenAI's older `functions`."""
    name = next((f for f in TOOL_FIELDS if filled(row.get(f))), None)
    return tool_calls.read_tools(row[name], name) if name else []


def message(role: str, content: str, turn: dict[str, Any], what: str, calls: list[dict[str, Any]] | None = None
            ) -> dict[str, Any]:
    """One message of the internal form: its calls (a result: the call's id and name), and `train: False` for an
    answer weighted 0."""
    out: dict[str, Any] = {"role": role, "content": content}
    if calls:
        out["tool_calls"] = calls
    if role == "tool":  # which call it answers: templates that pair them (Mistral's) read these
        out |= {k: turn[k] for k in ("tool_call_id", "name") if isinstance(turn.get(k), str)}
    if not trained(turn, role, what):
        out["train"] = False
    return out


def with_system(messages: Messages, row: dict[str, Any]) -> Messages:
    """A row's own `system` field (LLaMA-Factory's sharegpt and alpaca columns) as the system message."""
    system = row.get("system")
    if isinstance(system, str) and system.strip() and messages[0]["role"] != "system":
        return [{"role": "system", "content": system}, *messages]
    return messages


def from_sharegpt(row: dict[str, Any]) -> Messages:
    messages = []
    for n, turn in enumerate(_turns(row["conversations"], "conversations"), start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise InvalidRow(f"turn {n} needs the fields 'from' and 'value'")
        role = SHAREGPT_ROLES.get(str(turn["from"]).lower())
        if role is None:
            raise InvalidRow(f"turn {n} has the unknown role '{turn['from']}' (expected human, gpt, system, "
                             "function_call or observation)")
        what = f"turn {n} of 'conversations'"
        if str(turn["from"]).lower() == "function_call":
            calls = tool_calls.read_calls(turn["value"], f"turn {n} (function_call)")
            messages.append(message(role, "", turn, what, calls))
        else:
            messages.append(message(role, content_text(turn["value"], f"turn {n}", "conversations"), turn, what))
    return with_system(messages, row)


def from_openai(row: dict[str, Any]) -> Messages:
    messages = []
    for n, turn in enumerate(_turns(row["messages"], "messages"), start=1):
        if not isinstance(turn, dict) or "role" not in turn:
            raise InvalidRow(f"message {n} needs the fields 'role' and 'content'")
        role = OPENAI_ROLES.get(str(turn["role"]).lower())
        if role is None:
            raise InvalidRow(f"message {n} has the unsupported role '{turn['role']}' "
                             "(expected system, user, assistant or tool)")
        what = f"message {n} of 'messages'"
        name = next((f for f in TOOL_TURN_FIELDS if turn.get(f)), None)
        if name and role == "assistant":  # an answer that calls tools: its content may be null or absent
            content = turn.get("content")
            text = "" if content is None or content == "" else content_text(content, f"message {n}", "messages")
            messages.append(message(role, text, turn, what, tool_calls.read_calls(turn[name], f"message {n} ({name})")))
            continue
        if name:
            raise InvalidRow(f"message {n} has '{name}' but the role '{turn['role']}': only assistant messages call "
                             "tools")
        if "content" not in turn:
            raise InvalidRow(f"message {n} needs the fields 'role' and 'content'")
        messages.append(message(role, content_text(turn["content"], f"message {n}", "messages"), turn, what))
    return messages


def from_alpaca(row: dict[str, Any]) -> Messages:
    prompt = content_text(row["instruction"], "'instruction'")
    extra = row.get("input")
    if isinstance(extra, str) and extra.strip():
        prompt = f"{prompt}\n\n{content_text(extra, 'the input')}"
    messages = []
    # LLaMA-Factory's alpaca `history`: the earlier [instruction, response] turns of the same conversation.
    history = row.get("history") or []
    if not isinstance(history, list) or not all(isinstance(t, list) and len(t) == 2 for t in history):
        raise InvalidRow("'history' must be a list of [instruction, response] pairs")
    for n, (asked, answered) in enumerate(history, start=1):
        messages += [{"role": "user", "content": content_text(asked, f"'history' pair {n}")},
                     {"role": "assistant", "content": content_text(answered, f"'history' pair {n}")}]
    messages += [{"role": "user", "content": prompt},
                 {"role": "assistant", "content": content_text(row["output"], "'output'")}]
    return with_system(messages, row)


# What may follow each turn: an answer that calls tools is followed by their results, and those by more results or
# the next answer (which may call again).
NEXT_ROLES = {"start": ("user",), "user": ("assistant",), "assistant": ("user",), "call": ("tool",),
              "tool": ("tool", "assistant")}


def check_roles(messages: Messages) -> None:
    """An optional system message, then user and assistant alternating (an assistant's tool calls followed by their
    results, then the assistant again), ending with an assistant turn that is trained."""
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns:
        raise InvalidRow("has only a system message")
    previous = "start"
    for m in turns:
        if m["role"] not in NEXT_ROLES[previous]:
            order = ", ".join("assistant (tool call)" if "tool_calls" in t else t["role"] for t in messages)
            if not any(t["role"] == "tool" or "tool_calls" in t for t in messages):
                raise InvalidRow(f"roles don't alternate user/assistant ({order})")
            raise InvalidRow(f"roles are out of order ({order}): a user turn, then the assistant, whose tool calls "
                             "are followed by their results, then the assistant again")
        previous = "call" if "tool_calls" in m else m["role"]
    if turns[-1]["role"] != "assistant":
        raise InvalidRow(f"ends with a {turns[-1]['role']} turn, so there is no answer to learn")
    if all(m.get("train") is False for m in turns if m["role"] == "assistant"):
        raise InvalidRow("has weight 0 on every assistant turn, so there is no answer to learn")


CONVERTERS = {"sharegpt": from_sharegpt, "openai": from_openai, "alpaca": from_alpaca}


def convert(table: Table, fmt: str = "auto", skip_invalid: bool = False) -> Examples:
    """Every row of `table` in one format; bad rows are an error listing them, or skipped when asked."""
    not_preference_data(table.rows[0], table.source)
    if fmt == "auto":
        fmt = detect_format(table.rows[0], table.source)
    required = SIGNATURES[fmt]
    examples = Examples(fmt, [], [])
    bad: list[str] = []
    for i, row in enumerate(table.rows):
        try:
            check_row_fields(row, reads_tools=fmt in ("sharegpt", "openai"))
            missing = [f for f in required if f not in row]
            if missing:
                raise InvalidRow(f"has no '{missing[0]}' field (format {fmt} needs {', '.join(required)})")
            if fmt == "text":
                examples.texts.append(content_text(row["text"], "'text'"))
            else:
                messages = CONVERTERS[fmt](row)
                check_roles(messages)
                tools = read_tools(row)
                examples.conversations.append(messages)
                examples.tools.append(tools)
        except InvalidRow as e:
            bad.append(f"{table.where(i)}: {e}")
        except Unsupported as e:
            raise unsupported(e, table.where(i)) from None
    examples.skipped = invalid_rows(bad, table, fmt, skip_invalid)
    examples.fingerprint = table.fingerprint
    examples.fields_read, examples.fields_unused = fields_of(table.rows, READS[fmt])
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
