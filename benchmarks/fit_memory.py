"""Fit the memory model's coefficients (trainer/fit/memory.py) to measured peaks, and print each point's error.

    python benchmarks/fit_memory.py [--engine transformers] [--check] [RECORDS.jsonl ...]

A non-negative least-squares fit, each point weighted by 1/its peak (the error that matters is relative), of the
peak reserved memory beyond the measured start. Points that ran out of memory and healed (their peak is the cap, not
the need) are left out. Paste the printed coefficients into trainer/fit/memory.py; with `--check` it prints only how
far the module's own coefficients are from each point. `--engine transformers`: the fallback engine's coefficients
(TRANSFORMERS), from its own records and their points with gradient checkpointing (the fit gives it nothing else).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainer.fit import memory  # noqa: E402
from trainer.fit.shape import Shape  # noqa: E402

RECORDS = Path(__file__).parent / "results" / "memory"
DEFAULT = {"unsloth": RECORDS / "2026-12-06-h100.jsonl", "transformers": RECORDS / "2026-12-06-h100-transformers.jsonl"}


def points(paths: list[Path], engine: str) -> list[dict]:
    rows = [json.loads(line) for path in paths for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("exit_code") == 0 and not r.get("healed") and r["engine"] == engine
            and (engine == "unsloth" or r["requested"]["gradient_checkpointing"] != "off")]


def shape_of(record: dict) -> Shape:
    m = record["model"]
    family = {"gemma3": "gemma3_text"}.get(m["family"], m["family"])
    return Shape(family, m["hidden"], m["intermediate"], m["layers"], m["heads"], m["kv_heads"], m["head_dim"],
                 m["vocab"], m["tied"])


def tokens_of(record: dict) -> int:
    return record["requested"]["micro_batch_size"] * record["requested"]["max_seq_length"]


def nonnegative_least_squares(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares with every coefficient >= 0: refit without the most negative one until none is left."""
    active = list(range(a.shape[1]))
    while True:
        x = np.zeros(a.shape[1])
        x[active] = np.linalg.lstsq(a[:, active], b, rcond=None)[0]
        if x.min() >= 0:
            return x
        active.remove(int(np.argmin(x)))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    engine = argv[argv.index("--engine") + 1] if "--engine" in argv else "unsloth"
    paths = [Path(a) for a in argv if a not in ("--check", "--engine", engine)] or [DEFAULT[engine]]
    rows = points(paths, engine)
    names = list(memory.features(shape_of(rows[0]), 1, "off"))
    x = np.array([[memory.features(shape_of(r), tokens_of(r), r["requested"]["gradient_checkpointing"])[n]
                   for n in names] for r in rows])
    peak = np.array([r["peak_reserved_gb"] for r in rows])
    start = np.array([r["memory_at_start_gb"] for r in rows])
    predicted_start = np.array([memory.start_gb(shape_of(r), r["resolved"]["r"], engine) for r in rows])
    print(f"start: predicted within {np.max(np.abs(predicted_start / start - 1)):.1%} of the measured")
    if check:
        weights = np.array([memory.coefficients(engine)[n] for n in names])
    else:
        weights = nonnegative_least_squares(x / peak[:, None], (peak - start) / peak)
        print("coefficients:", json.dumps({n: round(float(w), 4) for n, w in zip(names, weights, strict=True)}))
    predicted = start + x @ weights
    if check:
        predicted = np.array([memory.peak_gb(shape_of(r), tokens_of(r), r["requested"]["gradient_checkpointing"],
                                             r["resolved"]["r"], engine=engine) for r in rows])
    for r, p, m in zip(rows, predicted, peak, strict=True):
        print(f"{r['point'][:44]:44} measured {m:6.2f} GB  predicted {p:6.2f}  {p / m - 1:+.1%}")
    print(f"largest error: {np.max(np.abs(predicted / peak - 1)):.1%} over {len(rows)} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
