"""The slow-step (spill) rule on a real run's step timeline: a tiny Llama trained on the CPU, its metrics.jsonl read
back, and a spill spliced in (later steps slowed to 5x the median pace, reserved memory at the budget). The rule fires
once, at the tenth slow step, with the fix; the run as it ran, and the same slowdown far below the budget, never fire.
"""

from __future__ import annotations

import copy
import json
import statistics

import pytest

from tests.helpers import tiny_config
from trainer.distributed.ranks import Job
from trainer.runs import RunDir, spill
from trainer.train import recipe
from trainer.train.spill_watch import HISTORY, SpillWatch
from trainer.ui.train_tab import status_text

BUDGET_GB = 8.0
AT_CAP_GB, BELOW_CAP_GB = 7.8, 6.0  # reserved within 5% of the budget, and a quarter below it
SLOW_FROM = 23  # the first slowed step: after the warm-up, with a median of steps 11-22 (the eval at 20 in between)
FIRES_AT = SLOW_FROM + spill.SUSTAIN_STEPS - 1  # every step is logged: the tenth slow one
PYTHON = r"C:\Users\me\miniconda3\envs\trainer\python.exe"


@pytest.fixture(scope="module")
def timeline(shared_tiny_llama, tmp_path_factory) -> list[dict]:
    """A real run's metrics.jsonl: 40 steps, each logged, evaluated every 20 steps."""
    config, reason = tiny_config(shared_tiny_llama, tmp_path_factory.mktemp("spill"), "log_every_s=0",
                                 "eval_every_steps=20", max_steps=40)
    records = recipe.main(config, Job(), reason).read_metrics()
    assert [r["step"] for r in records if "loss" in r] == list(range(1, 41))
    assert [r["step"] for r in records if "eval_loss" in r] == [0, 20, 40]
    return records


def on_gpu(records: list[dict], reserved_gb: float) -> list[dict]:
    """The records as a GPU run writes them: with the peak memory torch reserved."""
    out = copy.deepcopy(records)
    for record in out:
        if "loss" in record:
            record["memory_reserved_gb"] = reserved_gb
    return out


def spliced(records: list[dict], reserved_gb: float, factor: float = 5.0) -> list[dict]:
    """`records` with a spill from step SLOW_FROM on: each step takes (factor - 1) times the run's median pace per token
    longer (the traffic over PCIe), on top of its own real time and jitter, so it runs at about `factor` times the
    median pace; reserved memory at `reserved_gb` from there (a spill comes once the memory fills the card). Added
    time, not each step's own time multiplied: on the shared test machine the steps before and after SLOW_FROM may run
    at different real speeds, and the test is of the rule, not of the machine."""
    out = on_gpu(records, BELOW_CAP_GB)
    median = statistics.median(p.seconds for p in spill.paces(out) if spill.WARMUP_STEPS < p.step < SLOW_FROM)
    added, tokens = 0.0, 0
    for record in out:
        if "loss" in record:
            if record["step"] >= SLOW_FROM:
                added += (factor - 1) * median * (record["tokens"] - tokens)
                record["memory_reserved_gb"] = reserved_gb
            tokens = record["tokens"]
        record["elapsed_s"] += added
    return out


