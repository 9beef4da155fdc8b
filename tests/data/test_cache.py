"""The token cache on real files: a full epoch is tokenized once, read back identically, keyed by everything the
tokens depend on, never read half-written, shared by concurrent processes (the ranks of a multi-GPU run)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT
from trainer import data
from trainer.data import tokens
from trainer.profiles import resolve


def write_rows(path, n, extra=""):
    rows = [{"messages": [{"role": "user", "content": f"Question {i}{extra}?"},
                          {"role": "assistant", "content": f"Answer {i}, at some length: " + "word " * (i % 40)}]}
            for i in range(n)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def config(path, cache, *settings, max_steps=0):
    return resolve("cpu", ["eval_size=0.05", f"cache_dir={cache}", *settings],
                   {"data.dataset": str(path), "train.max_steps": max_steps})[0]


def entries(cache):
    root = cache / "tokenized"
    return sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def rows_of(prepared):
    return [[(tuple(r["input_ids"]), tuple(r["labels"])) for r in part] for part in (prepared.train, prepared.eval)]


def test_a_full_epoch_is_tokenized_once_then_read_from_the_cache(llama_tokenizer, tmp_path, capsys):
    path = write_rows(tmp_path / "chat.jsonl", 1500)  # more than one chunk: the progress bar shows
    cache = tmp_path / "cache"
    first = data.build_rows(config(path, cache), data.load_rows(config(path, cache)), llama_tokenizer)
    out = capsys.readouterr().out
    assert "Tokenizing 1500 rows once; kept in" in out and "Tokenizing" in out and "1500/1500" in out
    [entry] = entries(cache)
    info = json.loads((cache / "tokenized" / entry / "info.json").read_text())
    assert info["rows"] == 1500 and info["date_string"] == "26 Jul 2024" and info["max_seq_length"] == 512

    again = data.build_rows(config(path, cache), data.load_rows(config(path, cache)), llama_tokenizer)
    assert f"Tokenized rows from the cache: {cache / 'tokenized' / entry}" in capsys.readouterr().out
    assert rows_of(again) == rows_of(first) and again.stats == first.stats
    # The same rows as tokenizing without the cache, token by token.
    fresh = data.build_rows(config(path, cache, "cache_tokens=false"), data.load_rows(config(path, cache)),
                            llama_tokenizer)
    assert rows_of(fresh) == rows_of(first) and fresh.stats == first.stats
    assert len(first.train) + len(first.eval) == 1500 and len(first.eval) == 64  # eval_max_examples

    # A run of a few steps reads the cached rows it needs instead of tokenizing them.
    short = config(path, cache, max_steps=3)
    few = data.build_rows(short, data.load_rows(short), llama_tokenizer)
    assert "from the cache" in capsys.readouterr().out and len(few.train) == 3 * 4
    assert set(rows_of(few)[0]) <= set(rows_of(first)[0])


@pytest.mark.parametrize("change", ["date_string=01 Jan 2030", "max_seq_length=256", "control_tokens_as_text=true",
                                    "skip_invalid_rows=true", "file", "tokenizer"])
def test_whatever_changes_the_tokens_changes_the_key(change, llama_tokenizer, smol_tokenizer, tmp_path):
    path = write_rows(tmp_path / "chat.jsonl", 40)
    cache = tmp_path / "cache"
    data.build_rows(config(path, cache), data.load_rows(config(path, cache)), llama_tokenizer)
    tokenizer, settings = llama_tokenizer, []
    if change == "file":
        write_rows(path, 40, extra=" (edited)")
    elif change == "tokenizer":
        tokenizer = smol_tokenizer
    else:
        settings = [change]
    changed = config(path, cache, *settings)
    data.build_rows(changed, data.load_rows(changed), tokenizer)
    assert len(entries(cache)) == 2
    data.build_rows(config(path, cache, "seed=1", "eval_size=3"), data.load_rows(changed), llama_tokenizer)
    assert len(entries(cache)) == 2  # the split is applied on top: another seed or hold-out reuses the entry


def test_few_steps_without_a_cache_tokenize_only_their_rows(llama_tokenizer, tmp_path, capsys):
    path = write_rows(tmp_path / "chat.jsonl", 300)
    short = config(path, tmp_path / "cache", max_steps=2)
    prepared = data.build_rows(short, data.load_rows(short), llama_tokenizer)
    assert entries(tmp_path / "cache") == [] and len(prepared.train) == 8
    assert "Tokenizing" not in capsys.readouterr().out


def test_half_written_entries_are_never_read(llama_tokenizer, tmp_path):
    path = write_rows(tmp_path / "chat.jsonl", 40)
    cache = tmp_path / "cache"
    c = config(path, cache)
    whole = data.build_rows(c, data.load_rows(c), llama_tokenizer)
    [entry] = entries(cache)
    folder = cache / "tokenized" / entry
    # A process killed while writing leaves only its temporary folder; an entry without info.json is no entry.
    (cache / "tokenized" / f".{entry}-killed").mkdir()
    (cache / "tokenized" / f".{entry}-killed" / "rows.arrow").write_bytes(b"partial")
    (folder / "info.json").unlink()
    again = data.build_rows(c, data.load_rows(c), llama_tokenizer)
    assert (folder / "info.json").is_file() and rows_of(again) == rows_of(whole)


def test_a_cache_dir_that_cannot_be_written_warns_and_trains_anyway(llama_tokenizer, tmp_path, capsys):
    path = write_rows(tmp_path / "chat.jsonl", 40)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    c = config(path, blocked)
    prepared = data.build_rows(c, data.load_rows(c), llama_tokenizer)
    assert "Could not keep the tokenized rows in" in capsys.readouterr().out
    assert len(prepared.train) + len(prepared.eval) == 40


BUILD = """
import json, sys
from transformers import AutoTokenizer
from trainer import data
from trainer.profiles import resolve
config = resolve("cpu", ["eval_size=0.05", "cache_dir=" + sys.argv[2]],
                 {"data.dataset": sys.argv[1], "train.max_steps": 0})[0]
