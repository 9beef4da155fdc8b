"""KTO's unpaired answers (trainer/data/unpaired.py) in the layouts of the tools that define them (tests/data/files/,
sources in its README): detected, read with their labels and fields; files of one label, bad labels and SFT on
labelled rows refused by name."""

import json
from pathlib import Path

import pytest

from trainer.data import formats, sources, unpaired
from trainer.data.sources import Table
from trainer.errors import UserError

FILES = Path(__file__).with_name("files")


def read(name: str) -> Table:
    return sources.read(str(FILES / name))


@pytest.mark.parametrize("name, layout, labels, fields", [
    ("trl_unpaired_standard.jsonl", "standard", [True, False], ["prompt", "completion", "label"]),
    ("trl_unpaired_conversational.jsonl", "conversational", [True, True, False, False],
     ["prompt", "completion", "label"]),
    ("llamafactory_kto_en_demo.json", "messages", [True, True, False], ["messages", "label"]),
    ("llamafactory_kto_sharegpt.json", "messages", [True, True, False], ["conversations", "kto_tag"]),
    ("llamafactory_dpo_en_demo.json", "llamafactory (pairs, unpaired)", [True] * 3 + [False] * 3,
     ["conversations", "chosen", "rejected"]),
])
def test_each_layout_is_detected_and_read_with_its_labels(name, layout, labels, fields):
    data = unpaired.convert(read(name))
    assert (data.format, data.labels, data.fields_read, data.fields_unused) == (layout, labels, fields, [])
    assert all(prompt[-1]["role"] == "user" for prompt in data.prompts)


def test_the_answer_is_the_last_turn_and_the_prompt_what_comes_before():
    standard = unpaired.convert(read("trl_unpaired_standard.jsonl"))
    assert (standard.prompts[0], standard.completions) == ([{"role": "user", "content": "The sky is"}],
                                                           [" blue.", " green."])
    conversational = unpaired.convert(read("trl_unpaired_conversational.jsonl"))
    assert conversational.prompts[3] == [{"role": "user", "content": "Where is the sun?"}]
    assert conversational.completions[3] == "In the sea."
    # the same rows in LLaMA-Factory's two layouts
    messages, sharegpt = (unpaired.convert(read(n)) for n in ("llamafactory_kto_en_demo.json",
                                                              "llamafactory_kto_sharegpt.json"))
    assert (messages.prompts, messages.completions) == (sharegpt.prompts, sharegpt.completions)
    assert messages.completions[0] == "660 - 549695 = -549035"
    pairs = unpaired.convert(read("llamafactory_dpo_en_demo.json"))
    assert pairs.prompts[:3] == pairs.prompts[3:] and pairs.completions[0] != pairs.completions[3]


@pytest.mark.parametrize("label, hint", [
    (True, "Add rows whose label is false, or train the answers with SFT: leave out --method kto and remove the "
           "label field."),
    (False, "Add rows whose label is true."),
])
def test_answers_of_one_label_are_refused(label, hint):
    rows = [{"prompt": f"{i} + {i}?", "completion": str(2 * i), "label": label} for i in range(3)]
    with pytest.raises(UserError) as e:
        unpaired.convert(Table("f.jsonl", rows))
    assert e.value.message == (f"every answer in f.jsonl is marked {str(label).lower()} (3 rows): KTO learns from "
                               "answers to learn (true) and answers to avoid (false), and needs both")
    assert e.value.hint == hint


def test_bad_labels_name_the_file_the_line_and_the_fix(tmp_path):
    rows = [{"prompt": "2 + 2?", "completion": "4", "label": True}, {"prompt": "2 + 3?", "completion": "6"},
            {"prompt": "2 + 4?", "completion": "6", "label": 1}, {"prompt": "2 + 5?", "completion": "8", "label": None},
            {"prompt": "2 + 6?", "completion": "9", "label": "false"}]
    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(UserError) as e:
        unpaired.convert(sources.read(str(path)))
    marks = "true (an answer to learn) or false (an answer to avoid)"
    assert e.value.message.splitlines() == [
        f"3 of 5 rows in {path} can't be used as standard KTO rows:",
        f"  line 2 of {path}: has no 'label' field: add \"label\": {marks}",
        f"  line 3 of {path}: 'label' is 1, not a boolean: write {marks}",
        f"  line 4 of {path}: 'label' is null, not a boolean: write {marks}"]
    assert "--set skip_invalid_rows=true" in e.value.hint
    kept = unpaired.convert(sources.read(str(path)), skip_invalid=True)
    assert (kept.completions, kept.labels) == (["4", "9"], [True, False])  # a CSV cell's "false" is false


@pytest.mark.parametrize("name, field", [("trl_unpaired_standard.jsonl", "label"),
                                         ("llamafactory_kto_en_demo.json", "label"),
                                         ("llamafactory_kto_sharegpt.json", "kto_tag")])
def test_sft_on_labelled_rows_is_refused_naming_the_method(name, field):
    with pytest.raises(UserError) as e:
        formats.convert(read(name))
    assert e.value.message == (f"{FILES / name} is KTO data (its first row's '{field}' marks the answer good or bad), "
                               "and SFT would train the bad answers as targets")
    assert e.value.hint.startswith("Add --method kto to train on the answers marked good and bad")


def test_a_file_without_labels_is_not_kto_data():
    with pytest.raises(UserError, match="f is not KTO data: its first row has the fields messages, and no 'label'"
                       ) as e:
        unpaired.convert(Table("f", [{"messages": [{"role": "user", "content": "Hi"},
                                                   {"role": "assistant", "content": "Hello"}]}]))
    assert e.value.hint.endswith("Conversations without a label train with SFT: leave out --method.")
