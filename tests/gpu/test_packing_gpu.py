"""Exact packing on the unsloth engine: each packed conversation's loss and gradients equal its own alone."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT
from tests.gpu.conftest import record

# bf16 on 4-bit weights: a conversation run alone takes other kernels (shapes) than inside a packed row, so the sums
# differ by rounding; 1% of the loss and 5% of the gradient norm allow that. Attention across conversations moves them
# by far more (the control in the record).
LOSS_TOLERANCE, GRAD_TOLERANCE = 0.01, 0.05


def test_packed_conversations_train_as_they_do_alone(llama_1b, tmp_path):
    out = tmp_path / "packing.json"
    result = subprocess.run([sys.executable, "-m", "tests.gpu.packing_check", str(llama_1b), str(tmp_path / "run"),
                             str(out)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    facts = json.loads(out.read_text()) if out.exists() else {}
    passed = (result.returncode == 0 and len(facts.get("conversations", [])) >= 2
              and facts["loss_relative_difference"] <= LOSS_TOLERANCE
              and facts["grad_relative_difference"] <= GRAD_TOLERANCE
              and facts["crossed_grad_relative_difference"] > 4 * GRAD_TOLERANCE)
    record("packing-exact-unsloth-1b", None, passed, profile="rtx3070", engine="unsloth", dtype="bfloat16",
           model="Llama-3.2-1B shape, random", loss_tolerance=LOSS_TOLERANCE, grad_tolerance=GRAD_TOLERANCE, **facts)
    assert passed, (result.stdout + result.stderr)[-4000:]
