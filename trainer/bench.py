"""Speed and memory of a run (steps/min, real tokens/s, peak memory) and the environment it ran in."""

from __future__ import annotations

import platform
import shutil
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from trainer.runs import RunDir

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth",
            "unsloth_zoo", "xformers", "triton")


def summarize(run: RunDir, skip_steps: int = 1) -> dict[str, Any]:
    """Throughput over the logged steps after the first `skip_steps` (which include start-up and compilation)."""
    steps = [m for m in run.read_metrics() if "loss" in m]
    if len(steps) <= skip_steps:
        return {"steps": len(steps)}
    first, last = steps[max(skip_steps, 1) - 1], steps[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    summary = {
        "steps": last["step"],
        "steps_per_min": round((last["step"] - first["step"]) / seconds * 60, 2),
        "tokens_per_s": round((last["tokens"] - first["tokens"]) / seconds, 1),
        "peak_memory_gb": max(m["memory_gb"] for m in steps),
        "first_loss": steps[0]["loss"],
        "last_loss": last["loss"],
    }
    if "memory_reserved_gb" in last:
        summary["peak_reserved_gb"] = max(m["memory_reserved_gb"] for m in steps)
    return summary


def environment() -> dict[str, Any]:
    """GPU, driver and library versions, for a record that says exactly what was measured."""
    import torch

    env: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: _version(name) for name in PACKAGES},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
        env["driver"] = _driver()
    else:
        env["gpu"] = None
    return env


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _driver() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None
