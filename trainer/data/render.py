"""Render examples with the model's own chat template and mark the tokens the loss is computed on.

The assistant spans come from the template itself, for any model: the text before assistant turn i is what the
template renders for the turns before it plus the generation prompt, and the turn ends where the template's rendering
of turns 0..i ends. So the header the template writes before an answer is never trained, and the end-of-turn token
after it (<|eot_id|>, <|im_end|>, ...) always is, without naming any model's special tokens here.

Tool calls are rendered the same way, with the row's tools passed to the template (`tools=`): an assistant turn that
calls a tool is an assistant turn (trained), a tool's result is not; an answer marked `"train": False` (OpenAI's
`weight: 0`, formats.py) is rendered but not trained.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from trainer.config import DATE_STRING
from trainer.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, Any]]
Tools = list[dict[str, Any]]
PRIVATE_USE = 0xE000  # stand-ins for the first character of a control token typed in a message (see render)


@dataclass
class Rendered:
    """One row as text: the character ranges the loss covers, and those where a message spells a control token."""

    text: str
    spans: list[tuple[int, int]]
    typed: list[tuple[int, int]] = field(default_factory=list)  # encoded as plain text (only when asked)
    spells_control_token: bool = False


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Messages, date_string: str = DATE_STRING,
                    tools: Tools | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation as text, and the [start, end) character ranges of each trained assistant turn."""
    def render(turns: Messages, **options: bool) -> str:
        return tokenizer.apply_chat_template(turns, tools=tools or None, tokenize=False, date_string=date_string,
                                             **options)

    skipped = [m.get("train") is False for m in messages]
    messages = [{k: v for k, v in m.items() if k != "train"} for m in messages]  # not the template's business
    text = render(messages)
    spans = []
    turn_end: str | None = None
    for i, message in enumerate(messages):
        if message["role"] != "assistant" or skipped[i]:
            continue
        before = render(messages[:i], add_generation_prompt=True)
        through = text if i == len(messages) - 1 else render(messages[: i + 1])
        if text.startswith(before) and text.startswith(through) and len(before) < len(through):
            spans.append((len(before), len(through)))
            continue
        # The template renders a turn differently once later turns follow: Qwen3 keeps an answer's thinking block
        # only while it is the last (as at inference), Mistral v0.3 puts the system prompt into the last user turn.
        # The row is the whole conversation's text; the answer starts after the header (found by rendering it with
        # a marker for its content when the text before differs too) and ends at the first end-of-turn token.
        if turn_end is None:
            eot = end_of_turn(tokenizer, date_string)
            turn_end = tokenizer.convert_ids_to_tokens(eot) if eot is not None else ""
        start = len(before) if text.startswith(before) else marked_start(render, messages, i, text)
        end = text.find(turn_end, start) if turn_end and start >= 0 else -1
        if end < 0:
            raise UserError(
                f"the chat template of {tokenizer.name_or_path} renders earlier turns differently once later turns "
                f"follow, so the answer tokens of turn {i + 1} can't be located",
                "Use a model whose template renders conversations prefix by prefix (Llama, SmolLM2, Mistral do), "
                "or train on plain text with --format text.",
            )
        spans.append((start, end + len(turn_end)))
    return text, spans


MARKER = "\U000f0000"  # a supplementary private-use character: no message or template writes it


def marked_start(render: Callable[[Messages], str], messages: Messages, i: int, text: str) -> int:
    """Where answer `i` starts in `text`: rendered with its content replaced by MARKER, the text up to the marker is
    the same, and the spaces just before it belong to the answer (a SentencePiece token starts with its space:
    Mistral's "[/INST] 4"). -1 when that rendering differs from `text` before the marker."""
    marked = render([*messages[:i], {**messages[i], "content": MARKER}, *messages[i + 1:]])
    start = marked.find(MARKER)
    if start < 0 or not text.startswith(marked[:start]):
        return -1
    while start > 0 and text[start - 1] == " ":
        start -= 1
    return start


