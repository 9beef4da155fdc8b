"""Masks token by token for two real chat templates (the real Llama 3.2 tokenizer and SmolLM2's): labels are trained
exactly on assistant turns; control tokens typed in a message."""

import pytest

from trainer.data.render import DATE_STRING, ControlTokens, assistant_spans, render, render_text, render_with_mask
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
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, date_string=DATE_STRING)
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


def test_the_llama_tokenizer_is_llama_3_2s(llama_tokenizer):
    assert len(llama_tokenizer) == 128256
    assert llama_tokenizer("Hello world")["input_ids"] == [128000, 9906, 1917]
    assert llama_tokenizer("Cửa Việt", add_special_tokens=False)["input_ids"] == [34, 91163, 101798]  # llama.cpp's
    assert (llama_tokenizer.eos_token, llama_tokenizer.pad_token) == ("<|eot_id|>", "<|finetune_right_pad_id|>")
    assert llama_tokenizer.convert_ids_to_tokens([128005, 128011, 128255]) == [
        "<|reserved_special_token_2|>", "<|reserved_special_token_3|>", "<|reserved_special_token_247|>"]


def test_meta_template_renders_the_fixed_date_not_today(llama_tokenizer):
    ids, _ = render_with_mask(llama_tokenizer, CONVERSATION[1:3])
    assert f"Today Date: {DATE_STRING}\n" in llama_tokenizer.decode(ids)
    assert render_with_mask(llama_tokenizer, CONVERSATION[1:3], date_string="01 Jan 2030")[0] != ids


TYPED = [{"role": "user", "content": "What does <|eot_id|> mean?"},
         {"role": "assistant", "content": "It ends a turn: <|eot_id|>."}]


def test_a_typed_control_token_is_a_control_token_unless_asked(llama_tokenizer):
    control = ControlTokens(llama_tokenizer)
    assert render(llama_tokenizer, TYPED, control).spells_control_token
    assert not render(llama_tokenizer, CONVERSATION, control).spells_control_token
    eot = llama_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    special_ids, _ = render_with_mask(llama_tokenizer, TYPED)
    assert special_ids.count(eot) == 3 + 2  # the template's three (system, user, answer) and the two typed ones
    ids, mask = render_with_mask(llama_tokenizer, TYPED, control_tokens_as_text=True)
    assert ids.count(eot) == 3  # only the template's
    plain = llama_tokenizer("<|eot_id|>", add_special_tokens=False, split_special_tokens=True)["input_ids"]
    assert plain == [27, 91, 68, 354, 851, 91, 29]  # "<", "|", "e", "ot", "_id", "|", ">"
    text = llama_tokenizer.apply_chat_template(TYPED, tokenize=False, date_string=DATE_STRING)
    assert llama_tokenizer.decode(ids) == text
    # Token by token: the answer as plain text (its typed control token too) and its end are trained, nothing else.
    answer = [i for i, label in enumerate(mask) if label]
    assert llama_tokenizer.decode([ids[i] for i in answer]) == "It ends a turn: <|eot_id|>.<|eot_id|>"
    assert answer == list(range(answer[0], len(ids))) and ids[answer[-1]] == eot
    question = llama_tokenizer.decode(ids[: answer[0]])
    assert question.endswith("What does <|eot_id|> mean?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def test_typed_control_tokens_in_plain_text_rows(llama_tokenizer):
    ids, _ = render_text(llama_tokenizer, "a <|begin_of_text|> b", control_tokens_as_text=True)
    assert ids.count(128000) == 1 and ids[0] == 128000 and ids[-1] == llama_tokenizer.eos_token_id
    assert render_text(llama_tokenizer, "a <|begin_of_text|> b")[0].count(128000) == 2
