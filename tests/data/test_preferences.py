import gzip
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from trainer.data import preferences, sources
from trainer.errors import UserError


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def pairs_of(path, **kwargs):
    return preferences.convert(sources.read_file(path), **kwargs)


def conversation(question, answer, system=None):
    prompt = [{"role": "system", "content": system}] if system else []
    return [*prompt, {"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def test_standard_rows_are_a_user_prompt_and_two_answers(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "2 + 2?", "chosen": "4", "rejected": "5"},
                                              {"prompt": "Capital of Peru?", "chosen": "Lima", "rejected": "Cusco"}])
    pairs = pairs_of(path)
    assert pairs.format == "standard" and len(pairs) == 2
    assert pairs.prompts[1] == [{"role": "user", "content": "Capital of Peru?"}]
    assert (pairs.chosen, pairs.rejected) == (["4", "Lima"], ["5", "Cusco"])


def test_conversational_rows_share_their_prompt_turns(tmp_path):
    rows = [{"chosen": conversation("2 + 2?", "4", system="Be brief."),
             "rejected": conversation("2 + 2?", "5", system="Be brief.")}]
    pairs = pairs_of(write_jsonl(tmp_path / "p.jsonl", rows))
    assert pairs.format == "conversational"
    assert pairs.prompts == [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2 + 2?"}]]
    assert (pairs.chosen, pairs.rejected) == (["4"], ["5"])


def test_an_explicit_prompt_of_messages_takes_answers_as_text_or_one_assistant_message(tmp_path):
    prompt = [{"role": "user", "content": "2 + 2?"}]
    rows = [{"prompt": prompt, "chosen": [{"role": "assistant", "content": "4"}], "rejected": "5"},
            {"prompt": prompt, "chosen": {"role": "assistant", "content": "four"}, "rejected": [
                {"role": "assistant", "content": "five"}]}]
    pairs = pairs_of(write_jsonl(tmp_path / "p.jsonl", rows))
    assert pairs.prompts == [prompt, prompt]
    assert (pairs.chosen, pairs.rejected) == (["4", "four"], ["5", "five"])


def test_csv_cells_and_compressed_files_carry_the_same_pairs(tmp_path):
    rows = [{"chosen": conversation("2 + 2?", "4"), "rejected": conversation("2 + 2?", "5")}]
    csv = tmp_path / "p.csv"
    csv.write_text("chosen,rejected\n" + ",".join(
        '"' + json.dumps(rows[0][k]).replace('"', '""') + '"' for k in ("chosen", "rejected")) + "\n",
        encoding="utf-8")
    packed = tmp_path / "p.jsonl.gz"
    packed.write_bytes(gzip.compress(("\ufeff" + json.dumps(rows[0]) + "\n").encode()))  # with a BOM
    for path in (csv, packed):
        pairs = pairs_of(path)
        assert (pairs.prompts, pairs.chosen, pairs.rejected) == ([[rows[0]["chosen"][0]]], ["4"], ["5"])


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "2 + 2?", "rejected": "5"}, "line 2 of {path}: has no 'chosen' field"),
    ({"prompt": "2 + 2?", "chosen": "4"}, "line 2 of {path}: has no 'rejected' field"),
    ({"prompt": "2 + 2?", "chosen": "4", "rejected": " 4 "}, "line 2 of {path}: chosen and rejected are the same"),
    ({"prompt": "2 + 2?", "chosen": "4", "rejected": ""}, "line 2 of {path}: the 'rejected' answer is empty"),
    ({"chosen": "4", "rejected": "5"}, "line 2 of {path}: has no 'prompt' field"),
])
def test_bad_standard_rows_name_the_file_and_line(tmp_path, row, message):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "1 + 1?", "chosen": "2", "rejected": "3"}, row])
    with pytest.raises(UserError) as e:
        pairs_of(path)
    assert message.format(path=path) in e.value.message
    assert "skip_invalid_rows=true" in e.value.hint
    assert len(pairs_of(path, skip_invalid=True)) == 1


def test_conversations_whose_prompts_differ_are_not_a_pair(tmp_path):
    rows = [{"chosen": conversation("2 + 2?", "4"), "rejected": conversation("3 + 3?", "7")},
            {"chosen": conversation("2 + 2?", "4"), "rejected": conversation("2 + 2?", "")},
            {"chosen": conversation("2 + 2?", "4")[:1], "rejected": conversation("2 + 2?", "5")}]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    with pytest.raises(UserError) as e:
        pairs_of(path)
    text = e.value.message
    assert "3 of 3 rows" in text
    assert f"line 1 of {path}: chosen and rejected have different prompts (message 1 differs)" in text
    assert f"line 2 of {path}: message 2 of 'rejected' is empty" in text
    assert f"line 3 of {path}: 'chosen' does not end with an assistant answer" in text


def test_rows_that_are_not_preference_data_say_which_fields_a_pair_needs(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    with pytest.raises(UserError) as e:
        pairs_of(path)
    assert "not preference data" in e.value.message and "conversations" in e.value.message
    assert "'chosen' and 'rejected'" in e.value.hint


def test_the_bundled_sample_is_what_its_generator_writes_and_every_pair_is_usable():
    script = ROOT / "scripts" / "make_preference_sample.py"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    pairs = pairs_of(preferences.SAMPLE)
    assert pairs.format == "conversational" and len(pairs) == 64 and not pairs.skipped
    assert all(c != r for c, r in zip(pairs.chosen, pairs.rejected, strict=True))
