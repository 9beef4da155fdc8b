"""doctor's torch and GPU lines where the NVIDIA driver lists a card that torch cannot use: a CPU-only build (the
usual slip of a Windows install) is a failure with the CUDA build's install, and the card is named as unused."""

from __future__ import annotations

from trainer.doctor.checks import FAIL, WARN, Probe, check_torch

CPU_BUILD = {"version": "2.13.0+cpu", "cuda": None, "available": False}
RTX_3070 = {"version": "560.94", "name": "NVIDIA GeForce RTX 3070"}


def test_a_card_the_driver_lists_but_a_cpu_build_of_torch_cannot_use():
    checks, gpu = check_torch(Probe(True, CPU_BUILD, "", ""), RTX_3070)
    lines = {check.name: check for check in checks}
    assert gpu is None
    assert lines["torch"].level == FAIL and "a CPU-only build" in lines["torch"].detail
    assert "install the CUDA build: pip install --force-reinstall torch==" in lines["torch"].fix
    assert lines["gpu"].level == WARN and lines["gpu"].detail.startswith("NVIDIA GeForce RTX 3070 unused")


def test_without_a_driver_the_cpu_build_is_the_demos():
    checks, _ = check_torch(Probe(True, CPU_BUILD, "", ""), None)
    lines = {check.name: check for check in checks}
    assert lines["torch"].level == WARN and "Fine for the CPU demo" in lines["torch"].fix
    assert lines["gpu"].detail == "no CUDA GPU: `auto` runs the offline CPU demo"
