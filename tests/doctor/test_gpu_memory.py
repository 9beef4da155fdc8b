"""doctor's GPU memory lines: which drivers can spill GPU memory into system memory (Windows, 536.40 or newer), from
the platform and the driver version string nvidia-smi reports, with the policy that stops it; and the memory free now,
from the torch probe's facts."""

from __future__ import annotations

import pytest

from trainer.doctor.checks import PASS, WARN, Probe, check_sysmem_fallback, check_torch

PYTHON = r"C:\Users\me\miniconda3\envs\trainer\python.exe"
POLICY = "CUDA - Sysmem Fallback Policy: Prefer No Sysmem Fallback"


@pytest.mark.parametrize("version", ["537.58", "536.40", "560.94", "1000.01"])
def test_a_windows_driver_from_536_40_can_spill_and_gets_the_policy_for_this_python(version):
    check = check_sysmem_fallback("win32", version, PYTHON)
    assert (check.name, check.level) == ("sysmem fallback", WARN)
    assert f"driver {version} can spill GPU memory into system memory" in check.detail
    assert f"Manage 3D settings > Program Settings > add {PYTHON} > {POLICY}" in check.fix


@pytest.mark.parametrize("version", ["531.79", "536.25", "472.12"])
def test_an_older_windows_driver_runs_out_of_memory_instead(version):
    check = check_sysmem_fallback("win32", version, PYTHON)
    assert check.level == PASS and f"driver {version} predates the sysmem fallback (536.40)" in check.detail
    assert check.fix == ""


@pytest.mark.parametrize("version", ["580.159.04", "535.104.05", "550.54.15"])
def test_a_linux_driver_never_spills_whatever_its_number(version):
    check = check_sysmem_fallback("linux", version, "/usr/bin/python3")
    assert check.level == PASS and "never spill" in check.detail and check.fix == ""


@pytest.mark.parametrize("version", ["", "unknown", "537", "580.159.04", "R537.58"])
def test_a_windows_version_that_does_not_read_warns_with_the_policy(version):
    check = check_sysmem_fallback("win32", version, PYTHON)
    assert check.level == WARN and f"cannot read the driver version {version!r}" in check.detail
    assert POLICY in check.fix


def test_wsl_runs_on_the_windows_driver_and_its_setting_is_global():
    check = check_sysmem_fallback("wsl", "537.58", "/usr/bin/python3")
    assert check.level == WARN and "WSL 2 runs on this Windows driver" in check.detail
    assert f"Manage 3D settings > Global Settings > {POLICY}" in check.fix


def test_the_vram_line_says_what_is_free_now_and_what_others_hold():
    """The torch probe's facts of an 8 GB card of which the desktop and other programs hold 1.3 GB."""
    facts = {"version": "2.11.0+cu128", "cuda": "12.8", "available": True, "name": "NVIDIA GeForce RTX 3070",
             "vram_gb": 8.0, "capability": "8.6", "bf16": True, "devices": 1, "free_gb": 6.7, "total_gb": 8.0}
    checks, _ = check_torch(Probe(True, facts, "", ""), {"version": "537.58", "name": "NVIDIA GeForce RTX 3070"})
    vram = next(c for c in checks if c.name == "vram")
    assert vram.level == PASS
    assert vram.detail == "8.0 GB, 6.7 GB free now (1.3 GB in use by other programs and this check's CUDA context)"
    full = {k: v for k, v in facts.items() if k not in ("free_gb", "total_gb")}
    full["memory_error"] = "CUDA error: out of memory"  # the probe's own CUDA context did not fit
    checks, _ = check_torch(Probe(True, full, "", ""), {"version": "537.58", "name": "NVIDIA GeForce RTX 3070"})
    vram = next(c for c in checks if c.name == "vram")
    assert vram.detail == "8.0 GB, free memory unreadable: CUDA error: out of memory"
