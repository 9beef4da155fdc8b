import pytest

from trainer import data
from trainer.data.formats import Examples
from trainer.data.render import render_with_mask
from trainer.errors import UserError
from trainer.profiles import resolve


def conversations(n):
    return Examples("sharegpt", [[{"role": "user", "content": f"Question {i}?"},
                                  {"role": "assistant", "content": f"Answer {i}."}] for i in range(n)], [])


def config(**settings):
    return resolve("cpu", [f"{k}={v}" for k, v in settings.items()])[0]


def test_split_is_deterministic_and_disjoint():
    c = config(eval_size=0.1, max_steps=0)
    a, b = data.split(conversations(100), c), data.split(conversations(100), c)
    assert (a.train, a.eval) == (b.train, b.eval)
    assert (len(a.train), len(a.eval)) == (90, 10)
    assert not set(a.train) & set(a.eval) and sorted(a.train + a.eval) == list(range(100))
    other_seed = data.split(conversations(100), config(eval_size=0.1, max_steps=0, seed=1))
    assert other_seed.eval != a.eval


def test_eval_size_is_a_fraction_or_a_count_with_a_cap():
    assert len(data.split(conversations(100), config(eval_size=7, max_steps=0)).eval) == 7
    assert len(data.split(conversations(100), config(eval_size=0, max_steps=0)).eval) == 0
    assert len(data.split(conversations(1000), config(eval_size=0.5, eval_max_examples=30, max_steps=0)).eval) == 30


def test_only_rows_max_steps_can_consume_are_kept():
    c = config(max_steps=5, micro_batch_size=2, grad_accum_steps=3, eval_size=0)
    assert len(data.split(conversations(500), c).train) == 30


def test_conversations_longer_than_a_row_fill_one_row_each_when_packing():
    # each is cut to max_seq_length tokens: 5 steps of 2 x 2 packed rows need 20 of them, not the 12 or so that their
    # characters would fill (seen on the GPU: a step of 1 row instead of 4 with worst-case rows)
    long = Examples("sharegpt", [[{"role": "user", "content": "Write."},
                                  {"role": "assistant", "content": "word " * 3000}] for _ in range(100)], [])
    c = config(max_steps=5, micro_batch_size=2, grad_accum_steps=2, eval_size=0, packing="true", max_seq_length=1024)
    assert len(data.split(long, c).train) == 20


def test_the_hold_out_shrinks_to_leave_one_optimizer_step_of_rows():
    """A file a few optimizer steps long keeps one step's rows to train on; a 6-row file used to keep 1 row and be
    refused, and since issue 33 holds nothing out below MIN_ROWS_FOR_EVAL rows."""
    cpu = config(max_steps=0)
    assert (cpu.data.eval_size, cpu.train.micro_batch_size * cpu.train.grad_accum_steps) == (16, 4)
    small = data.split(conversations(6), cpu)
    assert (len(small.train), len(small.eval)) == (6, 0)
    assert small.note == "6 rows: no eval hold-out (eval_size asks for 16) below 20 rows, every row trains"
    tiny = data.split(conversations(3), cpu)
    assert (len(tiny.train), len(tiny.eval)) == (3, 0) and "no eval hold-out" in tiny.note
    assert data.split(conversations(100), cpu).note == ""
    big_steps = config(max_steps=0, grad_accum_steps=8)  # 32 rows a step
    step = data.split(conversations(38), big_steps)
    assert (len(step.train), len(step.eval)) == (32, 6)
    assert step.note == "38 rows: holding out 6 for eval instead of 16, so that one optimizer step's 32 rows are " \
                        "left to train on"


def test_the_hold_out_is_at_most_a_fifth_of_the_rows():
    """Issue 33: 10 preference pairs trained 4 and held out 6."""
    cpu = config(max_steps=0)
    assert [len(data.split(conversations(n), cpu).eval) for n in (10, 19, 20, 40, 80, 200)] == [0, 0, 4, 8, 16, 16]
    assert data.split(conversations(40), cpu).note == "40 rows: holding out 8 for eval instead of 16, at most a " \
                                                      "fifth of the rows"


