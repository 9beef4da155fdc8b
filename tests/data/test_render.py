"""Masks token by token for two real chat templates: labels are trained exactly on assistant turns."""

import pytest

from trainer.data.render import assistant_spans, render_text, render_with_mask
from trainer.errors import UserError

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And times 3?"},
    {"role": "assistant", "content": "12, since 4 x 3 = 12."},
]


def expected(tokenizer, text, trained):
    """Ids of the whole text, and labels found without offsets: a token is trained when the text decoded before it
    ends inside one of the `trained` strings (located in the text in order)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ranges, at = [], 0
    for piece in trained:
        start = text.index(piece, at)
        ranges.append((start, start + len(piece)))
        at = start + len(piece)
    starts = [len(tokenizer.decode(ids[:i])) for i in range(len(ids))]
    return ids, [int(any(a <= s < b for a, b in ranges)) for s in starts]


@pytest.mark.parametrize("template, end_of_turn", [("smol", "<|im_end|>\n"), ("llama", "<|eot_id|>")])
def test_mask_is_exactly_the_assistant_turns(template, end_of_turn, smol_tokenizer, llama_tokenizer):
    tokenizer = {"smol": smol_tokenizer, "llama": llama_tokenizer}[template]
    ids, mask = render_with_mask(tokenizer, CONVERSATION)
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    # Every answer and its end-of-turn marker, nothing of the headers, system or user turns.
    trained = ["4" + end_of_turn, "12, since 4 x 3 = 12." + end_of_turn]
    assert (ids, mask) == expected(tokenizer, text, trained)
    assert tokenizer.decode(ids) == text
    spans, current = [], []
    for token, label in zip(ids, mask, strict=True):
        if label:
            current.append(token)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    spans += [tokenizer.decode(current)] if current else []
    assert spans == trained


def test_llama_headers_are_never_trained(llama_tokenizer):
    ids, mask = render_with_mask(llama_tokenizer, CONVERSATION)
    header_ids = set(llama_tokenizer.convert_tokens_to_ids(["<|start_header_id|>", "<|end_header_id|>",
                                                             "<|begin_of_text|>"]))
    assert all(not label for token, label in zip(ids, mask, strict=True) if token in header_ids)
    eot = llama_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    # system, user, assistant, user, assistant each end with <|eot_id|>; only the two answers' are trained
    assert [label for token, label in zip(ids, mask, strict=True) if token == eot] == [0, 0, 1, 0, 1]


def test_single_turn_without_system(smol_tokenizer):
    ids, mask = render_with_mask(smol_tokenizer, CONVERSATION[1:3])
    text = smol_tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=False)
    assert "You are a helpful AI assistant" in text  # SmolLM2's default system prompt: context, not trained
    assert (ids, mask) == expected(smol_tokenizer, text, ["4<|im_end|>\n"])


def test_text_rows_train_every_token_and_end_with_eos(smol_tokenizer):
    ids, mask = render_text(smol_tokenizer, "Once upon a time.")
    assert ids[-1] == smol_tokenizer.eos_token_id and mask == [1] * len(ids)
    assert smol_tokenizer.decode(ids[:-1]) == "Once upon a time."


def test_template_that_rewrites_earlier_turns_is_refused(smol_tokenizer):
    tokenizer = smol_tokenizer.__class__.from_pretrained(smol_tokenizer.name_or_path)
    # Marks the last message: adding a turn changes how the earlier ones render (like templates that drop reasoning).
    tokenizer.chat_template = ("{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m['role'] }}: "
                               "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}")
    with pytest.raises(UserError, match="renders earlier turns differently"):
        assistant_spans(tokenizer, CONVERSATION)
