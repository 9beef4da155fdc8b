"""The memory model against the GPU's measured peaks, and the settings it fits for the cards and families."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_models import SHAPES
from tests.helpers import ROOT, run_cli
from trainer import profiles
from trainer.fit import memory
from trainer.fit.shape import from_config

RECORDS = sorted((ROOT / "benchmarks" / "results" / "memory").glob("*.jsonl"))


def test_the_fitted_coefficients_predict_every_measured_peak_within_ten_percent():
    """benchmarks/fit_memory.py --check: the module's coefficients against every point that did not heal."""
    result = subprocess.run([sys.executable, "benchmarks/fit_memory.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    errors = [float(line.rsplit(" ", 1)[-1].rstrip("%")) for line in result.stdout.splitlines()
              if " GB  predicted " in line]
    assert len(errors) == 33 and max(map(abs, errors)) <= 10, result.stdout


def test_the_fitted_runs_on_the_gpu_peaked_near_or_below_what_the_model_predicts():
    """The settings the fit chose ran on the GPU under the card's cap without running out of memory; the memory
    model's prediction for each (its settings, engine and dtype as the run resolved them) is within 10% of the
    measured peak or above it (the safe side)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from fit_memory import shape_of

    fitted = [json.loads(line) for path in RECORDS if "fitted" in path.name for line in path.read_text().splitlines()]
    assert len(fitted) >= 38
    for record in fitted:
        assert record["exit_code"] == 0 and not record["out_of_memory"], record["point"]
        settings = record["resolved"]
        predicted = memory.peak_gb(shape_of(record), settings["micro_batch_size"] * settings["max_seq_length"],
                                   settings["gradient_checkpointing"], settings["r"], engine=record["engine"],
                                   dtype=settings["dtype"])
        assert predicted >= record["peak_reserved_gb"] * 0.9, (record["point"], predicted)


@pytest.fixture(scope="module")
def config_folders(tmp_path_factory) -> dict[str, Path]:
    """Each family's published shape as a folder of config.json alone (no weights): what a plan needs."""
    root = tmp_path_factory.mktemp("configs")
    folders = {}
    for name, shape in SHAPES.items():
        folder = root / name
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(shape.published()))
        folders[name] = folder
    return folders


