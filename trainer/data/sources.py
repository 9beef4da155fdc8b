"""Read a dataset's rows from a local file (.jsonl .json .csv .parquet, the first three also compressed: .gz .bz2 .xz
.zst), the Hugging Face Hub, the bundled sample, or the generated benchmark data (finetome-like, pairs-like)."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import UserError

SAMPLE = Path(__file__).with_name("sample.jsonl")
EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")  # what fsspec (and so the datasets library) decompresses by name
BOM = b"\xef\xbb\xbf"  # Notepad and PowerShell start UTF-8 files with it


@dataclass
class Table:
    """Rows plus enough bookkeeping to name each one in an error message."""

    source: str
    rows: list[dict[str, Any]]
    lines: list[int] | None = None  # for .jsonl/.csv: the file line each row came from
    fingerprint: str = ""  # changes whenever the rows may have: a hash of the file, the Hub dataset's fingerprint

    def where(self, i: int) -> str:
        if self.lines is not None:
            return f"line {self.lines[i]} of {self.source}"
        return f"row {i + 1} of {self.source}"


def read(dataset: str, split: str = "train") -> Table:
    """Rows of `dataset`: "sample", "finetome-like" or "pairs-like" (generated), a local file, or a Hub dataset id."""
    if dataset == "sample":
        return read_file(SAMPLE)
    if dataset in ("finetome-like", "pairs-like"):
        from trainer.data import synthetic

        rows = synthetic.finetome_like() if dataset == "finetome-like" else synthetic.pairs_like()
        return Table(f"{dataset} (generated)", rows, fingerprint=digest(json.dumps(rows).encode()))
    path = Path(dataset)
    if path.exists() or file_type(path)[0] in EXTENSIONS:
        return read_file(path)
    return read_hub(dataset, split)


def file_type(path: Path) -> tuple[str, str]:
    """The data suffix and the compression suffix ("" when none): data.jsonl.gz -> (".jsonl", ".gz")."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[1] in COMPRESSIONS:
        return suffixes[0], suffixes[1]
    return (suffixes[-1] if suffixes else ""), ""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# What an empty or unreadable file's error says to do: what a row looks like, and where one is shown.
EMPTY_FIX = ("Save your examples in it, one per row (docs/data-formats.md shows each format; --dataset sample is one), "
             "or point --dataset at the file that has them.")


def read_file(path: Path) -> Table:
    if not path.exists():
        raise UserError(f"dataset file {path} does not exist", "Check the path, or use --dataset sample.")
    if path.is_dir():
        raise UserError(f"{path} is a folder", f"Give one file ({', '.join(EXTENSIONS)}).")
    suffix, compression = file_type(path)
    if suffix not in EXTENSIONS or (compression and suffix == ".parquet"):
        raise UserError(f"{path}: unsupported file type '{suffix}{compression}'",
                        f"Use one of {', '.join(EXTENSIONS)}; .jsonl, .json and .csv may be compressed "
                        f"({', '.join(COMPRESSIONS)}).")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: there are no rows to train on", EMPTY_FIX)
    raw = read_bytes(path, compression)
    if suffix == ".parquet":
        table = _parquet(path)
    else:
        text = decode(raw, path)
        if not text.strip():
            raise UserError(f"{path} is empty: there are no rows to train on", EMPTY_FIX)
        table = {".jsonl": _jsonl, ".json": _json, ".csv": _csv}[suffix](text, path)
    if not table.rows:
        raise UserError(f"{path} has no rows to train on", EMPTY_FIX)
    table.fingerprint = digest(raw)
    return table


def read_bytes(path: Path, compression: str) -> bytes:
    """The file's bytes, decompressed by fsspec (as the datasets library reads compressed files)."""
    if not compression:
        return path.read_bytes()
    import fsspec
    from fsspec.utils import infer_compression

    codec = infer_compression(str(path))
    if codec is None:  # .zst needs the zstandard package
        raise UserError(f"{path}: this Python cannot decompress '{compression}' files",
                        "pip install zstandard, or decompress the file first.")
    try:
        with fsspec.open(str(path), "rb", compression=codec) as f:
            return f.read()
    except Exception as e:  # each codec has its own error type (BadGzipFile, LZMAError, ZstdError, EOFError, ...)
        raise UserError(f"{path} is not a readable {compression} file ({type(e).__name__}: {e})",
                        "Compress it again, or give the uncompressed file.") from None


def decode(raw: bytes, path: Path) -> str:
    """UTF-8 text (a leading byte-order mark dropped), or a UserError naming the first line that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise UserError(
            f"line {line} of {path} is not UTF-8 (byte 0x{raw[e.start]:02x} at column {column})",
            "Re-save the file as UTF-8 (older Windows editors save Windows-1252; in Notepad: File > Save as, "
            "Encoding: UTF-8).",
        ) from None


def json_error(e: json.JSONDecodeError) -> str:
    """json's message without a dangling "at" ("Unterminated string starting at" names the column itself)."""
    return e.msg.removesuffix(" at")


def _jsonl(text: str, path: Path) -> Table:
    rows, lines = [], []
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: JSON strings may hold U+2028
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(
                f"line {number} of {path} is not valid JSON ({json_error(e)} at column {e.colno})",
                "Each line of a .jsonl file must be one JSON object.",
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"line {number} of {path} is a JSON {type(row).__name__}, not an object",
                            "Each line of a .jsonl file must be one JSON object ({...}).")
        rows.append(row)
        lines.append(number)
    return Table(str(path), rows, lines)


def _json(text: str, path: Path) -> Table:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({json_error(e)} at line {e.lineno} column {e.colno})",
                        "Mend it there (a JSON checker shows where), or use .jsonl, one object per line.") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise UserError(f"{path} must hold a JSON list of objects (one per example)",
                        "Or use .jsonl, one object per line.")
    return Table(str(path), data)


def _csv(text: str, path: Path) -> Table:
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as e:
        raise UserError(f"{path} is not a readable CSV file ({e})",
                        "Quote cells that hold commas or line breaks (a spreadsheet's CSV export does).") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: there are no rows to train on", EMPTY_FIX) from None
    rows = frame.to_dict(orient="records")
    # JSON lists in cells (ShareGPT/OpenAI turns) arrive as strings; the format step parses them.
    return Table(str(path), rows, [i + 2 for i in range(len(rows))])


def _parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return Table(str(path), pq.read_table(path).to_pylist())
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file ({e})",
                        "Write it again (pandas: DataFrame.to_parquet), or give the data as .jsonl or .csv.") from None


def read_hub(name: str, split: str) -> Table:
    import datasets

    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:  # network, auth, missing repo or split: all the user's to fix, the cause is in the text
        raise UserError(
            f"could not load dataset '{name}' (split '{split}') from the Hugging Face Hub: {type(e).__name__}: {e}",
            "Check the name and your network (and HF_TOKEN for gated data), or train offline with --dataset sample "
            "or a local .jsonl/.json/.csv/.parquet file.",
        ) from None
    return Table(f"{name} [{split}]", data.to_list(), fingerprint=data._fingerprint)
