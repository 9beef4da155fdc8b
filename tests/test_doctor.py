"""`trainer doctor` through the real CLI on this CPU machine: real checks with the expected warnings, a Hub endpoint
served on 127.0.0.1, tokens never printed, and broken or hanging imports reported instead of taking it down."""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import threading

import pytest

from tests.helpers import ROOT, cli_command

SECRET = "hf_doNotPrintMe0123456789abcdefXYZ"


@pytest.fixture(autouse=True)
def cpu_only():
    import torch

    if torch.cuda.is_available():
        pytest.skip("the CPU expectations; tests/gpu/test_doctor_gpu.py covers CUDA machines")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def doctor(*args: str, cwd=ROOT, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """The real `python -m trainer doctor`, with the Hub token variables only as given (never the caller's)."""
    command, base = cli_command("doctor", *args)
    base = {k: v for k, v in base.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE")}
    base.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return subprocess.run(command, cwd=cwd, env={**base, **env}, capture_output=True, text=True, timeout=timeout)


def line(output: str, name: str) -> str:
    """The check line for `name` (its status word first)."""
    return next(row for row in output.splitlines() if row[6:].startswith(name + " "))


def test_doctor_on_a_cpu_machine_passes_with_warnings_and_never_prints_the_token(tmp_path):
    port = closed_port()
    result = doctor(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_TOKEN=SECRET, HF_HOME=str(tmp_path / "hf"))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "Traceback" not in out and SECRET not in out and SECRET[:12] not in out
    assert line(out, "python").startswith("PASS")
    assert line(out, "torch").startswith("WARN") and "CPU-only build" in line(out, "torch")
    assert line(out, "gpu").startswith("WARN") and "no CUDA GPU" in line(out, "gpu")
    assert line(out, "unsloth").startswith("WARN") and "only needed on a GPU" in line(out, "unsloth")
    assert line(out, "bitsandbytes").startswith("WARN")
    assert line(out, "triton").startswith("PASS")  # absent, as it must be on a CPU-only machine
    assert line(out, "packages").startswith("PASS")
    assert line(out, "disk").startswith("PASS") and "profile cpu needs about 1 GB" in line(out, "disk")
    hub = line(out, "hub")
    assert hub.startswith("WARN") and f"http://127.0.0.1:{port} is not reachable" in hub
    assert "HF_HUB_OFFLINE=1" in out  # the fix
    assert line(out, "hf token").startswith("PASS") and "set (HF_TOKEN)" in line(out, "hf token")
    assert line(out, "trackers").startswith("PASS") and "tensorboard " in line(out, "trackers")  # the test extra's
    assert "auto → cpu" in out and "No blockers" in out and "FAIL" not in out


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_HEAD(self):  # noqa: N802 (http.server's naming)
        Recorder.requests.append(f"HEAD {self.path}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_reachable_hub_and_a_token_only_in_token_txt(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}"
    (tmp_path / "token.txt").write_text(SECRET + "\n")  # the Paperspace habit: a file next to the notebook
    try:
        result = doctor(cwd=tmp_path, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"))
        (tmp_path / "hf").mkdir()
        (tmp_path / "hf" / "token").write_text(SECRET)
        with_file = doctor(cwd=tmp_path, HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    finally:
        server.shutdown()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert line(out, "hub").startswith("PASS") and f"{endpoint} answers (HTTP 200)" in out
    assert Recorder.requests == ["HEAD /"]
    token = line(out, "hf token")
    assert token.startswith("WARN") and "found in ./token.txt" in token and SECRET not in out
    out = with_file.stdout
    assert "set (token file" in line(out, "hf token") and SECRET not in out
    assert line(out, "hub").startswith("PASS") and "offline mode" in line(out, "hub")
    assert Recorder.requests == ["HEAD /"]  # offline: not asked again


def test_broken_and_hanging_imports_are_reported_not_fatal(tmp_path):
    """A torch that fails like a broken Windows CUDA install, a triton that crashes, an xformers that hangs."""
    fake = tmp_path / "fake"
    for name, body in {
        "torch": 'raise ImportError("DLL load failed while importing _C: The specified module could not be found.")',
        "triton": "import os\nos.abort()",
        "xformers": "import time\ntime.sleep(600)",
    }.items():
        (fake / name).mkdir(parents=True)
        (fake / name / "__init__.py").write_text(body + "\n")
    result = doctor("--timeout", "5", PYTHONPATH=os.pathsep.join([str(fake), str(ROOT)]),
                    HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    torch_line = line(out, "torch")
    assert torch_line.startswith("FAIL") and "ImportError: DLL load failed" in torch_line
    assert "triton" in out and "crashed" in line(out, "triton")
    assert "did not finish in 5 s" in line(out, "xformers")
    assert "auto cannot tell until torch imports" in out
    assert "1 blocker(s): torch" in out


def test_doctor_bad_flag():
    result = doctor("--timeout", "soon")
    assert result.returncode == 2 and "invalid float value: 'soon'" in result.stderr
    assert "Traceback" not in result.stderr