def test_a_step_limit_that_caps_the_rows_says_so_and_how_to_train_them_all():
    cpu = config(max_steps=40)  # the cpu profile's: 40 steps of 4 rows
    parts = data.split(conversations(999), cpu)
    assert len(parts.train) == 160
    assert parts.capped == ("max_steps=40 (profile cpu) trains at most 160 of the 983 train rows (4 a step); "
                            "--set max_steps=0 trains them all (1 epoch, --set epochs=N for more)")
    assert data.split(conversations(100), cpu).capped == ""  # 84 train rows: 40 steps reach them all


def test_too_few_rows_suggest_only_settings_that_change(smol_tokenizer):
    c = config(micro_batch_size=2, grad_accum_steps=4)
    with pytest.raises(UserError, match="has 5 rows to train on, but one optimizer step needs micro_batch_size x "
                                        "grad_accum_steps = 8") as e:
        data.build_rows(c, conversations(5), smol_tokenizer)
    assert e.value.hint == "Add rows, or take fewer rows per step (--set grad_accum_steps=2)."
    # The cpu profile already trains with grad_accum_steps=1: the fix is a smaller micro-batch, not that.
    cpu = config()
    assert cpu.train.grad_accum_steps == 1
    with pytest.raises(UserError) as e:
        data.build_rows(cpu, conversations(3), smol_tokenizer)
    assert e.value.hint == "Add rows, or take fewer rows per step (--set micro_batch_size=3)."
    assert "grad_accum_steps" not in e.value.hint


def test_build_gives_trl_ready_columns_and_drops_answers_past_max_length(smol_tokenizer):
    examples = conversations(20)
    examples.conversations[0][0]["content"] = "long " * 300  # the answer starts after token 300
    c = config(max_seq_length=128, eval_size=4, max_steps=0, micro_batch_size=2)
    prepared = data.build_rows(c, examples, smol_tokenizer)
    assert prepared.train.column_names == ["input_ids", "labels", "length"]
    assert prepared.stats["rows_over_max_length"] == prepared.stats["rows_dropped"] <= 1  # 0 when it was held out
    total = len(prepared.train) + len(prepared.eval)
    assert total == 19  # the long row is gone, from whichever part it was in
    rendered = [render_with_mask(smol_tokenizer, c) for c in examples.conversations]
    for row in prepared.train:
        ids, mask = next(r for r in rendered if r[0] == row["input_ids"])  # each row's own, token by token
        assert row["labels"] == [t if m else -100 for t, m in zip(ids, mask, strict=True)]
        assert row["length"] == len(ids)


def test_no_answer_within_max_length_is_an_error(smol_tokenizer):
    examples = conversations(10)
    for conversation in examples.conversations:
        conversation[0]["content"] = "long " * 300
    with pytest.raises(UserError, match="only 0 training rows have an answer within max_seq_length=128") as e:
        data.build_rows(config(max_seq_length=128, eval_size=0), examples, smol_tokenizer)
    assert "--set max_seq_length=256" in e.value.hint


def test_a_packed_run_of_a_few_steps_tokenizes_enough_conversations_to_fill_them_and_no_more(llama_tokenizer):
    """max_steps x micro_batch_size x grad_accum_steps packed rows of max_seq_length tokens: the conversations taken
    fill them (TRL's own packing of the tokenized rows says so), and are far fewer than the file's 2,000."""
    from trl.data_utils import pack_dataset

    settings = ["eval_size=0", "packing=true", "micro_batch_size=2", "grad_accum_steps=2", "max_seq_length=2048"]
    c, _ = resolve("cpu", settings, {"data.dataset": "finetome-like", "train.max_steps": 5})
    prepared = data.build_rows(c, data.load_rows(c), llama_tokenizer)
    bins = pack_dataset(prepared.train.select_columns(["input_ids", "labels"]), seq_length=2048, strategy="bfd")
    assert len(bins) >= 5 * 2 * 2
    assert prepared.stats["train_rows"] < 0.1 * 2000
    unpacked, _ = resolve("cpu", settings[:-4] + ["packing=false", "micro_batch_size=2", "grad_accum_steps=2"],
                          {"data.dataset": "finetome-like", "train.max_steps": 5})
    assert len(data.split(data.load_rows(unpacked), unpacked).train) == 5 * 2 * 2
