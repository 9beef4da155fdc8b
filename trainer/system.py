"""Facts of this machine: library versions, the NVIDIA driver, the GPU. A leaf: it imports nothing of ours."""

from __future__ import annotations

import functools
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

# The libraries a speed record names (benchmark.json, benchmarks/results/).
PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth",
            "unsloth_zoo", "xformers", "triton")


@dataclass(frozen=True)
class Gpu:
    name: str
    vram_gb: float  # GiB, as torch reports total memory
    compute_capability: str  # "8.6"
    sms: int = 0  # streaming multiprocessors (fewer where CUDA MPS confines this process)

    @property
    def has_bf16(self) -> bool:
        return float(self.compute_capability) >= 8.0

    def __str__(self) -> str:
        return f"{self.name} ({self.vram_gb:.1f} GB, sm_{self.compute_capability.replace('.', '')})"


def cpu_load() -> tuple[int, float] | None:
    """The cores this process may use and the machine's load (runnable processes, averaged over the last minute);
    None where the system keeps no load average (Windows)."""
    import os

    if not hasattr(os, "getloadavg"):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return cores, os.getloadavg()[0]


def detect_gpu() -> Gpu | None:
    """The first CUDA device, or None when there is none (or torch has no CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return gpu_of(torch.cuda.get_device_properties(0))


@dataclass(frozen=True)
class Unseen:
    """A card the NVIDIA driver lists and torch does not see: why, and what to do."""
    why: str
    fix: str


@functools.cache
def unseen_gpu() -> Unseen | None:
    """Why torch sees no CUDA GPU where the NVIDIA driver lists one (a CPU-only build of torch, the usual slip of a
    Windows install; CUDA_VISIBLE_DEVICES hiding it; a driver older than torch's CUDA), or None where there is none to
    see or torch sees it."""
    import os

    import torch

    if torch.cuda.is_available():
        return None
    driver = nvidia_driver()
    if not driver or "name" not in driver:
        return None
    listed = f"nvidia-smi lists the card {driver['name']}, but torch {torch.__version__}"
    if torch.version.cuda is None:
        return Unseen(f"{listed} is a CPU-only build",
                      "Run python -m trainer doctor: it says how to install the CUDA build")
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    if hidden is not None:
        return Unseen(f"{listed} is told CUDA_VISIBLE_DEVICES={hidden!r}, which hides it",
                      "Unset CUDA_VISIBLE_DEVICES, or give it the card's index (0)")
    return Unseen(f"{listed} is built for CUDA {torch.version.cuda}, which the driver ({driver['version']}) does not "
                  "run for it", "Run python -m trainer doctor: it says which driver torch needs")


def gpu_of(props: Any) -> Gpu:
    """A Gpu from torch's device properties."""
    return Gpu(props.name, props.total_memory / 2**30, f"{props.major}.{props.minor}", props.multi_processor_count)


def gpu_memory() -> tuple[float, float] | None:
    """Free and total memory of this process's CUDA device in GB, as the driver reports them (what other programs
    hold is not free), or None without one."""
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return free / 2**30, total / 2**30


def version_of(*distributions: str) -> str | None:
    """The installed version of the first of these distributions that is installed."""
    for name in distributions:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def nvidia_driver() -> dict[str, str] | None:
    """The driver version and GPU names nvidia-smi reports, or None where there is no NVIDIA driver."""
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return {"error": "nvidia-smi did not answer in 30 s"}
    if result.returncode != 0 or not result.stdout.strip():
        return {"error": (result.stdout + result.stderr).strip().splitlines()[-1] if result.stdout + result.stderr
                else f"nvidia-smi exit code {result.returncode}"}
    version, _, name = result.stdout.strip().splitlines()[0].partition(",")
    return {"version": version.strip(), "name": name.strip()}


def environment() -> dict[str, Any]:
    """GPU, driver and library versions, for a record that says exactly what was measured."""
    import torch

    env: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: version_of(name) for name in PACKAGES},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        env["sms"] = props.multi_processor_count  # fewer than the GPU has when MPS confines this process
        env["cuda"] = torch.version.cuda
        env["driver"] = (nvidia_driver() or {}).get("version")
    else:
        env["gpu"] = None
    return env


def since_process_start() -> float:
    """Seconds since this process started: at the first step, the user's wait for training to begin."""
    import psutil

    return round(time.time() - psutil.Process().create_time(), 2)
