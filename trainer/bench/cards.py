"""The consumer cards our profiles are for, and what an emulated run says about them: MFU and the card estimate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.data.synthetic import TOKENS_PER_ROW
from trainer.runs.speed import LLAMA_32_SHAPES, SCORING_PASSES, epoch_hours, flops_per_token


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
    users_notebook_h: float  # what users report for a FineTome-100k epoch with the Unsloth notebook (0: no report)
    users_report: str  # their words: the figure as reported
    users_model: str = ""  # the Llama 3.2 size (speed.LLAMA_32_SHAPES) they report it for: sessions of another shape
    # are not compared with it


PLATFORMS = ("linux", "windows")  # Paperspace Gradient, and Windows with conda
# Flash attention needs sm_80 or newer, so Turing (sm_75) has only the memory-efficient and math kernels. PyTorch's
# Windows builds leave flash attention out (USE_FLASH_ATTENTION off: "Torch was not compiled with flash attention"):
# pytorch's CMakeLists.txt builds it only "USE_CUDA OR USE_ROCM;NOT MSVC"; the tracking issue pytorch/pytorch#108175
# (FlashAttention v2 on Windows) is open, and #125070 (none on Windows since 2.2) too; #131875 (2024) and its reland
# #131906 turned it on and were reverted ("Windows nightly failures"). Not read off a 2.11 Windows wheel itself.
# cuDNN attention is left out everywhere: below sm_90 torch tries it last, after the math kernel, which takes every
# call, so a card never runs it; on the big GPU that emulates the card it would come first.
AMPERE = {"linux": ("flash", "efficient", "math"), "windows": ("efficient", "math")}
TURING = {"linux": ("efficient", "math"), "windows": ("efficient", "math")}


# Published specifications. GeForce cards run fp32-accumulate tensor math at half their fp16-accumulate rate:
# RTX 3070 (GA104): 81.3 / 40.6 TFLOPS (Ampere GA10x whitepaper); RTX 2060 Super (TU106, 34 SMs, 1650 MHz boost):
# 57.4 / 28.7; Quadro RTX 5000 (TU104, 48 SMs, 1815 MHz): 89.2 at full rate. All three have 448 GB/s of GDDR6.
# Users' figures: what people copying the Unsloth Llama 3.2 notebook report on these cards (the product brief).
CARDS = {
    "rtx2060s": Card("RTX 2060 Super 8 GB", "rtx2060s", 28.7, 448.0, 8, 7.0, "float16", TURING,
                     9.0, "~24 steps/min, about 9 h per FineTome epoch (1B)", "1B"),
    "rtx3070": Card("RTX 3070 8 GB", "rtx3070", 40.6, 448.0, 8, 7.0, "bfloat16", AMPERE,
                    9.0, "~26 steps/min, about 9 h per FineTome epoch (1B)", "1B"),
    "quadro-rtx5000": Card("Quadro RTX 5000 16 GB", "quadro-rtx5000", 89.2, 448.0, 16, 15.0, "float16", TURING,
                           18.0, "about 18 h per FineTome epoch (3B)", "3B"),
    # Cards rented on Paperspace Gradient (no users' notebook figures collected): NVIDIA's datasheets, dense tensor
    # TFLOPS (their sparse figures halved). T4: 65 TFLOPS FP16/FP32 mixed precision, 320 GB/s, 40 SMs at 70 W; RTX
    # A4000: 153.4 sparse, 448 GB/s; RTX A5000: 222.2 sparse, 768 GB/s. Professional cards accumulate in FP32 at
    # full rate.
    "t4": Card("Tesla T4 16 GB", "t4", 65.0, 320.0, 16, 15.0, "float16", TURING, 0.0, ""),
    "a4000": Card("RTX A4000 16 GB", "a4000", 76.7, 448.0, 16, 15.0, "bfloat16", AMPERE, 0.0, ""),
    "a5000": Card("RTX A5000 24 GB", "a5000", 111.1, 768.0, 24, 23.0, "bfloat16", AMPERE, 0.0, ""),
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
    "attention; recomputation not counted; DPO's reference forward counted as one more pass) per second, over the "
    "slice's measured matmul TFLOPS. DPO and ORPO sessions state no FineTome epoch: they train pairs, not FineTome."
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
    passes = MODEL_PASSES + SCORING_PASSES.get(record.get("method", "sft"), 0)
    per_token = flops_per_token(shape, numbers.get("tokens_per_row", TOKENS_PER_ROW), passes)
    return numbers["tokens_per_s"] * per_token / (emulation["slice_matmul_tflops"] * 1e12)


def card_estimate(record: dict[str, Any]) -> dict[str, Any] | None:
    """Real tokens/s and (for SFT) FineTome-100k epoch hours on the emulated card (see ESTIMATE)."""
    numbers, emulation = record.get("numbers", {}), record.get("emulation")
    if not (emulation and emulation.get("card") in CARDS and numbers.get("tokens_per_s")):
        return None
    busy = numbers.get("gpu_busy") or 1.0
    tokens_per_s = numbers["tokens_per_s"] / max(1.0, busy * slowdown(emulation))
    sft = record.get("method", "sft") == "sft"
    return {"card": CARDS[emulation["card"]].name, "tokens_per_s": round(tokens_per_s, 1),
            "finetome_epoch_h": epoch_hours(tokens_per_s) if sft else None}


def against_users(records: list[dict[str, Any]]) -> str | None:
    """One emulated session's estimates beside what users report on the card: the notebook recipe's estimate is the
    check of the estimate model (its error printed), the profile's the claim."""
    by_config = {r["config"]: card_estimate(r) for r in records if r.get("world_size", 1) == 1}
    card = next((CARDS[r["emulation"]["card"]] for r in records if (r.get("emulation") or {}).get("card") in CARDS),
                None)
    notebook, tuned = by_config.get("notebook"), by_config.get("tuned")
    shapes = {tuple(sorted(r["shape"].items())) for r in records if r.get("shape")}  # older records: none
    if card is None or shapes - {tuple(sorted(LLAMA_32_SHAPES.get(card.users_model, {}).items()))}:
        return None  # another model than the one users report for
    if not card.users_notebook_h or not (notebook and tuned and notebook["finetome_epoch_h"]
                                                         and tuned["finetome_epoch_h"]):
        return None
    error = notebook["finetome_epoch_h"] / card.users_notebook_h - 1
    calibrated = tuned["finetome_epoch_h"] / (1 + error)
    return (f"Users report with the Unsloth notebook on the {card.name}: {card.users_report}. This session estimates "
            f"the notebook recipe at {notebook['finetome_epoch_h']:g} h ({error:+.0%} against the users' "
            f"{card.users_notebook_h:g} h: the estimate model's error) and the profile at "
            f"{tuned['finetome_epoch_h']:g} h; if the estimate errs for the profile as it does for the notebook, the "
            f"profile takes about {calibrated:.1f} h on the card, {card.users_notebook_h / calibrated:.2f}x faster "
            "than users see today.")