class ControlTokens:
    """The tokenizer's control tokens (special added tokens such as <|eot_id|>), found where a message spells one."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        tokens = sorted({t.content for t in tokenizer.added_tokens_decoder.values() if t.special and t.content},
                        key=len, reverse=True)
        self.pattern = re.compile("|".join(map(re.escape, tokens))) if tokens else None
        # Each first character gets a private-use stand-in of the same length, so the template's character offsets
        # still hold and the template's own control tokens stay apart from the typed ones.
        self.stand_in = {c: chr(PRIVATE_USE + i) for i, c in enumerate(sorted({t[0] for t in tokens}))}
        self.original = {v: k for k, v in self.stand_in.items()}
        marked = [re.escape(self.stand_in[t[0]] + t[1:]) for t in tokens]
        self.marked = re.compile("|".join(marked)) if marked else None

    def spelled(self, text: str) -> bool:
        return self.pattern is not None and self.pattern.search(text) is not None

    def mark(self, text: str) -> str:
        return self.pattern.sub(lambda m: self.stand_in[m[0][0]] + m[0][1:], text) if self.pattern else text

    def unmark(self, text: str) -> tuple[str, list[tuple[int, int]]]:
        """The text with the stand-ins restored, and the ranges of the typed control tokens."""
        if self.marked is None:
            return text, []
        ranges = [m.span() for m in self.marked.finditer(text)]
        chars = list(text)
        for start, _ in ranges:
            chars[start] = self.original[chars[start]]
        return "".join(chars), ranges


def render(tokenizer: PreTrainedTokenizerBase, messages: Messages, control: ControlTokens,
           date_string: str = DATE_STRING, control_tokens_as_text: bool = False, tools: Tools | None = None
           ) -> Rendered:
    spelled = any(control.spelled(m["content"]) for m in messages)
    if not (spelled and control_tokens_as_text):
        return Rendered(*assistant_spans(tokenizer, messages, date_string, tools), spells_control_token=spelled)
    marked = [{**m, "content": control.mark(m["content"])} for m in messages]
    text, spans = assistant_spans(tokenizer, marked, date_string, tools)
    text, typed = control.unmark(text)
    return Rendered(text, spans, typed, spells_control_token=True)


def encode(tokenizer: PreTrainedTokenizerBase, rows: list[Rendered]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Token ids and a 0/1 mask (1 exactly on the tokens that start inside a span) for each row. Rows without typed
    control tokens are encoded as one batch (tokenizers encodes a batch on every core)."""
    plain = [i for i, row in enumerate(rows) if not row.typed]
    encodings = tokenizer.backend_tokenizer.encode_batch([rows[i].text for i in plain], add_special_tokens=False)
    pieces: list[tuple[list[int], list[tuple[int, int]]]] = [([], [])] * len(rows)
    for i, encoding in zip(plain, encodings, strict=True):
        pieces[i] = (encoding.ids, encoding.offsets)
    for i, row in enumerate(rows):
        if row.typed:
            pieces[i] = encode_with_typed_tokens(tokenizer, row)
    out = []
    for (ids, offsets), row in zip(pieces, rows, strict=True):
        starts = np.fromiter((start for start, _ in offsets), dtype=np.int64, count=len(offsets))
        mask = np.zeros(len(ids), dtype=np.int8)
        for start, end in row.spans:
            mask[(starts >= start) & (starts < end)] = 1
        out.append((np.asarray(ids, dtype=np.int32), mask))
    return out


def encode_with_typed_tokens(tokenizer: PreTrainedTokenizerBase,
                             row: Rendered) -> tuple[list[int], list[tuple[int, int]]]:
    """The template's control tokens as control tokens, the typed ones as the plain text they spell."""
    ids: list[int] = []
    offsets: list[tuple[int, int]] = []
    bounds = [0, *[edge for span in row.typed for edge in span], len(row.text)]
    for n, (start, end) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if start == end:
            continue
        piece = tokenizer(row.text[start:end], add_special_tokens=False, return_offsets_mapping=True,
                          split_special_tokens=n % 2 == 1)  # odd pieces are the typed control tokens
        ids += piece["input_ids"]
        offsets += [(a + start, b + start) for a, b in piece["offset_mapping"]]
    return ids, offsets


def render_with_mask(tokenizer: PreTrainedTokenizerBase, messages: Messages, date_string: str = DATE_STRING,
                     control_tokens_as_text: bool = False, tools: Tools | None = None) -> tuple[list[int], list[int]]:
    """Token ids of the conversation and a 0/1 mask that is 1 exactly on the trained assistant tokens."""
    row = render(tokenizer, messages, ControlTokens(tokenizer), date_string, control_tokens_as_text, tools)
    ((ids, mask),) = encode(tokenizer, [row])
    return ids.tolist(), mask.tolist()


