"""Render examples with the model's own chat template and mark the tokens the loss is computed on.

The assistant spans come from the template itself, for any model: the text before assistant turn i is what the
template renders for the turns before it plus the generation prompt, and the turn ends where the template's rendering
of turns 0..i ends. So the header the template writes before an answer is never trained, and the end-of-turn token
after it (<|eot_id|>, <|im_end|>, ...) always is, without naming any model's special tokens here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainer.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Messages = list[dict[str, str]]


def assistant_spans(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[str, list[tuple[int, int]]]:
    """The whole conversation as text, and the [start, end) character ranges of each assistant turn."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.apply_chat_template(messages[:i], tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        if not (text.startswith(before) and text.startswith(through) and len(before) < len(through)):
            raise UserError(
                f"the chat template of {tokenizer.name_or_path} renders earlier turns differently once later turns "
                f"follow, so the answer tokens of turn {i + 1} can't be located",
                "Use a model whose template renders conversations prefix by prefix (Llama, SmolLM2, Mistral do), "
                "or train on plain text with --format text.",
            )
        spans.append((len(before), len(through)))
    return text, spans


def render_with_mask(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> tuple[list[int], list[int]]:
    """Token ids of the conversation and a 0/1 mask that is 1 exactly on assistant tokens."""
    text, spans = assistant_spans(tokenizer, messages)
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [int(any(start <= first < end for start, end in spans)) for first, _ in encoding["offset_mapping"]]
    return encoding["input_ids"], mask


def render_text(tokenizer: PreTrainedTokenizerBase, text: str) -> tuple[list[int], list[int]]:
    """Plain text: every token trained, ending with EOS so the model learns where a text stops."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None and (not ids or ids[-1] != tokenizer.eos_token_id):
        ids = ids + [tokenizer.eos_token_id]
    return ids, [1] * len(ids)


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
