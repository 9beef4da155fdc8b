"""GGUF round trip on SmolLM2: llama.cpp's converter and quantizer, then llama.cpp itself answers a question; a crash
of llama.cpp during the export is a message, and leaves no staged file."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import pytest

from tests.helpers import run_cli
from trainer.runs import RunDir

# Put on PYTHONPATH, so every Python of the export loads it: llama.cpp crashes for real (a SIGSEGV in native code,
# reading address 0) when it decodes a prompt of several tokens with a file whose name has one of CRASH_ON's words,
# as the native build of llama-cpp-python 0.3.36 does with quantized files on an Intel Xeon with AMX.
CRASHING_DECODE = """
import ctypes
import os
import sys

import llama_cpp.llama_cpp as api

decode = api.llama_decode


def crashing_decode(ctx, batch):
    if batch.n_tokens > 1 and any(w in a for w in os.environ["CRASH_ON"].split(",") for a in sys.argv):
        ctypes.string_at(0)
    return decode(ctx, batch)


api.llama_decode = crashing_decode
"""


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 instruction sets")
def test_installed_llama_cpp_is_the_build_for_any_x86_64_cpu():
    """scripts/install_llama_cpp.sh (which .ci/run calls) installs llama.cpp with AVX2 kernels and none of this CPU's
    newer ones (AVX-512, AMX), so the GGUF tests here check the build that users install."""
    info = subprocess.run([sys.executable, "-c", "import llama_cpp; print(llama_cpp.llama_print_system_info())"],
                          capture_output=True, text=True, check=True).stdout
    assert "AVX2 = 1" in info and "AVX512" not in info and "AMX" not in info, (
        f"{info.strip()}: a native build; install the portable one with bash scripts/install_llama_cpp.sh")


@pytest.fixture
def run_dir(smollm2_run, tmp_path):
    """A copy of the shared 2-step CPU demo run, which each test exports."""
    return shutil.copytree(smollm2_run, tmp_path / "run")


@pytest.fixture
def gguf_run(smollm2_gguf_run, tmp_path):
    """A copy of the shared run exported to merged/ and an f16 GGUF by `trainer export --gguf f16`."""
    return shutil.copytree(smollm2_gguf_run, tmp_path / "run")


@pytest.mark.slow
def test_gguf_round_trip_on_smollm2(gguf_run):
    run_dir = gguf_run  # exported to f16 by the CLI
    record = json.loads((run_dir / "export.json").read_text())
    # The f16 file is the merged model as llama.cpp runs it: the demo model still knows its geography.
    assert "Paris" in record["gguf_f16"]["reply"], record["gguf_f16"]
    # Checked against the trained run (base + adapter): the same prompt tokens from the GGUF's own template, the same
    # first tokens, stops where the run stops.
    check = record["gguf_f16"]["check"]
    assert check["differs"] == [] and check["reference"] == "base + adapter", check
    assert check["template_same_tokens"] == check["prompts"] == 6 and check["same_first_token"] >= 0.8, check
    assert check["stops_where_run_stops"] == check["run_stops"], check
    q4 = run_cli("export", str(run_dir), "--gguf", "q4_k_m")
    assert q4.returncode == 0, q4.stdout + q4.stderr
    record = json.loads((run_dir / "export.json").read_text())
    assert record["gguf_q4_k_m"]["reply"].strip()  # loads in llama.cpp and generates
    assert record["gguf_q4_k_m"]["check"]["differs"] == [], record["gguf_q4_k_m"]["check"]
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


@pytest.mark.slow
def test_a_gguf_with_another_chat_template_fails_its_check_and_is_kept(gguf_run):
    """The merged folder's chat template swapped for Llama 3's before the GGUF is written: llama.cpp then renders
    the prompts to other tokens than the run trained on; the export says so and exits 1, the file kept."""
    run_dir = gguf_run
    shutil.rmtree(run_dir / "gguf")  # the GGUF written with the run's own template
    llama3 = ("{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] }}"
              "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>"
              "\n\n{% endif %}")
    (run_dir / "merged" / "chat_template.jinja").write_text(llama3)
    result = run_cli("export", str(run_dir), "--gguf", "f16")
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1 and "Traceback" not in out, out
    assert "The f16 GGUF differs from the trained run" in out
    assert "the GGUF's chat template renders 6 of 6 prompts to other tokens than the run's tokenizer" in out
    assert (run_dir / "gguf" / "model-f16.gguf").is_file()
    assert json.loads((run_dir / "export.json").read_text())["gguf_f16"]["check"]["differs"]


@pytest.mark.slow
def test_llama_cpp_crash_in_the_check_is_a_message_and_keeps_the_f16_file_that_works(run_dir, tmp_path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(CRASHING_DECODE)
    pythonpath = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    gguf = run_dir / "gguf"

    # Every file crashes: nothing is kept.
    result = run_cli("export", str(run_dir), "--gguf", "q4_k_m", env={"PYTHONPATH": pythonpath, "CRASH_ON": "gguf"})
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2 and "Traceback" not in out, out
    assert (f"llama.cpp crashed (SIGSEGV) while answering a question with {gguf / 'model-q4_k_m.gguf'}: that file "
            "was not kept; the f16 file crashed too and was not kept") in out
    assert 'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-deps --no-cache-dir' in out
    assert list(gguf.iterdir()) == []

    # Only the quantized file crashes (as reported): the f16 file answers, is kept and named.
    result = run_cli("export", str(run_dir), "--gguf", "q4_k_m", env={"PYTHONPATH": pythonpath, "CRASH_ON": "q4_k_m"})
    out = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 2 and "Traceback" not in out, out
    assert (f"llama.cpp crashed (SIGSEGV) while answering a question with {gguf / 'model-q4_k_m.gguf'}: that file "
            f"was not kept; the f16 file {gguf / 'model-f16.gguf'} answers and is kept") in out
    assert [p.name for p in gguf.iterdir()] == ["model-f16.gguf"]
    with open(gguf / "model-f16.gguf", "rb") as f:
        assert f.read(4) == b"GGUF"
    assert "gguf_q4_k_m" not in json.loads((run_dir / "export.json").read_text())


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
    assert "--gguf needs llama.cpp's converter" in out and "bash scripts/install_llama_cpp.sh" in out
    assert not (run_dir / "merged").exists() and not (run_dir / "gguf").exists()
