import json

import pandas as pd
import pytest

from trainer.data import formats, sources
from trainer.data.formats import convert
from trainer.data.sources import Table
from trainer.errors import UserError

SHAREGPT = {"conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                              {"from": "gpt", "value": "Hello!"}], "source": "x", "score": 4.0}
OPENAI = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
ALPACA = {"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"}
TEXT = {"text": "Once upon a time."}


@pytest.mark.parametrize("row, name", [(SHAREGPT, "sharegpt"), (OPENAI, "openai"), (ALPACA, "alpaca"), (TEXT, "text")])
def test_detect_format(row, name):
    assert formats.detect_format(row, "f") == name


def test_conversion_of_every_format():
    assert convert(Table("f", [SHAREGPT])).conversations == [[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}]]
    assert convert(Table("f", [OPENAI])).conversations == [[
        {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]]
    assert convert(Table("f", [ALPACA])).conversations == [[
        {"role": "user", "content": "Add the numbers.\n\n2 and 3"}, {"role": "assistant", "content": "5"}]]
    no_input = convert(Table("f", [{"instruction": "Say hi.", "input": "", "output": "Hi"}]))
    assert no_input.conversations[0][0]["content"] == "Say hi."
    text = convert(Table("f", [TEXT]))
    assert (text.format, text.texts, len(text)) == ("text", ["Once upon a time."], 1)


def test_unknown_fields_are_an_error_naming_them():
    with pytest.raises(UserError, match="first row has the fields answer, question") as e:
        convert(Table("data.jsonl", [{"question": "q", "answer": "a"}]))
    assert "--format" in e.value.hint


def test_forced_format_missing_field():
    with pytest.raises(UserError, match="row 1 of f: has no 'messages' field"):
        convert(Table("f", [SHAREGPT]), "openai")


@pytest.mark.parametrize("conversation, cause", [
    ([("human", "a"), ("human", "b"), ("gpt", "c")],
     "roles don't alternate user/assistant \\(user, user, assistant\\)"),
    ([("gpt", "a"), ("human", "b")], "roles don't alternate"),
    ([("human", "a")], "ends with a user turn"),
    ([("human", "a"), ("gpt", "b"), ("system", "c"), ("gpt", "d")], "roles don't alternate"),
    ([("system", "a")], "has only a system message"),
    ([("human", "a"), ("robot", "b")], "turn 2 has the unknown role 'robot'"),
    ([("human", "a"), ("gpt", "  ")], "turn 2 is empty"),
])
def test_bad_conversations_are_named(conversation, cause):
    rows = [SHAREGPT, {"conversations": [{"from": r, "value": v} for r, v in conversation]}]
    with pytest.raises(UserError, match=f"1 of 2 rows in f can't be used as sharegpt:\n  row 2 of f: {cause}"):
        convert(Table("f", rows))


def test_skip_invalid_rows_keeps_the_good_ones():
    bad = {"conversations": [{"from": "human", "value": "a"}]}
    examples = convert(Table("f", [SHAREGPT, bad, SHAREGPT]), skip_invalid=True)
    assert len(examples) == 2 and examples.skipped == 1


def test_many_bad_rows_are_summarised():
    bad = {"conversations": [{"from": "human", "value": "a"}]}
    with pytest.raises(UserError, match="and 2 more"):
        convert(Table("f", [bad] * 7))


def test_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(OPENAI) + "\n\n" + '{"messages": [}\n')
    with pytest.raises(UserError, match=r"line 3 of .*data.jsonl is not valid JSON \(Expecting value at column 15\)"):
        sources.read(str(path))


def test_jsonl_rows_keep_their_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(OPENAI) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "x"}]}) + "\n")
    with pytest.raises(UserError, match="line 3 of .*data.jsonl: ends with a user turn"):
        convert(sources.read(str(path)))


def test_json_csv_parquet_files(tmp_path):
    (tmp_path / "d.json").write_text(json.dumps([OPENAI, OPENAI]))
    assert len(convert(sources.read(str(tmp_path / "d.json")))) == 2
    # CSV cells carry the turns as JSON text
    pd.DataFrame([{"conversations": json.dumps(SHAREGPT["conversations"])}]).to_csv(tmp_path / "d.csv", index=False)
    assert convert(sources.read(str(tmp_path / "d.csv"))).conversations[0][2]["content"] == "Hello!"
    pd.DataFrame([ALPACA, ALPACA, ALPACA]).to_parquet(tmp_path / "d.parquet")
    assert len(convert(sources.read(str(tmp_path / "d.parquet")))) == 3


def test_csv_row_errors_name_the_file_line(tmp_path):
    pd.DataFrame([ALPACA, {"instruction": "x", "input": "", "output": ""}]).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(UserError, match="line 3 of .*d.csv: 'output' is empty"):
        convert(sources.read(str(tmp_path / "d.csv")))


