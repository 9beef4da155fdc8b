import pytest

from trainer import data
from trainer.config import resolve
from trainer.data.formats import Examples
from trainer.errors import UserError


def conversations(n):
    return Examples("sharegpt", [[{"role": "user", "content": f"Question {i}?"},
                                  {"role": "assistant", "content": f"Answer {i}."}] for i in range(n)], [])


def config(**settings):
    return resolve("cpu", [f"{k}={v}" for k, v in settings.items()])[0]


def test_split_is_deterministic_and_disjoint():
    c = config(eval_size=0.1, max_steps=0)
    a, b = data.split(conversations(100), c), data.split(conversations(100), c)
    assert a.train.conversations == b.train.conversations and a.eval.conversations == b.eval.conversations
    assert (len(a.train), len(a.eval)) == (90, 10)
    questions = lambda part: {m[0]["content"] for m in part.conversations}  # noqa: E731
    assert not questions(a.train) & questions(a.eval)
    other_seed = data.split(conversations(100), config(eval_size=0.1, max_steps=0, seed=1))
    assert other_seed.eval.conversations != a.eval.conversations


def test_eval_size_is_a_fraction_or_a_count_with_a_cap():
    assert len(data.split(conversations(100), config(eval_size=7, max_steps=0)).eval) == 7
    assert len(data.split(conversations(100), config(eval_size=0, max_steps=0)).eval) == 0
    assert len(data.split(conversations(1000), config(eval_size=0.5, eval_max_examples=30, max_steps=0)).eval) == 30


def test_only_rows_max_steps_can_consume_are_kept():
    c = config(max_steps=5, micro_batch_size=2, grad_accum_steps=3, eval_size=0)
    assert len(data.split(conversations(500), c).train) == 30


def test_too_small_for_one_optimizer_step():
    with pytest.raises(UserError, match="3 training rows after holding out 2 for eval, but one optimizer step needs "
                                        "micro_batch_size x grad_accum_steps = 4"):
        data.split(conversations(5), config(eval_size=2, micro_batch_size=2, grad_accum_steps=2))


def test_build_gives_trl_ready_columns_and_drops_answers_past_max_length(smol_tokenizer):
    examples = conversations(20)
    examples.conversations[0][0]["content"] = "long " * 300  # the answer starts after token 300
    c = config(max_seq_length=128, eval_size=4, max_steps=0, micro_batch_size=2)
    prepared = data.build(c, examples, smol_tokenizer)
    assert prepared.train.column_names == ["input_ids", "assistant_masks"]
    assert prepared.stats["rows_over_max_length"] + prepared.stats["rows_dropped"] >= 0
    total = len(prepared.train) + len(prepared.eval)
    assert total == 19  # the long row is gone, from whichever part it was in
    assert all(any(mask) for mask in prepared.train["assistant_masks"])


def test_no_answer_within_max_length_is_an_error(smol_tokenizer):
    examples = conversations(10)
    for conversation in examples.conversations:
        conversation[0]["content"] = "long " * 300
    with pytest.raises(UserError, match="only 0 training rows have an answer within max_seq_length=128"):
        data.build(config(max_seq_length=128, eval_size=0), examples, smol_tokenizer)
