"""GGUF round trip on SmolLM2: llama.cpp's converter and quantizer, then llama.cpp itself answers a question."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import run_cli
from trainer.runs import RunDir


@pytest.mark.slow
def test_gguf_round_trip_on_smollm2(smollm2_dir, tmp_path):
    run_dir = tmp_path / "run"
    trained = run_cli("--profile", "cpu", "--dataset", "sample", "--max-steps", "2", "--set", "eval_size=0",
                      "--run-dir", str(run_dir))
    assert trained.returncode == 0, trained.stdout + trained.stderr
    f16 = run_cli("export", str(run_dir), "--gguf", "f16")
    assert f16.returncode == 0, f16.stdout + f16.stderr
    record = json.loads((run_dir / "export.json").read_text())
    # The f16 file is the merged model as llama.cpp runs it: the demo model still knows its geography.
    assert "Paris" in record["gguf_f16"]["reply"], record["gguf_f16"]
    q4 = run_cli("export", str(run_dir), "--gguf", "q4_k_m")
    assert q4.returncode == 0, q4.stdout + q4.stderr
    record = json.loads((run_dir / "export.json").read_text())
    assert record["gguf_q4_k_m"]["reply"].strip()  # loads in llama.cpp and generates
    sizes = {p.name: p.stat().st_size for p in (run_dir / "gguf").glob("*.gguf")}
    assert set(sizes) == {"model-f16.gguf", "model-q4_k_m.gguf"} and sizes["model-q4_k_m.gguf"] < sizes[
        "model-f16.gguf"] / 2
    modelfile = (run_dir / "gguf" / "Modelfile").read_text()
    assert modelfile.startswith("FROM ./model-q4_k_m.gguf\nTEMPLATE \"\"\"")
    assert "<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>" in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    assert not [p for p in (run_dir / "gguf").iterdir() if p.name.startswith(".")]  # no staging files left
    with open(run_dir / "gguf" / "model-q4_k_m.gguf", "rb") as f:
        assert f.read(4) == b"GGUF"
    # `trainer runs` lists what the run produced
    assert RunDir(run_dir).exports() == ["adapter", "merged", "gguf/model-f16.gguf", "gguf/model-q4_k_m.gguf"]


def test_gguf_without_llama_cpp_names_the_install_command(shared_tiny_llama, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "llama_cpp.py").write_text("raise ImportError('No module named llama_cpp')\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text("[model]\nname = \"x\"\n")
    (run_dir / "status.json").write_text('{"state": "completed"}')
    (run_dir / "adapter").mkdir()
    (run_dir / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))}
    result = run_cli("export", str(run_dir), "--gguf", "q4_k_m", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert "--gguf needs llama.cpp's converter" in out and 'pip install -e ".[gguf]"' in out
    assert not (run_dir / "merged").exists() and not (run_dir / "gguf").exists()
