"""The consumer cards our profiles are for, and what an emulated run says about them: MFU and the card estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.data.synthetic import TOKENS_PER_ROW
from trainer.runs.speed import epoch_hours, flops_per_token


@dataclass(frozen=True)
class Card:
    name: str
    profile: str
    tflops: float  # dense fp16/bf16 tensor TFLOPS with fp32 accumulation (what torch's matmuls use)
    bandwidth_gbs: float
    memory_gb: int  # on the label
    usable_gb: float  # what training may take: the desktop and the driver hold the rest
    dtype: str  # Turing has no bf16
    # The attention kernels (torch SDPA backends) PyTorch 2.11 has on the card, per platform (PLATFORMS).
    sdpa_backends: dict[str, tuple[str, ...]]


PLATFORMS = ("linux", "windows")  # Paperspace Gradient, and Windows with conda
# Flash attention needs sm_80 or newer, so Turing (sm_75) has only the memory-efficient and math kernels. PyTorch's
# Windows builds leave flash attention out (USE_FLASH_ATTENTION off: "Torch was not compiled with flash attention").
# cuDNN attention is left out everywhere: below sm_90 torch tries it last, after the math kernel, which takes every
# call, so a card never runs it; on the big GPU that emulates the card it would come first.
AMPERE = {"linux": ("flash", "efficient", "math"), "windows": ("efficient", "math")}
TURING = {"linux": ("efficient", "math"), "windows": ("efficient", "math")}


# Published specifications. GeForce cards run fp32-accumulate tensor math at half their fp16-accumulate rate:
# RTX 3070 (GA104): 81.3 / 40.6 TFLOPS (Ampere GA10x whitepaper); RTX 2060 Super (TU106, 34 SMs, 1650 MHz boost):
# 57.4 / 28.7; Quadro RTX 5000 (TU104, 48 SMs, 1815 MHz): 89.2 at full rate. All three have 448 GB/s of GDDR6.
CARDS = {
    "rtx2060s": Card("RTX 2060 Super 8 GB", "rtx2060s", 28.7, 448.0, 8, 7.0, "float16", TURING),
    "rtx3070": Card("RTX 3070 8 GB", "rtx3070", 40.6, 448.0, 8, 7.0, "bfloat16", AMPERE),
    "quadro-rtx5000": Card("Quadro RTX 5000 16 GB", "quadro-rtx5000", 89.2, 448.0, 16, 15.0, "float16", TURING),
}
# Share of an emulated step's GPU time that is bound by tensor-core throughput, the rest by memory bandwidth: a 1B
# step on the 8-SM slice spent 70% of its GPU time in matmuls and 15% in flash attention (compute-bound), the rest in
# the log-softmax of the 128k vocabulary, NF4 dequantization and element-wise kernels (bandwidth-bound); profiled with
# benchmarks/profile_steps.py on 2026-11-24 (issue 14).
COMPUTE_SHARE = 0.85
# Model FLOPs count the work a step needs, not what it does: a forward and a backward to the activations (LoRA
# leaves the 4-bit weights without gradients). Recomputing the forward (gradient checkpointing) is not counted.
MODEL_PASSES = 2
SHARE, REST = f"{COMPUTE_SHARE:.0%}", f"{1 - COMPUTE_SHARE:.0%}"
ESTIMATE = (
    f"Card estimate: the card's GPU work takes the slice's x ({SHARE} x slice/card matmul TFLOPS + {REST} x "
    "slice/card bandwidth), both measured on the slice in the same session; "
    f"{SHARE} is the compute-bound share of a profiled step's GPU time. The GPU work is the step time x the GPU-busy "
    "fraction. The CPU prepares steps while the GPU works, so a step takes the longer of the two: a configuration "
    "that keeps the slice busy slows down by the ratio, one that leaves it waiting on the CPU (the notebook recipe, "
    "about 40% busy) hardly at all. An estimate, not a measurement on the card; the host's CPU is not the user's. "
    f"MFU: model FLOPs of the real tokens ({MODEL_PASSES} forward-sized passes of 2 FLOPs per parameter, plus "
    "attention; recomputation not counted) per second, over the slice's measured matmul TFLOPS."
)


def slowdown(emulation: dict[str, Any]) -> float:
    """How many times longer a step takes on the card than on the slice that emulated it."""
    card = CARDS[emulation["card"]]
    compute = emulation["slice_matmul_tflops"] / card.tflops
    bandwidth = emulation["slice_copy_gbs"] / card.bandwidth_gbs
    return COMPUTE_SHARE * compute + (1 - COMPUTE_SHARE) * bandwidth


def mfu(record: dict[str, Any]) -> float | None:
    """Model FLOPs utilization of an emulated run against the slice's measured matmul TFLOPS."""
    numbers, shape, emulation = record.get("numbers", {}), record.get("shape"), record.get("emulation")
    if not (shape and emulation and numbers.get("tokens_per_s")):
        return None
    per_token = flops_per_token(shape, numbers.get("tokens_per_row", TOKENS_PER_ROW), MODEL_PASSES)
    return numbers["tokens_per_s"] * per_token / (emulation["slice_matmul_tflops"] * 1e12)


def card_estimate(record: dict[str, Any]) -> dict[str, Any] | None:
    """Real tokens/s and FineTome-100k epoch hours on the emulated card (see ESTIMATE)."""
    numbers, emulation = record.get("numbers", {}), record.get("emulation")
    if not (emulation and emulation.get("card") in CARDS and numbers.get("tokens_per_s")):
        return None
    busy = numbers.get("gpu_busy") or 1.0
    tokens_per_s = numbers["tokens_per_s"] / max(1.0, busy * slowdown(emulation))
    return {"card": CARDS[emulation["card"]].name, "tokens_per_s": round(tokens_per_s, 1),
            "finetome_epoch_h": epoch_hours(tokens_per_s)}
