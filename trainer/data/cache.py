"""The tokenized rows of a whole dataset on disk, so the next start, a resume and every rank of a multi-GPU run skip
tokenizing.

An entry is `<cache_dir>/tokenized/<key>/rows.arrow` (the columns of trainer/data/tokens.py, every row of the dataset
in file order; the split is applied on top) and `info.json` (what the key was made of). The key hashes everything the
tokens depend on: the data's fingerprint (a hash of the file's bytes, or the Hub dataset's fingerprint), its format
and which rows were skipped, the tokenizer (vocabulary, special tokens, chat template), the template's date string,
max_seq_length, how typed control tokens are encoded, and VERSION (raised when this code tokenizes differently).

An entry is written under a temporary name and renamed into place: it is complete or absent, so readers need no lock.
It is read memory-mapped: processes that read the same entry share its pages. A multi-GPU launcher lets rank 0 call
`ensure` while the other ranks wait at a barrier, then they call `load` with the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from trainer.console import console
from trainer.data.tokens import SCHEMA, Settings

if TYPE_CHECKING:
    import datasets
    from transformers import PreTrainedTokenizerBase

VERSION = 1
KEEP_ENTRIES = 4  # the most recently used entries kept (100k finetome-like rows: 0.55 GB)


def key(data_fingerprint: str, data_format: str, skip_invalid_rows: bool, tokenizer: PreTrainedTokenizerBase,
        settings: Settings) -> tuple[str, dict[str, Any]]:
    """The entry's name and what it was made of."""
    vocabulary = hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()
    parts = {
        "version": VERSION, "data": data_fingerprint, "format": data_format, "skip_invalid_rows": skip_invalid_rows,
        "tokenizer": tokenizer.name_or_path, "tokenizer_sha256": vocabulary,
        "special_tokens": {"bos": tokenizer.bos_token, "eos": tokenizer.eos_token},
        "chat_template_sha256": hashlib.sha256((tokenizer.chat_template or "").encode()).hexdigest(),
        "date_string": settings.date_string, "max_seq_length": settings.max_length,
        "control_tokens_as_text": settings.control_tokens_as_text,
    }
    identity = {k: v for k, v in parts.items() if k != "tokenizer"}  # the same files under another path: same tokens
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32], parts


def load(root: Path, name: str) -> datasets.Dataset | None:
    """The entry `name`, memory-mapped, or None when there is none."""
    import datasets

    folder = root / name
    if not (folder / "info.json").is_file():
        return None
    os.utime(folder / "info.json")  # most recently used: kept longest
    return datasets.Dataset.from_file(str(folder / "rows.arrow"))


def ensure(root: Path, name: str, parts: dict[str, Any], batches: Iterator[pa.RecordBatch]) -> datasets.Dataset:
    """The entry `name`, written from `batches` unless it exists. If the disk cannot take it, the rows are still
    returned (from memory) and a warning says why."""
    import datasets

    found = load(root, name)
    if found is not None:
        return found
    kept: list[pa.RecordBatch] = []
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root, prefix=f".{name}-") as tmp:
            with pa.OSFile(str(Path(tmp) / "rows.arrow"), "wb") as sink, pa.ipc.new_stream(sink, SCHEMA) as writer:
                for batch in batches:
                    kept.append(batch)
                    writer.write_batch(batch)
            info = {**parts, "rows": sum(b.num_rows for b in kept), "created": time.strftime("%Y-%m-%d %H:%M:%S")}
            (Path(tmp) / "info.json").write_text(json.dumps(info, indent=2) + "\n")
            if (root / name).exists() and not (root / name / "info.json").is_file():
                shutil.rmtree(root / name)  # damaged by hand: an entry is complete or absent
            try:
                os.replace(tmp, root / name)
            except OSError:  # another process wrote the same entry first: it holds the same rows
                if load(root, name) is None:
                    raise
        prune(root)
        return load(root, name)
    except OSError as e:
        console.print(f"[yellow]Could not keep the tokenized rows in {root} ({e.strerror or e}); the next start "
                      "tokenizes again.[/]", soft_wrap=True)
        rest = list(batches)  # whatever the failed write left unread
        return datasets.Dataset(pa.Table.from_batches(kept + rest, schema=SCHEMA))


def prune(root: Path, keep: int = KEEP_ENTRIES) -> None:
    """Remove all but the `keep` most recently used entries, and what killed processes left half-written an hour ago.
    An entry is renamed before it is deleted, so it is never seen half-deleted either."""
    entries = sorted((p for p in root.iterdir() if (p / "info.json").is_file() and not p.name.startswith(".")),
                     key=lambda p: (p / "info.json").stat().st_mtime, reverse=True)
    for old in entries[keep:]:
        doomed = root / f".{old.name}-removed-{os.getpid()}"
        try:
            os.replace(old, doomed)
        except OSError:  # in use (Windows keeps a memory-mapped file's folder): the next prune removes it
            continue
        shutil.rmtree(doomed, ignore_errors=True)
    for stale in root.glob(".*"):
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True)
