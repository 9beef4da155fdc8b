"""Read a dataset's rows from a local file (.jsonl .json .csv .parquet), the Hugging Face Hub, the bundled sample,
or the generated finetome-like benchmark data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer.errors import UserError

SAMPLE = Path(__file__).with_name("sample.jsonl")
EXTENSIONS = (".jsonl", ".json", ".csv", ".parquet")


@dataclass
class Table:
    """Rows plus enough bookkeeping to name each one in an error message."""

    source: str
    rows: list[dict[str, Any]]
    lines: list[int] | None = None  # for .jsonl/.csv: the file line each row came from

    def where(self, i: int) -> str:
        if self.lines is not None:
            return f"line {self.lines[i]} of {self.source}"
        return f"row {i + 1} of {self.source}"


def read(dataset: str, split: str = "train") -> Table:
    """Rows of `dataset`: "sample", "finetome-like", a local file, or a Hub dataset id."""
    if dataset == "sample":
        return read_file(SAMPLE)
    if dataset == "finetome-like":
        from trainer.data.synthetic import finetome_like

        return Table("finetome-like (generated)", finetome_like())
    path = Path(dataset)
    if path.exists() or path.suffix.lower() in EXTENSIONS:
        return read_file(path)
    return read_hub(dataset, split)


def read_file(path: Path) -> Table:
    if not path.exists():
        raise UserError(f"dataset file {path} does not exist", "Check the path, or use --dataset sample.")
    if path.is_dir():
        raise UserError(f"{path} is a folder", f"Give one file ({', '.join(EXTENSIONS)}).")
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        raise UserError(f"{path}: unsupported file type '{suffix}'", f"Use one of {', '.join(EXTENSIONS)}.")
    if path.stat().st_size == 0:
        raise UserError(f"{path} is empty: there are no rows to train on")
    table = {".jsonl": _jsonl, ".json": _json, ".csv": _csv, ".parquet": _parquet}[suffix](path)
    if not table.rows:
        raise UserError(f"{path} has no rows to train on")
    return table


def _jsonl(path: Path) -> Table:
    rows, lines = [], []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as e:
                raise UserError(
                    f"line {number} of {path} is not valid JSON ({e.msg} at column {e.colno})",
                    "Each line of a .jsonl file must be one JSON object.",
                ) from None
            if not isinstance(row, dict):
                raise UserError(f"line {number} of {path} is a JSON {type(row).__name__}, not an object")
            rows.append(row)
            lines.append(number)
    return Table(str(path), rows, lines)


def _json(path: Path) -> Table:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise UserError(f"{path} must hold a JSON list of objects (one per example)",
                        "Or use .jsonl, one object per line.")
    return Table(str(path), data)


def _csv(path: Path) -> Table:
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not a readable CSV file ({e})") from None
    except pd.errors.EmptyDataError:
        raise UserError(f"{path} is empty: there are no rows to train on") from None
    rows = frame.to_dict(orient="records")
    # JSON lists in cells (ShareGPT/OpenAI turns) arrive as strings; the format step parses them.
    return Table(str(path), rows, [i + 2 for i in range(len(rows))])


def _parquet(path: Path) -> Table:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return Table(str(path), pq.read_table(path).to_pylist())
    except (pa.ArrowInvalid, OSError) as e:
        raise UserError(f"{path} is not a readable Parquet file ({e})") from None


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
    return Table(f"{name} [{split}]", data.to_list())
