"""The "Verified on" table of docs/benchmarks.md, generated from the GPU records in benchmarks/results/*.json.

`python benchmarks/verified_table.py` prints it; `--write` replaces the block between the markers in docs/benchmarks.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "docs" / "benchmarks.md"  # the guide that holds the table, between START and END
START, END = "<!-- verified:start -->", "<!-- verified:end -->"
VERSIONS = ("torch", "transformers", "unsloth", "trl", "peft", "bitsandbytes")


def table() -> str:
    lines = ["| date | GPU | test | profile | engine | steps/min | real tokens/s | peak GB | result |",
             "|---|---|---|---|---|---|---|---|---|"]
    stacks = set()
    for path in sorted(RESULTS.glob("*.json")):
        record = json.loads(path.read_text())
        summary = record.get("summary", {})
        emulation = record.get("emulation") or {}
        where = []
        if emulation.get("confined"):
            where.append(f"emulated {emulation['card']}, MPS {emulation['mps_share_percent']}%")
        if record.get("vram_cap_gb"):
            where += [f"{record['vram_cap_gb']:g} GB cap"] + ([record["dtype"]] if record.get("dtype") else [])
        cap = f" ({', '.join(where)})" if where else ""
        peak = record.get("peak_reserved_gb", summary.get("peak_reserved_gb", summary.get("peak_memory_gb", "-")))
        lines.append(
            f"| {record['date'][:10]} | {record['gpu']}{cap} | {record['test']} | {record.get('profile', '-')} "
            f"| {record.get('engine', '-')} | {summary.get('steps_per_min', '-')} | {summary.get('tokens_per_s', '-')} "
            f"| {peak} | {'pass' if record['passed'] else 'FAIL'} |"
        )
        stacks.add(", ".join(f"{name} {record['versions'].get(name)}" for name in VERSIONS))
    lines.append("")
    lines.extend(f"Versions: {stack}; driver {record.get('driver')}." for stack in sorted(stacks))
    return "\n".join(lines)


def page_with_table(page: str) -> str:
    return with_block(page, START, END, table())


def with_block(page: str, start: str, end: str, block: str) -> str:
    """`page` with what lies between its `start` and `end` markers replaced by `block` (a generated table)."""
    before, rest = page.split(start, 1)
    _, after = rest.split(end, 1)
    return f"{before}{start}\n{block}\n{end}{after}"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page_with_table(PAGE.read_text()))
    else:
        print(table())