def render_text(tokenizer: PreTrainedTokenizerBase, text: str,
                control_tokens_as_text: bool = False) -> tuple[list[int], list[int]]:
    """Plain text: every token trained, ending with EOS so the model learns where a text stops."""
    ids = with_eos(tokenizer, tokenizer(text, add_special_tokens=True,
                                        split_special_tokens=control_tokens_as_text)["input_ids"])
    return ids, [1] * len(ids)


def with_eos(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> list[int]:
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        return ids + [tokenizer.eos_token_id]
    return ids


def end_of_turn(tokenizer: PreTrainedTokenizerBase, date_string: str = DATE_STRING) -> int | None:
    """The control token the chat template writes right after an answer (<|eot_id|>, <|im_end|>, <end_of_turn>, </s>,
    <|end|>): where a reply stops. Read from the template, so a family's (Gemma's <end_of_turn>) is found even where
    the tokenizer's EOS is another token (Gemma's <eos>). None without a template or control token there."""
    if not tokenizer.chat_template:
        return None
    from jinja2 import TemplateError

    answer = "Fine."
    try:
        text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                              {"role": "assistant", "content": answer}],
                                             tokenize=False, date_string=date_string)
    except TemplateError:  # a template that refuses a plain exchange (raise_exception): no end-of-turn to read
        return None
    after = tokenizer(text[text.rindex(answer) + len(answer):], add_special_tokens=False)["input_ids"]
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    return after[0] if after and after[0] in special else None


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The tokens a reply stops at: the end-of-turn token of the template, and EOS."""
    found = [end_of_turn(tokenizer), tokenizer.eos_token_id]
    return list(dict.fromkeys(i for i in found if i is not None))


# A conversation only a template with tool support renders whole: the tool's description, the call's argument and
# the result must all be in the text (a template without it drops them, or refuses the tool role).
PROBE_TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Probe: the weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
PROBE = [{"role": "user", "content": "What is the weather like?"},
         {"role": "assistant", "content": "", "tool_calls": [
             {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Trondheim"}}}]},
         {"role": "tool", "content": "Probe: 14 degrees and rain"},
         {"role": "assistant", "content": "It is 14 degrees and raining."}]


def lacks_tools(tokenizer: PreTrainedTokenizerBase, date_string: str = DATE_STRING) -> str:
    """What the chat template does with a conversation that defines and calls a tool, when it does not render it
    whole; "" when it does."""
    from jinja2 import TemplateError

    try:
        text = tokenizer.apply_chat_template(PROBE, tools=PROBE_TOOLS, tokenize=False, date_string=date_string)
    except TemplateError as e:
        return f"refuses a conversation with a tool call ({e})"
    missing = [what for what, sign in (("the tool definitions", "Probe: the weather in a city"),
                                       ("the tool calls", "Trondheim"), ("the tool results", "Probe: 14 degrees"))
               if sign not in text]
    return f"leaves out {' and '.join(missing)}" if missing else ""


def check_tools(tokenizer: PreTrainedTokenizerBase, rows: int, date_string: str = DATE_STRING) -> None:
    """Refuse `rows` rows with tools for a template that can't render them: they would train without the tools."""
    lacking = lacks_tools(tokenizer, date_string)
    if lacking:
        raise UserError(
            f"{rows} rows define or call tools, but the chat template of {tokenizer.name_or_path} has no tool "
            f"support: it {lacking}",
            "Use a model whose chat template renders tools (e.g. unsloth/Llama-3.2-1B-Instruct or Qwen/Qwen3-0.6B), "
            "or leave out the rows with tools.",
        )


def check_tokenizer(tokenizer: PreTrainedTokenizerBase, needs_template: bool) -> None:
    if not tokenizer.is_fast:
        raise UserError(
            f"the tokenizer of {tokenizer.name_or_path} is a slow (Python) tokenizer without character offsets",
            "Use a model that ships tokenizer.json (a fast tokenizer).",
        )
    if needs_template and not tokenizer.chat_template:
        raise UserError(
            f"{tokenizer.name_or_path} has no chat template, so chat data can't be rendered for it",
            "Use an Instruct model (e.g. unsloth/Llama-3.2-1B-Instruct-bnb-4bit), or train on plain text with "
            "--format text.",
        )
