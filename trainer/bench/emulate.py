"""Emulate a consumer card on a big GPU: confine processes to a share of its SMs (CUDA MPS), cap their memory at what
the card leaves for training, and measure the share they got (matmul TFLOPS, copy GB/s) in the same session.

A full H100 at our batch sizes waits on the CPU; a consumer card is busy with matrix work. A slice of 8 of the H100's
132 SMs is about 1.4 RTX 3070s in both compute and bandwidth (../shared/gpu/README.md), so configurations rank on it
as they do on the card. Where MPS cannot start (not installed, Windows, not allowed), the run says so and is
unconfined.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.bench.cards import CARDS, Card
from trainer.console import console
from trainer.errors import UserError

CONTROL = "nvidia-cuda-mps-control"
FIRST_SHARE = 5  # percent of the SMs; the H100 gives its smallest slice, 8 SMs, for 3.5-6%
TRIES = 4  # calibrations before settling for the last share measured


@dataclass
class Slice:
    """The confined processes' environment and the `emulation` object of their records."""

    env: dict[str, str]
    facts: dict[str, Any]
    environment: dict[str, Any] = field(default_factory=dict)  # GPU and versions, read inside the slice


@contextmanager
def mps_daemon(work: Path) -> Iterator[tuple[dict[str, str] | None, str]]:
    """The environment that reaches an MPS control daemon (one already running, or one started here and stopped at
    the end), or None and the reason there is none."""
    control = shutil.which(CONTROL)
    if control is None:
        yield None, f"{CONTROL} is not installed (MPS exists on Linux with an NVIDIA driver, not on Windows)"
        return
    running = {k: v for k, v in os.environ.items() if k.startswith("CUDA_MPS_")}
    if answers(control, running):
        yield running, "an MPS daemon was already running"
        return
    env = {"CUDA_MPS_PIPE_DIRECTORY": str(work / "mps-pipe"), "CUDA_MPS_LOG_DIRECTORY": str(work / "mps-log")}
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    started = subprocess.run([control, "-d"], env={**os.environ, **env}, capture_output=True, text=True)
    deadline = time.monotonic() + 10
    while started.returncode == 0 and not answers(control, env) and time.monotonic() < deadline:
        time.sleep(0.2)
    if started.returncode != 0 or not answers(control, env):
        reason = (started.stderr or started.stdout).strip() or "it did not answer"
        yield None, f"the MPS daemon could not start ({reason}; it needs the GPU's owner or root)"
        return
    try:
        yield env, "MPS daemon started for this benchmark"
    finally:
        subprocess.run([control], input="quit\n", env={**os.environ, **env}, capture_output=True, text=True,
                       timeout=60)


def answers(control: str, env: dict[str, str]) -> bool:
    try:
        result = subprocess.run([control], input="get_server_list\n", env={**os.environ, **env}, capture_output=True,
                                text=True, timeout=10)
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0 and "Cannot find MPS control daemon" not in result.stdout + result.stderr


def calibrate(card: Card, env: dict[str, str]) -> dict[str, Any]:
    """SMs, matmul TFLOPS and copy GB/s of the share `env` confines a process to, measured in a child process."""
    result = subprocess.run([sys.executable, "-m", "trainer.bench.calibrate", card.dtype], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    facts = json.loads(lines[-1]) if lines else {}
    if result.returncode != 0 or "matmul_tflops" not in facts:
        detail = facts.get("error") or (result.stderr or result.stdout).strip()[-800:]
        raise UserError(f"--emulate {card.profile} could not measure the GPU: {detail}",
                        "Emulation needs an NVIDIA GPU with CUDA; run `python -m trainer doctor`.")
    return facts


@contextmanager
def card_slice(name: str, work: Path, platform: str = "linux") -> Iterator[Slice]:
    """Processes started with `Slice.env` run on a share of the GPU sized for card `name`: the smallest share tried
    whose matmul throughput reaches the card's, starting from FIRST_SHARE. Their records say which attention kernels
    the card has on `platform` (the benchmark hands them to each run as run.sdpa_backends)."""
    card = CARDS[name]
    with mps_daemon(work) as (mps_env, why):
        if mps_env is None:
            console.print(f"[yellow]Not confined: {why}. The configurations run on the whole GPU, with the card's "
                          "memory cap and dtype.[/]")
            measured = calibrate(card, {})
            yield Slice({}, facts(card, platform, None, measured, why), measured["environment"])
            return
        share, measured = FIRST_SHARE, {}
        for _ in range(TRIES):
            env = confined(card, mps_env, share)
            measured = calibrate(card, env)
            console.print(f"MPS share {share}%: {measured['environment']['sms']} SMs, "
                          f"{measured['matmul_tflops']:g} TFLOPS {card.dtype} matmul, {measured['copy_gbs']:g} GB/s "
                          f"(the {card.name}: {card.tflops:g} TFLOPS, {card.bandwidth_gbs:g} GB/s)")
            if measured["matmul_tflops"] >= card.tflops or share >= 100:
                break
            share = min(100, math.ceil(share * card.tflops / measured["matmul_tflops"] * 1.05))
        yield Slice(env, facts(card, platform, share, measured, why), measured["environment"])


def confined(card: Card, mps_env: dict[str, str], share: int) -> dict[str, str]:
    """The environment of a process confined to `share` percent of the SMs and to the card's memory (the CUDA
    context included, as on the card)."""
    return {**mps_env, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(share),
            "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={card.memory_gb}G"}


def facts(card: Card, platform: str, share: int | None, measured: dict[str, Any], why: str) -> dict[str, Any]:
    """The `emulation` object every record of an emulated session carries."""
    return {
        "platform": platform, "sdpa_backends": list(card.sdpa_backends[platform]),
        "card": card.profile, "card_name": card.name, "confined": share is not None, "how": why,
        "mps_share_percent": share, "sms": measured["environment"].get("sms"),
        "slice_matmul_tflops": measured["matmul_tflops"], "slice_copy_gbs": measured["copy_gbs"],
        "card_tflops": card.tflops, "card_gbs": card.bandwidth_gbs, "dtype": card.dtype,
        "vram_cap_gb": card.usable_gb, "device_memory_limit_gb": card.memory_gb if share is not None else None,
    }
