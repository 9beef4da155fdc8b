"""`trainer doctor` on the CUDA host: every GPU line passes and `auto` names a profile; the output is recorded.

Runs on the CUDA host (no network there: the Hub line is expected to warn, as is a missing token).
"""

from __future__ import annotations

from tests.gpu.conftest import record
from tests.helpers import run_cli
from trainer import profiles

MUST_PASS = ("python", "torch", "driver", "cuda", "gpu", "vram", "compute capability", "bf16", "bitsandbytes",
             "triton", "unsloth")
NAMES = sorted((*MUST_PASS, "xformers", "packages", "disk", "hub", "hf token"), key=len, reverse=True)


def lines_by_check(output: str) -> dict[str, str]:
    """{check name: its line}; each check is one line: PASS|WARN|FAIL, two spaces, the name, the detail."""
    found = {}
    for row in output.splitlines():
        name = next((n for n in NAMES if row[6:].startswith(n + " ")), None)
        if row[:4] in ("PASS", "WARN", "FAIL") and name:
            found[name] = row
    return found


def test_doctor_on_the_cuda_host():
    result = run_cli("doctor", timeout=900)
    out = result.stdout + result.stderr
    lines = lines_by_check(out)
    expected = profiles.pick(profiles.detect_gpu()).name
    not_passing = {name: lines.get(name, "missing") for name in MUST_PASS if not lines.get(name, "").startswith("PASS")}
    passed = False
    try:  # each condition asserted on its own; the record is written either way, passed when all hold
        assert result.returncode == 0, out
        assert not not_passing, not_passing
        assert f"auto → {expected}" in out, out
        assert "Traceback" not in out, out
        passed = True
    finally:
        record("doctor-cuda-host", None, passed, profile=expected, exit_code=result.returncode,
               not_passing=not_passing, output=out.splitlines())
