"""The benchmark's bookkeeping on the CPU: real short runs of a tiny Llama, records, the report, the arithmetic.

Speed targets live in the benchmark's GPU records (benchmarks/results/), never in a timed test.
"""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli
from trainer.bench import cards, report
from trainer.data.synthetic import FINETOME_ROWS, TOKENS_PER_ROW, finetome_like, pairs_like
from trainer.profiles import resolve
from trainer.runs import speed


def test_finetome_like_lengths_match_the_documented_distribution(llama_tokenizer):
    from trainer import data

    config, _ = resolve("rtx3070", ["eval_size=0", "max_steps=0", "cache_tokens=false"],
                        {"data.dataset": "finetome-like"})
    # the real Llama 3.2 tokenizer and template
    prepared = data.build_rows(config, data.load_rows(config), llama_tokenizer)
    lengths = [min(len(ids), 2048) for ids in prepared.train["input_ids"]]
    assert abs(statistics.mean(lengths) - TOKENS_PER_ROW) / TOKENS_PER_ROW < 0.005
    assert prepared.stats["tokens_mean"] == pytest.approx(statistics.mean(lengths), abs=0.1)
    assert 450 < statistics.median(lengths) < 700 and 0.01 < sum(n >= 2048 for n in lengths) / len(lengths) < 0.05
    assert finetome_like(5) == finetome_like(5) and finetome_like(5, seed=1) != finetome_like(5)


