"""benchmarks/memory_sweep.py on the CPU: the real CLI trains each point of a small grid on worst-case rows, and each
record says what ran, as the run resolved it, with its memory and speed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT, cli_command

SCRIPT = str(ROOT / "benchmarks" / "memory_sweep.py")


def sweep(*args: str) -> subprocess.CompletedProcess:
    _, env = cli_command()
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=900, cwd=ROOT,
                          env={**env, "OMP_NUM_THREADS": "1"})


def test_each_point_is_one_record_of_what_ran(tiny_llama, tmp_path):
    out = tmp_path / "records.jsonl"
    result = sweep(str(tiny_llama), "--out", str(out), "--steps", "1", "--parallel", "2", "--profile", "cpu",
                   "--point", "micro_batch_size=1,max_seq_length=64,gradient_checkpointing=off,packing=false",
                   "--point", "micro_batch_size=2,max_seq_length=128,gradient_checkpointing=on,packing=true")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    records = sorted((json.loads(line) for line in out.read_text().splitlines()),
                     key=lambda r: r["requested"]["micro_batch_size"])
    assert len(records) == 2
    for record, (batch, length, checkpointing, packing) in zip(records, [(1, 64, "off", False),
                                                                       (2, 128, "on", True)], strict=True):
        assert record["exit_code"] == 0 and record["error"] is None and record["out_of_memory"] is None
        resolved = record["resolved"]
        assert (resolved["micro_batch_size"], resolved["max_seq_length"], resolved["gradient_checkpointing"],
                resolved["packing"]) == (batch, length, checkpointing, packing)
        assert resolved["grad_accum_steps"] == 1 and resolved["max_tokens_per_pass"] == 0
        assert record["engine"] == "transformers" and resolved["dtype"] == "float32"
        assert record["steps_done"] == 1 and record["tokens"] == batch * length  # worst-case rows: all full
        assert record["environment"]["gpu"] is None and record["environment"]["versions"]["torch"]
        assert record["tokens_per_s"] > 0 and record["peak_rss_gb"] > 0 and record["peak_reserved_gb"] is None
        model = record["model"]
        assert (model["family"], model["hidden"], model["layers"], model["heads"], model["kv_heads"]) == (
            "llama", 64, 2, 4, 2)
        assert model["tied"] and model["parameters"]["lm_head"] == 0
        assert model["parameters"]["embeddings"] == model["vocab"] * 64
        assert model["parameters"]["mlp"] == 2 * 3 * 64 * 128
        assert model["parameters"]["total"] == sum(v for k, v in model["parameters"].items() if k != "total")
    assert records[1]["requested"] == {"micro_batch_size": 2, "max_seq_length": 128, "gradient_checkpointing": "on",
                                       "packing": True}
    assert "tiny-llama-2-128-on-true" in result.stdout  # the table
    assert (tmp_path / "records-logs" / "tiny-llama-1-64-off-false.log").is_file()  # the child's output


@pytest.mark.parametrize("args, message", [
    (["{tmp}/nowhere", "--grid", "quick"], "{tmp}/nowhere is not a model folder (no config.json there)"),
    (["{model}", "--point", "micro_batch_size=1,flash=yes"], "--point micro_batch_size=1,flash=yes: give KEY=VALUE"),
    (["{model}", "--set", "packing"], "--set packing: give KEY=VALUE"),
    (["{model}", "--grid", "huge"], "invalid choice: 'huge'"),
])
def test_bad_arguments_exit_2_with_the_reason(args, message, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    fill = lambda text: text.format(tmp=tmp_path, model=model)  # noqa: E731
    result = sweep(*map(fill, args), "--out", str(tmp_path / "r.jsonl"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert fill(message) in result.stderr
    assert not (tmp_path / "r.jsonl").exists()


def test_the_grids_have_the_documented_points():
    spec = importlib.util.spec_from_file_location("memory_sweep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert len(module.GRIDS["quick"]) == 4 and len(module.GRIDS["full"]) == 22
    full = {tuple(p.values()) for p in module.GRIDS["full"]}
    assert len(full) == 22 and (4, 2048, "unsloth", True) in full and (1, 1024, "off", False) in full