@pytest.mark.parametrize(("profile", "name", "fits", "told"), [
    ("rtx3070", "1B", True, "the profile's settings: about 5.6 GB"),  # a folder of the profile's model's shape
    ("rtx3070", "8B", True, "1 row(s) of 1024 tokens"),  # tight: rows cut to 1,024 tokens
    ("rtx3070", "qwen3-4B", True, "2 row(s) of 2048 tokens a pass, gradient checkpointing (unsloth)"),
    ("rtx2060s", "gemma3-4B-images", True, "gradient checkpointing (unsloth): about 5.6 of 7.0 GB"),
    ("rtx2060s", "qwen3-8B", False, "It fits the 16 GB cards' profiles: a4000, quadro-rtx5000, t4."),
    ("a5000", "llama-3.3-70B", False, "None of the profiles' cards (up to 24 GB) has room for it; on a 48 GB card"),
    ("rtx2060s", "gemma3-270M", True, "2 row(s) of 2048 tokens a pass, no gradient checkpointing"),
    # float16: 1 x 2,048 without checkpointing measured 14.46 GB of 15, inside the margin: Unsloth's checkpointing
    ("quadro-rtx5000", "8B", True, "2 row(s) of 2048 tokens a pass, gradient checkpointing (unsloth)"),
    ("quadro-rtx5000", "mistral-7B", True, "no gradient checkpointing"),
    ("quadro-rtx5000", "phi4-mini", True, "no gradient checkpointing"),
])
def test_a_dry_run_plans_each_family_on_each_card_from_its_config_alone(config_folders, profile, name, fits, told):
    result = run_cli("--profile", profile, "--model", str(config_folders[name]), "--dataset", "sample", "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == (0 if fits else 2), said
    assert told in said
    assert ("Gemma 3 trains slowly in float16" in said) == (name.startswith("gemma3") and profile != "rtx3070")
    if fits:
        assert "Plan: fits: about" in said and "per epoch of" in said and "Dry run: stopped" in said
        # sizes beyond the GPU records (Llama 3.2 1B to Qwen3 8B) are said to be extrapolated
        assert ("No GPU record of a model of 0.3B parameters, measured 1.2B to 8.2B" in said) == (name == "gemma3-270M")
    else:
        assert "Traceback" not in said and "does not fit" in said and "fix: Pick a smaller model" in said


@pytest.mark.parametrize(("name", "packed"), [("phi4-mini", False), ("gemma3-4B-images", True), ("qwen3-4B", True)])
def test_phi3_rows_are_not_packed(config_folders, name, packed):
    """Phi-3 trains one conversation a row, the notebook's 8 a step (trainer/fit/choose.py UNPACKED: its packed rows
    train slower); Gemma 3 and Qwen3 keep the profile's packed rows padded to 64, and what the user sets wins."""
    model = {"model.name": str(config_folders[name])}
    config, said = profiles.resolve("rtx3070", flags=model)
    train = config.train
    assert (train.packing, train.pad_to_multiple_of) == ((True, 64) if packed else (False, 0))
    if not packed:
        assert train.micro_batch_size * train.grad_accum_steps == 8, train
    assert ("one conversation a row, not packed" in said) != packed, said
    config, said = profiles.resolve("rtx3070", ["packing=true", "grad_accum_steps=3"], model)
    assert config.train.packing and config.train.grad_accum_steps == 3 and "not packed" not in said, said


def test_the_transformers_engines_coefficients_predict_its_measured_peaks_within_ten_percent():
    """The fallback engine (plain transformers + PEFT, TRL's chunked loss): its own coefficients, its own records."""
    result = subprocess.run([sys.executable, "benchmarks/fit_memory.py", "--engine", "transformers", "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    errors = [float(line.rsplit(" ", 1)[-1].rstrip("%")) for line in result.stdout.splitlines()
              if " GB  predicted " in line]
    assert len(errors) == 6 and max(map(abs, errors)) <= 10, result.stdout


def test_the_transformers_engine_is_fitted_with_its_own_checkpointing_and_memory(config_folders):
    """Where unsloth does not train, a Qwen3 4B on an 8 GB card fits one row of 2,048 with torch's checkpointing
    (6.0 GB predicted, 6.14 measured: 2026-12-06-h100-fitted-rtx3070-transformers.jsonl), not Unsloth's two."""
    result = run_cli("--profile", "rtx3070", "--model", str(config_folders["qwen3-4B"]), "--set",
                     "engine=transformers", "--dataset", "sample", "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert "fitted: 1 row(s) of 2048 tokens a pass, gradient checkpointing (on): about 6.0 of 7.0 GB" in said


@pytest.mark.parametrize(("method", "fitted"), [
    ("dpo", "1 pair(s) of 768 tokens a side a pass"),
    ("kto", "2 answer(s) of 768 tokens a pass"),  # KTO's KL term needs two; they are predicted as one pair
])
def test_preference_pairs_are_fitted_with_their_logits(config_folders, method, fitted):
    """DPO on an 8 GB card: the profile's 1,024 tokens a side do not fit a Qwen3 4B pair; 768 do."""
    result = run_cli("--profile", "rtx3070", "--model", str(config_folders["qwen3-4B"]), "--method", method,
                     "--dataset", "sample", "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert f"fitted: {fitted}, gradient checkpointing (unsloth)" in said


def test_a_family_we_do_not_train_is_refused_before_the_start(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt_neox", "hidden_size": 512,
                                                      "intermediate_size": 2048, "num_hidden_layers": 6,
                                                      "num_attention_heads": 8, "vocab_size": 50304}))
    result = run_cli("--profile", "rtx3070", "--model", str(tmp_path), "--dataset", "sample", "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "a gpt_neox model" in said and "llama, qwen3, gemma3, mistral, phi3" in said, said


def test_a_model_path_with_a_typo_is_refused_before_the_start(tmp_path):
    """The check the UI's Start runs first: a model folder that does not exist, on a CPU profile too."""
    result = run_cli("--profile", "cpu", "--model", str(tmp_path / "tiny-lama"), "--dataset", "sample", "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "neither an existing folder nor a Hub id" in said and "fix:" in said, said
    assert "Traceback" not in said and "Data:" not in said, said


def test_what_the_user_sets_wins_and_is_checked(config_folders):
    result = run_cli("--profile", "rtx3070", "--dataset", "sample", "--dry-run", "--set", "micro_batch_size=8",
                     "--set", "gradient_checkpointing=off")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert "gradient_checkpointing=off, micro_batch_size=8 needs about" in said and "Plan: does not fit" in said


def test_a_plan_on_the_cpu_for_the_users_model_says_how_to_plan_for_a_card(config_folders):
    result = run_cli("--profile", "cpu", "--model", str(config_folders["qwen3-4B"]), "--dataset", "sample",
                     "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert "Plan: on the CPU, no card to fit; --profile CARD plans for that card without it" in said, said


def test_a_profile_of_the_users_without_the_cards_speed_is_planned_for_memory_and_says_why_no_time(config_folders,
                                                                                                   tmp_path):
    profile = tmp_path / "my-card.toml"
    profile.write_text('[hardware]\nvram_gb = 12\ncompute_capability = "8.6"\n')
    result = run_cli("--profile", str(profile), "--model", str(config_folders["qwen3-4B"]), "--dataset", "sample",
                     "--dry-run")
    said = " ".join(result.stdout.split())
    assert result.returncode == 0, said
    assert re.search(r"Plan: fits: about [\d.]+ of 11.0 GB on worst-case rows; no time per epoch: the profile does "
                     r"not give the card's speed \(hardware.tflops", said), said


def test_a_setting_of_the_users_that_fits_nowhere_is_named_with_the_fit_that_would(config_folders):
    """Another model than the profile's: nothing fits with the user's micro-batch, where the fit's own would."""
    result = run_cli("--profile", "rtx3070", "--model", str(config_folders["qwen3-4B"]), "--dataset", "sample",
                     "--dry-run", "--set", "micro_batch_size=64")
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "micro_batch_size=64 needs at least about" in said, said
    assert "leave it to the fit: 2 row(s) of 2048 tokens a pass" in said and "Traceback" not in said, said


def test_the_memory_model_grows_with_tokens_and_shrinks_with_checkpointing():
    shape = from_config({"model_type": "llama", **SHAPES["3B"].config})
    off = [memory.peak_gb(shape, tokens, "off") for tokens in (1024, 2048, 4096)]
    assert off == sorted(off) and off[0] < off[-1]
    assert memory.peak_gb(shape, 4096, "unsloth") < memory.peak_gb(shape, 4096, "on") < off[-1]


def test_the_card_by_model_table_is_generated_from_the_fit_and_the_records():
    """docs/any-model.md's table is `python benchmarks/fit_table.py --write`: regenerate it after changing the fit."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import fit_table

    page = fit_table.PAGE.read_text()
    assert fit_table.page_with_table(page) == page
    assert "| rtx3070 | Llama-3.1-8B-Instruct | 1 x 1024, accum 8, Unsloth's | 6.8 of 7 | 5.87 |" in page
    assert ("| quadro-rtx5000 | Llama-3.1-8B-Instruct | 2 x 2048, accum 2, Unsloth's | 7.6 of 15 |  | 16.5 h | "
            "1,144 tok/s") in page