@pytest.mark.parametrize("name, content, message", [
    ("empty.jsonl", "", "is empty"),
    ("blank.jsonl", "\n\n", "is empty"),
    ("list.jsonl", "[1, 2]\n", "line 1 of .* is a JSON list, not an object"),
    ("bad.json", '{"a": 1,}', "is not valid JSON .*line 1 column 9"),
    ("obj.json", '{"a": 1}', "must hold a JSON list of objects"),
    ("notes.txt", "hello", "unsupported file type '.txt'"),
    ("bad.parquet", "not parquet", "is not a readable Parquet file"),
])
def test_unreadable_files(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(UserError, match=message):
        sources.read(str(tmp_path / name))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        sources.read(str(tmp_path / "nope.jsonl"))
    with pytest.raises(UserError, match="is a folder"):
        sources.read(str(tmp_path))


def test_bundled_sample_is_valid_finetome_schema():
    table = sources.read("sample")
    assert 200 <= len(table.rows) <= 1000
    assert all(set(row) == {"conversations", "source", "score"} for row in table.rows)
    examples = convert(table)
    assert examples.format == "sharegpt" and len(examples) == len(table.rows) and examples.skipped == 0
    assert any(c[0]["role"] == "system" for c in examples.conversations)
    assert any(len(c) > 3 for c in examples.conversations)  # multi-turn rows


def test_a_line_that_is_not_utf8_is_named(tmp_path):
    path = tmp_path / "windows.jsonl"
    cafe = json.dumps({"text": "Caf\u00e9 au lait"}, ensure_ascii=False)
    path.write_bytes((json.dumps(TEXT) + "\n" + cafe + "\n").encode("cp1252"))  # what older Windows editors save
    with pytest.raises(UserError, match=r"line 2 of .*windows.jsonl is not UTF-8 \(byte 0xe9 at column 14\)") as e:
        sources.read(str(path))
    assert "Re-save the file as UTF-8" in e.value.hint
    for name, text in (("windows.json", json.dumps([TEXT]) + "\n" + cafe), ("windows.csv", "text\nok\n" + "Café\n")):
        (tmp_path / name).write_bytes(text.encode("cp1252"))
        with pytest.raises(UserError, match=f"line {2 if name.endswith('json') else 3} of .*{name} is not UTF-8"):
            sources.read(str(tmp_path / name))


def test_a_byte_order_mark_is_accepted(tmp_path):
    bom = "\ufeff"  # Notepad and PowerShell start files with it
    (tmp_path / "d.jsonl").write_text(bom + json.dumps(OPENAI) + "\n" + json.dumps(OPENAI) + "\n", encoding="utf-8")
    (tmp_path / "d.json").write_text(bom + json.dumps([OPENAI]), encoding="utf-8")
    (tmp_path / "d.csv").write_text(bom + "instruction,output\nAdd 2 and 3.,5\n", encoding="utf-8")
    assert len(convert(sources.read(str(tmp_path / "d.jsonl")))) == 2
    assert convert(sources.read(str(tmp_path / "d.json"))).conversations[0][1]["content"] == "Hello!"
    table = sources.read(str(tmp_path / "d.csv"))
    assert list(table.rows[0]) == ["instruction", "output"]  # not "\ufeffinstruction"
    assert convert(table).conversations[0] == [{"role": "user", "content": "Add 2 and 3."},
                                               {"role": "assistant", "content": "5"}]


@pytest.mark.parametrize("compression", [".gz", ".bz2", ".xz", ".zst"])
def test_compressed_files_are_read(tmp_path, compression):
    import fsspec

    plain = {".jsonl": (json.dumps(OPENAI) + "\n") * 3, ".json": json.dumps([ALPACA, ALPACA]),
             ".csv": "text\nOne.\nTwo.\n"}
    codec = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zst": "zstd"}[compression]
    for suffix, text in plain.items():
        path = tmp_path / f"data{suffix}{compression}"
        with fsspec.open(str(path), "wb", compression=codec) as f:
            f.write(text.encode())
        assert path.read_bytes()[:4] != text.encode()[:4]  # really compressed
        table = sources.read(str(path))
        assert table.rows == sources.read_file(write(tmp_path / f"plain{suffix}", text)).rows
        assert table.fingerprint and len(convert(table)) in (2, 3)


def write(path, text):
    path.write_text(text)
    return path


def test_a_damaged_compressed_file_is_a_user_error(tmp_path):
    (tmp_path / "d.jsonl.gz").write_bytes(b"\x1f\x8b\x08\x00 not gzip")
    with pytest.raises(UserError, match=r"d.jsonl.gz is not a readable .gz file"):
        sources.read(str(tmp_path / "d.jsonl.gz"))
    (tmp_path / "d.parquet.gz").write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported file type '.parquet.gz'"):
        sources.read(str(tmp_path / "d.parquet.gz"))


def test_json_errors_read_once_at(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"text": "no end}\n')
    with pytest.raises(UserError, match=r"line 1 of .*d.jsonl is not valid JSON \(Unterminated string starting at "
                                        r"column 10\)\n"):
        sources.read(str(tmp_path / "d.jsonl"))
    (tmp_path / "d.json").write_text('[{"text": "no end}]')
    with pytest.raises(UserError, match=r"\(Unterminated string starting at line 1 column 11\)\n"):
        sources.read(str(tmp_path / "d.json"))


def test_the_fingerprint_follows_the_bytes(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps(TEXT) + "\n")
    first = sources.read(str(path)).fingerprint
    assert sources.read(str(path)).fingerprint == first
    write(path, json.dumps({"text": "Twice upon a time."}) + "\n")
    assert sources.read(str(path)).fingerprint != first