def ratios(records: list[dict]) -> list[tuple[int, float]]:
    """Each interval's pace over the median, by step: what an assertion shows when the machine's timing was off."""
    paces = spill.paces(records)
    median = sorted(p.seconds for p in paces)[len(paces) // 2]
    return [(p.step, round(p.seconds / median, 2)) for p in paces]


def decisions(records: list[dict]) -> list[spill.Spill]:
    """The rule after each record, as the watch asks it while the run trains."""
    return [found for end in range(1, len(records) + 1) if (found := spill.spill(records[:end], BUDGET_GB))]


@pytest.mark.slow
def test_a_spill_spliced_into_a_real_run_fires_at_its_tenth_slow_step_with_the_fix(timeline):
    records = spliced(timeline, AT_CAP_GB)
    found = decisions(records)
    assert found, ratios(records)
    first = found[0]
    assert (first.since_step, first.step) == (SLOW_FROM, FIRES_AT), ratios(records)
    assert first.slowdown >= spill.SLOWDOWN and (first.memory_gb, first.budget_gb) == (AT_CAP_GB, BUDGET_GB)
    text = spill.message(first, PYTHON)
    assert f"Steps {SLOW_FROM}-{FIRES_AT} ran" in text and "(7.80 of 8.00 GB)" in text
    assert "CUDA - Sysmem Fallback Policy: Prefer No Sysmem Fallback" in text and PYTHON in text
    assert "micro_batch_size" in text and "max_seq_length" in text


@pytest.mark.slow
def test_the_run_as_it_ran_never_fires_even_at_the_cap(timeline):
    """Real step-to-step jitter (on a shared 2-core machine at that) with memory at the budget all along."""
    assert decisions(on_gpu(timeline, AT_CAP_GB)) == [], ratios(timeline)
    assert decisions(timeline) == []  # CPU records: resident memory, far below 8 GB


@pytest.mark.slow
def test_a_slowdown_below_the_cap_never_fires(timeline):
    """Slower steps with memory a quarter below the budget: another program on the GPU, clocks, a slow disk; not a
    spill of ours, and the fix would not help."""
    assert decisions(spliced(timeline, AT_CAP_GB))  # the same slowdown at the cap is a spill
    assert decisions(spliced(timeline, BELOW_CAP_GB)) == []


@pytest.mark.slow
def test_the_watch_says_it_once_and_the_run_and_its_ui_status_record_it(timeline, tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.set_status("running")
    watch = SpillWatch(run, BUDGET_GB, PYTHON)
    for record in spliced(timeline, AT_CAP_GB):
        run.log(record)  # as MetricsCallback writes each record, then hands it to the watch
        watch(record)
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("Sysmem Fallback Policy") == 1 and f"Steps {SLOW_FROM}-{FIRES_AT} ran" in out, ratios(timeline)
    events = [r for r in run.read_metrics() if r.get("event") == spill.EVENT]
    assert len(events) == 1
    event = events[0]
    assert event["step"] == FIRES_AT and event["reserved_gb"] == AT_CAP_GB and event["budget_gb"] == BUDGET_GB
    assert event["elapsed_s"] == next(r["elapsed_s"] for r in run.read_metrics() if r["step"] == FIRES_AT)
    assert "Prefer No Sysmem Fallback" in event["message"]
    # the line is a metrics line like the others: a resume keeps it with its step, readers of losses skip it
    run.keep_metrics_through(FIRES_AT)
    assert spill.recorded(run.read_metrics()) == event["message"]
    status = status_text(run)
    assert status.startswith(f"run: training, step {FIRES_AT}/40") and f"**Slow:** {event['message']}" in status
    assert json.loads(run.metrics.read_text().splitlines()[-1])["event"] == spill.EVENT


def test_no_budget_too_few_steps_or_a_short_burst_never_fire():
    def steps(first, last, seconds_each, start=0.0):
        return [{"step": s, "elapsed_s": start + seconds_each * (s - first + 1), "loss": 1.0, "tokens": 100 * s,
                 "memory_reserved_gb": 7.9} for s in range(first, last + 1)]

    steady = steps(1, 39, 1.0)
    crawl = steady + steps(40, 49, 10.0, start=39.0)  # 10x for ten steps at the cap
    assert spill.spill(crawl, 8.0) == spill.Spill(49, 40, 10.0, 7.9, 8.0)
    assert spill.spill(crawl, 0.0) is None  # no budget known: no judgement
    early = [r for r in crawl if r["step"] < 4 or r["step"] >= 40]  # slow, but no baseline after the warm-up
    assert spill.spill(early, 8.0) is None
    assert spill.spill(crawl[:-1], 8.0) is None  # nine slow steps: not yet
    burst = steady + steps(40, 45, 10.0, start=39.0) + steps(46, 49, 1.0, start=99.0)  # six slow steps, then steady
    assert [spill.spill(burst[:end], 8.0) for end in range(1, len(burst) + 1)] == [None] * len(burst)
    # a record every 5 steps: two slow intervals cover ten steps, but it takes three intervals
    spaced = [r for r in steady + steps(40, 60, 10.0, start=39.0) if r["step"] % 5 == 0]
    assert spill.spill([r for r in spaced if r["step"] <= 50], 8.0) is None  # 35-40 was partly slow: 45, 50 are
    assert spill.spill([r for r in spaced if r["step"] <= 55], 8.0) == spill.Spill(55, 41, 10.0, 7.9, 8.0)


def test_the_watch_looks_back_on_its_last_records_only_and_still_fires_late_in_a_long_run(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    watch = SpillWatch(run, 8.0, PYTHON)
    steps = 2 * HISTORY
    for s in range(1, steps + 11):  # a steady second per step, then ten at 10 s, at the cap throughout
        elapsed = min(s, steps) + 10.0 * max(0, s - steps)
        watch({"step": s, "elapsed_s": elapsed, "loss": 1.0, "tokens": 100 * s, "memory_reserved_gb": 7.9})
        assert len(watch.records) <= HISTORY
    assert [r["step"] for r in run.read_metrics()] == [steps + 10]
    assert run.read_metrics()[0]["slowdown"] == 10.0
    assert "Prefer No Sysmem Fallback" in " ".join(capsys.readouterr().out.split())  # wrapped to the terminal
