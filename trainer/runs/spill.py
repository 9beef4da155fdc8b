"""The slow-step rule: whether a run's steps crawl because its GPU memory spilled into system memory (the Windows
driver's "CUDA - Sysmem Fallback Policy"), judged from the run's own metrics.jsonl records, and the run's record of it.

Since driver 536.40 an NVIDIA driver on Windows does not fail an allocation the card cannot hold: it places it in
system memory, reached over PCIe at a tenth or less of the card's bandwidth. Nothing fails; the steps just take
several times as long, for hours. The run's records show it: a pace several times the run's own median while the
memory torch holds sits at the budget (the process cap, or what the card had free at the start).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

# The first steps are no pace to compare with: the allocator grows, kernels compile (Triton, unsloth) and autotune.
WARMUP_STEPS = 10
# Paces to take a median of before judging: fewer, and one slow step would make the median.
MIN_BASELINE = 5
# How long the slowdown must last before it is called a spill: the last intervals covering at least SUSTAIN_STEPS
# steps, and at least RECENT logged intervals, must all be slow. One slow interval is a checkpoint save, a garbage
# collection; a few can be another program's burst on the machine (likely what once failed this rule's tests, when
# it waited for 3 intervals only, while another training started on the 2-core test machine); a spill lasts as long as
# the memory does not fit, hours, so waiting ten steps costs nothing.
SUSTAIN_STEPS = 10
RECENT = 3
# How many times the median pace counts as crawling. Memory reached over PCIe (16 to 32 GB/s) instead of the card's
# (250 to 1,000 GB/s) makes spilled steps many times slower; per token, so that longer rows are no slower pace, the
# steps of the CPU test runs stayed within 0.7x to 1.9x of their median.
SLOWDOWN = 3.0
# How close to the budget the reserved memory counts as "at the cap": torch's allocator reserves in 2 and 20 MiB
# segments and leaves fragments, so a run that fills its budget reserves a little under it; a run well below it
# (below 95%) cannot be the one overflowing the card.
NEAR_CAP = 0.95
EVENT = "spill"  # the "event" of the metrics.jsonl line that records it


@dataclass(frozen=True)
class Pace:
    step: int  # the logged step the interval ends at
    steps: int  # how many steps it covers (one where every step is logged)
    seconds: float  # per token where the records count tokens, else per step
    memory_gb: float | None  # reserved by torch (peak), or used where reserved is not recorded (the CPU)


@dataclass(frozen=True)
class Spill:
    step: int  # the step at which the rule decided (the end of the slow intervals)
    since_step: int  # the first step they cover
    slowdown: float  # the least of their paces over the median: each was at least this many times slower
    memory_gb: float
    budget_gb: float


def paces(records: list[dict[str, Any]]) -> list[Pace]:
    """The pace of each interval between two consecutive training records (those with a loss). An evaluation
    between them breaks the chain (its time is no training pace); per token where every record counts tokens, so that a
    batch of longer rows is not taken for a slow one."""
    train = [r for r in records if "loss" in r and "elapsed_s" in r]
    per_token = bool(train) and all("tokens" in r for r in train)
    found, previous = [], None
    for record in records:
        if "eval_loss" in record:
            previous = None
            continue
        if "loss" not in record or "elapsed_s" not in record:
            continue  # an event line, or a record of an older trainer without a clock
        if previous is not None and record["step"] > previous["step"]:
            work = (record["tokens"] - previous["tokens"]) if per_token else record["step"] - previous["step"]
            if work > 0:
                memory = record.get("memory_reserved_gb", record.get("memory_gb"))
                seconds = (record["elapsed_s"] - previous["elapsed_s"]) / work
                found.append(Pace(record["step"], record["step"] - previous["step"], seconds, memory))
        previous = record
    return found


def spill(records: list[dict[str, Any]], budget_gb: float) -> Spill | None:
    """Whether the last intervals of `records` (metrics.jsonl, oldest first), SUSTAIN_STEPS steps and RECENT intervals
    at least, each ran at least SLOWDOWN times the median pace before them (after WARMUP_STEPS), with reserved memory
    within NEAR_CAP of `budget_gb`."""
    if budget_gb <= 0:
        return None
    first = next((r["step"] for r in records if "loss" in r), None)
    timeline = [p for p in paces(records) if first is not None and p.step >= first + WARMUP_STEPS]
    start, covered = len(timeline), 0  # the recent window: from timeline[start] to the end
    while start > 0 and (covered < SUSTAIN_STEPS or len(timeline) - start < RECENT):
        start -= 1
        covered += timeline[start].steps
    if covered < SUSTAIN_STEPS or start < MIN_BASELINE:
        return None
    median = statistics.median(p.seconds for p in timeline[:start])
    recent = timeline[start:]
    if median <= 0 or any(p.seconds < SLOWDOWN * median for p in recent):
        return None
    if any(p.memory_gb is None or p.memory_gb < NEAR_CAP * budget_gb for p in recent):
        return None
    return Spill(recent[-1].step, recent[0].step - recent[0].steps + 1, min(p.seconds for p in recent) / median,
                 recent[-1].memory_gb, budget_gb)


def message(found: Spill, python: str) -> str:
    """What happened and the fix, for the console and the run's record."""
    return (f"Steps {found.since_step}-{found.step} ran {found.slowdown:.1f}x slower than this run's median with GPU "
            f"memory at its budget ({found.memory_gb:.2f} of {found.budget_gb:.2f} GB): the NVIDIA driver is likely "
            "spilling GPU memory into system memory (Windows, driver 536.40 or newer; Task Manager shows \"shared GPU "
            "memory\" in use). Fix: stop the run (Ctrl+C saves a checkpoint); NVIDIA Control Panel > Manage 3D "
            f"settings > Program Settings > add {python} > CUDA - Sysmem Fallback Policy: Prefer No Sysmem Fallback; "
            "continue with --resume (what does not fit then runs out of memory, and training splits it into smaller "
            "passes instead of crawling). Or lower micro_batch_size or max_seq_length (--set micro_batch_size=1).")


def record(found: Spill, python: str, elapsed_s: float) -> dict[str, Any]:
    """The metrics.jsonl line of a spill: a step and its clock, as every line has (a resume reads both)."""
    return {"step": found.step, "elapsed_s": elapsed_s, "event": EVENT, "message": message(found, python),
            "slowdown": round(found.slowdown, 2), "reserved_gb": found.memory_gb,
            "budget_gb": round(found.budget_gb, 3)}


def recorded(records: list[dict[str, Any]]) -> str | None:
    """The message of the run's spill, if its metrics record one (the UI shows it beside the progress)."""
    return next((r["message"] for r in reversed(records) if r.get("event") == EVENT), None)
