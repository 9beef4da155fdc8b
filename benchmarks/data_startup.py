"""The data work before the first step of a 100k-row epoch, on the real Llama 3.2 tokenizer: the first start (it
tokenizes every row and writes the token cache) and the second (it reads the cache).

    python benchmarks/data_startup.py [ROWS] [--keep DIR]

A finetome-like file of ROWS rows (default 100,000: FineTome-100k's size and length distribution) is written as .jsonl
and each start runs in a fresh process, as `python -m trainer --profile rtx3070 --epochs 1 --dataset FILE` would run
its data stage: data.load_rows (read, hash, parse, validate), data.build_rows (split, tokens, statistics), and the
batch order that group_by_length builds from the rows' lengths (train.sampler.length_grouped_sampler, what the Trainer
does before its first step). Model loading and the GPU are not part of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

START = """
import json, sys, time
t0 = time.perf_counter()
from transformers import AutoTokenizer
from trainer import data
from trainer.profiles import resolve
from trainer.train.sampler import length_grouped_sampler
tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
config, _ = resolve("rtx3070", ["cache_dir=" + sys.argv[3]], {"data.dataset": sys.argv[1], "train.max_steps": 0})
t1 = time.perf_counter()
examples = data.load_rows(config)
t2 = time.perf_counter()
prepared = data.build_rows(config, examples, tokenizer)
t3 = time.perf_counter()
order = list(iter(length_grouped_sampler(prepared.train, 16)))  # what the Trainer does before its first step
t4 = time.perf_counter()
print(json.dumps({"imports_s": t1 - t0, "load_s": t2 - t1, "build_s": t3 - t2, "batch_order_s": t4 - t3,
                  "data_work_s": t4 - t1, "train_rows": prepared.stats["train_rows"]}))
"""


def main(rows: int, keep: Path | None) -> None:
    from tests.models import llama32_tokenizer
    from trainer.config import cache_dir
    from trainer.data.synthetic import finetome_like

    tokenizer = llama32_tokenizer(cache_dir())
    work = keep or Path(tempfile.mkdtemp(prefix="data-startup-"))
    work.mkdir(parents=True, exist_ok=True)
    path = work / f"finetome-like-{rows}.jsonl"
    if not path.exists():
        path.write_text("".join(json.dumps(row) + "\n" for row in finetome_like(rows)))
    print(f"{path}: {rows} rows, {path.stat().st_size / 2**20:.0f} MB; {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}")
    cache = work / "cache"
    for start in ("first start (tokenizes, writes the cache)", "second start (reads the cache)"):
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-c", START, str(path), str(tokenizer), str(cache)], cwd=ROOT,
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(result.stdout + result.stderr)
        numbers = json.loads(result.stdout.splitlines()[-1])
        print(f"{start}: data work {numbers['data_work_s']:.1f} s (read and check {numbers['load_s']:.1f} s, "
              f"split and tokens {numbers['build_s']:.1f} s, batch order {numbers['batch_order_s']:.1f} s); "
              f"imports {numbers['imports_s']:.1f} s; process {time.perf_counter() - began:.1f} s; "
              f"{numbers['train_rows']} train rows")


if __name__ == "__main__":
    args = sys.argv[1:]
    keep = Path(args[args.index("--keep") + 1]) if "--keep" in args else None
    numbers = [a for a in args if a.isdigit()]
    main(int(numbers[0]) if numbers else 100_000, keep)