prepared = data.build_rows(config, data.load_rows(config), AutoTokenizer.from_pretrained(sys.argv[3]))
print(json.dumps([prepared.train[:]["input_ids"], prepared.train[:]["labels"]]))
"""


@pytest.mark.slow
def test_processes_building_the_same_entry_at_once_get_the_same_rows(llama_tokenizer_dir, tmp_path):
    """As the ranks of a multi-GPU run would, if each built the cache: one entry, the same rows everywhere."""
    path = write_rows(tmp_path / "chat.jsonl", 2500)
    cache = tmp_path / "cache"
    command = [sys.executable, "-c", BUILD, str(path), str(cache), str(llama_tokenizer_dir)]
    ranks = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outputs = [rank.communicate(timeout=600) for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), outputs
    assert json.loads(outputs[0][0].splitlines()[-1]) == json.loads(outputs[1][0].splitlines()[-1])
    assert len(entries(cache)) == 1 and not [p for p in (cache / "tokenized").iterdir() if p.name.startswith(".")]


def test_rows_are_truncated_with_labels_and_lengths(llama_tokenizer):
    examples = data.formats.Examples("text", [], ["word " * 50, "short"])
    settings = tokens.Settings(max_length=16, date_string="26 Jul 2024", control_tokens_as_text=False)
    table = tokens.in_memory(examples, [0, 1], llama_tokenizer, settings).to_pylist()
    full = llama_tokenizer("word " * 50)["input_ids"] + [llama_tokenizer.eos_token_id]
    assert table[0]["input_ids"] == full[:16] and table[0]["labels"] == full[:16]
    assert (table[0]["length"], table[0]["full_length"], table[0]["trained_tokens"]) == (16, len(full), 16)
    assert table[1]["full_length"] == table[1]["length"] == len(table[1]["input_ids"]) == 3  # bos, short, eos


def test_only_the_most_recently_used_entries_are_kept(llama_tokenizer, tmp_path):
    from trainer.data import cache as token_cache

    path = write_rows(tmp_path / "chat.jsonl", 20)
    cache = tmp_path / "cache"
    for length in range(100, 100 + token_cache.KEEP_ENTRIES + 2):
        c = config(path, cache, f"max_seq_length={length}")
        data.build_rows(c, data.load_rows(c), llama_tokenizer)
    kept = [json.loads((cache / "tokenized" / e / "info.json").read_text())["max_seq_length"] for e in entries(cache)]
    assert sorted(kept) == list(range(102, 102 + token_cache.KEEP_ENTRIES))