@pytest.mark.slow
def test_bench_runs_configurations_records_a_failed_one_and_reports(shared_tiny_llama, tmp_path):
    results = tmp_path / "results"
    env = {"TRAINER_RECORDS_DIR": str(results)}
    result = run_cli("bench", "--profile", "cpu", "--model", str(shared_tiny_llama), "--steps", "6",
                     "--config", "huge:micro_batch_size=4000,grad_accum_steps=1",
                     "--config", "small:micro_batch_size=2,grad_accum_steps=1",
                     "--config", "grouped:micro_batch_size=4,grad_accum_steps=1,group_by_length=true,"
                     "pad_to_multiple_of=64", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert "Traceback" not in out and "small" in out and "grouped" in out
    said = " ".join(result.stdout.split())
    (path,) = results.glob("*.jsonl")
    assert path.name == "cpu.jsonl"
    huge, *records = [json.loads(line) for line in path.read_text().splitlines()]
    # the failed configuration is recorded with the CLI's own error, and the others still run
    assert huge["failed"] == "exit code 2" and "= 4000" in huge["log_tail"] and "fix:" in huge["log_tail"]
    shown = report.report_rows([huge, *records])[0]  # the CLI's own error, shortened, where the numbers would be
    assert shown[:2] == ["huge", "?"] and shown[2].startswith("exit code 2: finetome-like has 2000 rows"), shown
    assert len(shown[2]) <= len("exit code 2: ") + 70, shown
    assert [r["config"] for r in records] == ["small", "grouped"]
    assert huge["session"] == records[0]["session"] == records[1]["session"]
    for r in records:
        n = r["numbers"]
        assert n["steps"] == 6 and n["tokens_per_s"] > 0 and n["steps_per_min"] > 0
        # each configuration's result is said as it ends, before the table
        assert f"{r['config']}: {n['tokens_per_s']:,.0f} real tokens/s, {n['steps_per_min']} steps/min" in said
        assert 0 < n["time_to_first_step_s"] < r["wall_s"]
        # finetome-like rows through the tiny model's Llama 3.2 template: about TOKENS_PER_ROW tokens per sample
        assert 300 < n["tokens_per_s"] / n["samples_per_s"] < 1200
        assert n["finetome_epoch_h"] == pytest.approx(FINETOME_ROWS * TOKENS_PER_ROW / n["tokens_per_s"] / 3600,
                                                      rel=0.01)
        assert r["versions"]["torch"] and r["gpu"] is None and r["data"] == "finetome-like"
    assert records[1]["micro_batch_size"] == 4 and records[1]["group_by_length"] is True
    assert records[1]["options"] == ["micro_batch_size=4", "grad_accum_steps=1", "group_by_length=true",
                                     "pad_to_multiple_of=64"]

    output = tmp_path / "RESULTS.md"
    result = run_cli("bench", "--report", "--output", str(output), env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    text = output.read_text()
    assert "## CPU" in text and "| small | transformers |" in text and "| grouped | transformers |" in text
    assert "micro_batch_size=4, grad_accum_steps=1, group_by_length=true" in text


def test_pairs_like_are_standard_preference_pairs_of_the_documented_lengths(tmp_path):
    from trainer.data import preferences, sources

    rows = pairs_like()
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pairs = preferences.convert(sources.read(str(path)))  # our own checks: no identical or empty answers, one prompt
    assert pairs.format == "standard" and len(pairs) == len(rows) == 2000 and pairs.skipped == 0
    words = [len(row["chosen"].split()) for row in rows] + [len(row["rejected"].split()) for row in rows]
    assert 200 < statistics.median(words) < 260 and 70 < statistics.median(len(r["prompt"].split()) for r in rows) < 110
    assert pairs_like(3) == pairs_like(3) and pairs_like(3, seed=1) != pairs_like(3)


@pytest.mark.slow
def test_bench_of_dpo_records_the_method_on_generated_pairs(shared_tiny_llama, tmp_path):
    results = tmp_path / "results"
    result = run_cli("bench", "--profile", "cpu", "--model", str(shared_tiny_llama), "--steps", "4", "--method", "dpo",
                     "--config", "pairs:micro_batch_size=1,grad_accum_steps=2,max_seq_length=256",
                     env={"TRAINER_RECORDS_DIR": str(results)})
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "DPO Benchmark" in out, out[-3000:]
    (record,) = [json.loads(line) for line in (results / "cpu.jsonl").read_text().splitlines()]
    assert record["method"] == "dpo" and record["data"] == "pairs-like" and record["max_seq_length"] == 256
    assert record["numbers"]["steps"] == 4 and record["numbers"]["tokens_per_s"] > 0
    row = report.report_rows([record])[0]
    assert row[0] == "pairs" and row[-1] == "-"  # no FineTome epoch for preference pairs


def test_the_dpo_notebook_recipe_wins_over_the_profiles_preference_settings():
    """bench --method dpo's notebook configuration is Unsloth's DPO notebook, whatever the profile's [preference]
    table says (what `bench` resolves for each configuration before it trains)."""
    from trainer.bench import sweep

    plan = sweep.plan("rtx3070", [], None, ["tuned", "notebook"], 10, None, method="dpo")
    (_, tuned), (_, notebook) = plan.configs
    profile, _ = resolve(plan.profile, plan.settings_of(tuned))
    recipe, _ = resolve(plan.profile, plan.settings_of(notebook))
    assert plan.data == "pairs-like" and profile.train.method == recipe.train.method == "dpo"
    assert (profile.train.micro_batch_size, profile.train.grad_accum_steps) == (1, 8)  # profiles/rtx3070.toml
    assert (recipe.train.micro_batch_size, recipe.train.grad_accum_steps, recipe.model.max_seq_length) == (2, 4, 1024)
    assert recipe.train.learning_rate == 5e-6 and recipe.train.gradient_checkpointing == "unsloth"


@pytest.mark.parametrize("args, fragments", [
    (["--config", "nonsense"], ["unknown benchmark configuration 'nonsense'", "NAME:key=value"]),
    (["--config", "a b:lora.r=8"], ["must be letters"]),
    (["--engines", "jax"], ["unknown engine jax"]),
    (["--engines", "unsloth"], ["need an NVIDIA GPU", "--engines transformers"]),
    (["--engines", "transformers", "--steps", "1"], ["too few to measure"]),
    (["--config", "x:lora.r=zero"], ["lora.r", "'zero'"]),
    (["--engines", "transformers", "--profile", "nope"], ["nope"]),
    pytest.param(["--engines", "transformers", "--gpus", "2"], ["--gpus 2: no NVIDIA GPU was detected"],
                 marks=pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a machine without a GPU")),
    (["--engines", "transformers", "--gpus", "1"], ["compares each configuration on 1 GPU and on N"]),
])
def test_bad_bench_input_exits_2_with_the_fix(args, fragments, tmp_path):
    result = run_cli("bench", *args, env={"TRAINER_RECORDS_DIR": str(tmp_path / "results")})
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    for fragment in fragments:
        assert fragment in out, out
    assert not (tmp_path / "results").exists()


def test_a_damaged_record_file_is_named(tmp_path):
    (tmp_path / "gpu.jsonl").write_text('{"config": "a"}\n{not json\n')
    result = run_cli("bench", "--report", "--output", str(tmp_path / "R.md"),
                     env={"TRAINER_RECORDS_DIR": str(tmp_path)})
    assert result.returncode == 2 and "gpu.jsonl line 2" in result.stdout and not (tmp_path / "R.md").exists()


SHAPE_1B = speed.LLAMA_32_SHAPES["1B"]


def test_model_arithmetic_matches_llama_3_2():
    # Meta's model cards: 1.23B and 3.21B parameters (our count leaves out the norms; the embedding is the tied head).
    assert abs(speed.parameters(SHAPE_1B) - 1.236e9) / 1.236e9 < 0.005
    assert abs(speed.parameters(speed.LLAMA_32_SHAPES["3B"]) - 3.213e9) / 3.213e9 < 0.005
    assert [speed.passes_per_token(g) for g in ("unsloth", "on", "off")] == [3, 3, 2]
    with_recompute = speed.flops_per_token(SHAPE_1B, 690, passes=3)
    assert with_recompute == pytest.approx(1.5 * speed.flops_per_token(SHAPE_1B, 690, passes=2))
    assert with_recompute == pytest.approx(3 * (2 * speed.parameters(SHAPE_1B) + 2 * 690 * 32 * 64 * 16))


def emulated_record(tokens_per_s, tflops=57.0, gbs=630.0, card="rtx3070", **extra):
    emulation = {"card": card, "card_name": cards.CARDS[card].name, "confined": True, "how": "test",
                 "mps_share_percent": 5, "sms": 8, "slice_matmul_tflops": tflops, "slice_copy_gbs": gbs,
                 "card_tflops": cards.CARDS[card].tflops, "card_gbs": 448.0, "dtype": "bfloat16", "vram_cap_gb": 7.0,
                 "device_memory_limit_gb": 8}
    numbers = {"tokens_per_s": tokens_per_s, "steps_per_min": 60.0, "peak_memory_gb": 4.0, "tokens_per_row": 690}
    return {"shape": SHAPE_1B, "engine": "unsloth", "emulation": emulation, "numbers": numbers, **extra}


def test_mfu_counts_the_model_flops_of_the_real_tokens_against_the_slice():
    record = emulated_record(6000.0)
    model_flops = 6000.0 * 2 * (2 * speed.parameters(SHAPE_1B) + 2 * 2 * 345 * 32 * 64 * 16)  # 2 passes
    assert cards.mfu(record) == pytest.approx(model_flops / 57e12)
    assert 0.5 < cards.mfu(record) < 0.6  # 6,000 real tokens/s of the 1B on 57 TFLOPS
    # twice the slice's throughput for the same speed: half the utilization; gradient checkpointing is not credited
    assert cards.mfu(emulated_record(6000.0, tflops=114.0)) == pytest.approx(cards.mfu(record) / 2)
    assert cards.mfu({"numbers": {"tokens_per_s": 1.0}, "shape": SHAPE_1B}) is None  # not emulated


def test_preference_records_count_the_reference_forward_and_state_no_finetome_epoch():
    sft, dpo, orpo, kto = (emulated_record(3000.0, method=m) for m in ("sft", "dpo", "orpo", "kto"))
    assert cards.mfu(dpo) == pytest.approx(1.5 * cards.mfu(sft))  # policy forward + backward, and the reference's
    assert cards.mfu(orpo) == pytest.approx(cards.mfu(sft))  # ORPO has no reference model
    # KTO: the answer's forward + backward, the reference's forward of it, and the KL sequence's two forwards
    assert cards.mfu(kto) == pytest.approx(2.5 * cards.mfu(sft))
    estimate = cards.card_estimate(dpo)
    assert estimate["tokens_per_s"] == cards.card_estimate(sft)["tokens_per_s"] and estimate["finetome_epoch_h"] is None
    notebook = emulated_record(1500.0, method="dpo", config="notebook")
    assert cards.against_users([notebook, {**dpo, "config": "tuned"}]) is None  # users report SFT epochs only


def test_card_estimate_scales_the_slice_by_its_measured_ratio_to_the_card():
    # a slice 1.4x the RTX 3070 in compute and in bandwidth: the card takes 1.4x as long
    record = emulated_record(7000.0, tflops=40.6 * 1.4, gbs=448 * 1.4)
    estimate = cards.card_estimate(record)
    assert estimate["tokens_per_s"] == pytest.approx(5000.0, rel=1e-3)
    assert estimate["finetome_epoch_h"] == pytest.approx(FINETOME_ROWS * TOKENS_PER_ROW / 5000.0 / 3600, rel=1e-3)
    # compute and bandwidth weigh by the compute-bound share of the step
    mixed = cards.card_estimate(emulated_record(7000.0, tflops=40.6 * 2, gbs=448.0))
    assert mixed["tokens_per_s"] == pytest.approx(7000 / (cards.COMPUTE_SHARE * 2 + 1 - cards.COMPUTE_SHARE), rel=1e-3)
    # only the GPU's share of the step slows down; a step that waits on the CPU as long as the card works is as fast
    half_busy = emulated_record(7000.0, tflops=40.6 * 1.4, gbs=448 * 1.4)
    half_busy["numbers"]["gpu_busy"] = 0.9
    assert cards.card_estimate(half_busy)["tokens_per_s"] == pytest.approx(7000 / (0.9 * 1.4), rel=1e-3)
    half_busy["numbers"]["gpu_busy"] = 0.4
    assert cards.card_estimate(half_busy)["tokens_per_s"] == pytest.approx(7000, rel=1e-3)
    assert cards.card_estimate({"numbers": {"tokens_per_s": 1.0}}) is None


def test_report_shows_emulated_sessions_with_mfu_and_the_card_estimate(tmp_path):
    session = {"gpu": "NVIDIA H100 80GB HBM3", "session": "2026-11-24T10:00:00+00:00", "profile": "rtx3070",
               "data": "finetome-like", "steps_asked": 30, "vram_cap_gb": 7.0, "dtype": "bfloat16", "versions": {}}
    records = [emulated_record(2000.0, config="notebook", **session),
               emulated_record(7000.0, tflops=40.6 * 1.4, gbs=448 * 1.4, config="tuned", micro_batch_size=2,
                               packing=False, **session),
               {**emulated_record(1000.0, config="transformers", **session), "engine": "transformers"},
               {"gpu": "NVIDIA H100 80GB HBM3", "session": "2026-11-23T10:00:00+00:00", "config": "tuned",
                "engine": "unsloth", "numbers": {"tokens_per_s": 30000.0, "steps_per_min": 90.0,
                                                 "peak_memory_gb": 4.0}}]
    (tmp_path / "gpu.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    text = report.report(tmp_path)
    emulated, full = text.index("## RTX 3070 8 GB, emulated"), text.index("## NVIDIA H100 80GB HBM3")
    assert emulated < full  # the emulated cards come first: profiles are chosen there
    assert "Emulated RTX 3070 8 GB on 8 SMs of NVIDIA H100 80GB HBM3" in text
    tuned = next(line for line in text.splitlines() if line.startswith("| tuned | unsloth | 7,000 |"))
    assert "| 3.50x | 7.00x |" in tuned and "| 5,000 |" in tuned
    assert f"| {cards.mfu(records[1]):.0%} |" in tuned
    assert "| tuned | unsloth | 30,000 | - | - | 90 |" in text  # a whole-GPU session keeps its own columns
    assert "- `tuned`: the profile as is (micro_batch_size=2, packing=false)" in text  # what the fit chose


def test_a_report_to_a_folder_that_does_not_exist_is_refused_and_writes_nothing(tmp_path):
    result = run_cli("bench", "--report", "--output", str(tmp_path / "missing" / "RESULTS.md"))
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "cannot write" in said and "Give --output a file in a folder that exists" in said
    assert "Traceback" not in result.stdout + result.stderr and list(tmp_path.iterdir()) == []


def test_estimates_are_checked_against_what_users_report_on_the_card(tmp_path):
    # the notebook recipe's estimate is the check of the estimate model: its error against the users' figure
    slice_ = {"tflops": 40.6 * 1.4, "gbs": 448 * 1.4}
    notebook, tuned = emulated_record(2000.0, config="notebook", **slice_), emulated_record(4000.0, config="tuned",
                                                                                            **slice_)
    notebook_h, tuned_h = (cards.card_estimate(r)["finetome_epoch_h"] for r in (notebook, tuned))
    error = notebook_h / cards.CARDS["rtx3070"].users_notebook_h - 1
    text = cards.against_users([notebook, tuned])
    assert f"notebook recipe at {notebook_h:g} h ({error:+.0%} against the users' 9 h" in text
    assert f"profile at {tuned_h:g} h" in text and "~26 steps/min" in text
    assert f"about {tuned_h / (1 + error):.1f} h on the card" in text
    assert cards.against_users([tuned]) is None  # no notebook recipe in the session: nothing to check against
    session = {"gpu": "NVIDIA H200", "session": "2026-12-03T10:00:00+00:00", "versions": {}}
    (tmp_path / "gpu.jsonl").write_text("".join(json.dumps({**r, **session}) + "\n" for r in (notebook, tuned)))
    assert text in report.report(tmp_path)


def test_report_shows_several_gpus_against_one_of_the_same_session(tmp_path):
    session = {"gpu": "NVIDIA H200", "session": "2026-11-25T10:00:00+00:00", "engine": "unsloth", "versions": {}}
    one = {**session, "config": "tuned", "base_config": "tuned", "world_size": 1,
           "numbers": {"tokens_per_s": 5000.0, "steps_per_min": 60.0, "peak_memory_gb": 5.0}}
    two = {**one, "config": "tuned-2gpus", "world_size": 2, "numbers": {**one["numbers"], "tokens_per_s": 9500.0}}
    (tmp_path / "gpu.jsonl").write_text(json.dumps(one) + "\n" + json.dumps(two) + "\n")
    assert report.scaling_rows([one, two]) == [["tuned", "2", "9,500", "1.90x", "95%", "5"]]
    text = report.report(tmp_path)
    assert "Several GPUs" in text and "| tuned | 2 | 9,500 | 1.90x | 95% | 5 |" in text


def test_committed_report_matches_the_committed_records():
    """benchmarks/RESULTS.md is `bench --report` of benchmarks/results/*.jsonl: regenerate it after a benchmark."""
    assert (ROOT / "benchmarks" / "RESULTS.md").read_text() == report.report(ROOT / "benchmarks" / "results")


def test_benchmark_guide_bench_command_is_real():
    assert "python -m trainer bench" in Path(ROOT / "docs" / "benchmarks.md").read_text()


@pytest.mark.slow
def test_profile_steps_names_where_the_host_waits(shared_tiny_llama, tmp_path):
    """benchmarks/profile_steps.py (how the per-step waits were found on the GPU) on the CPU: the same report, with
    TRL's per-batch metrics named as a wait (`.item()` in SFTTrainer.compute_loss)."""
    import subprocess
    import sys

    out = tmp_path / "profile.txt"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "profile_steps.py"), str(out), "2", "3", "--", "--profile", "cpu",
         "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps", "3", "--set", "eval_size=0",
         "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    text = out.read_text()
    assert text.startswith("2 steps in ") and "Host waits on the GPU" in text
    assert "aten::_local_scalar_dense" in text and "compute_loss" in text


def test_each_emulated_card_is_its_profiles_card():
    """A card's memory, capability and TFLOPS are written twice, for the emulation (CARDS) and for the fit (its
    profile's [hardware], which tells the time per epoch): they must agree."""
    from trainer.bench.cards import CARDS
    from trainer.profiles import resolve

    for card in CARDS.values():
        hardware = resolve(card.profile, fit=False)[0].hardware
        assert (hardware.vram_gb, hardware.tflops) == (card.memory_gb, card.tflops), card.profile
        assert (float(hardware.compute_capability) < 8) == (card.dtype == "float16"), card.profile
