"""The time an epoch takes on the card: the model's FLOPs per token, the data's tokens, and the model FLOPs
utilization (MFU) measured on emulated cards."""

from __future__ import annotations

from trainer.fit.shape import Shape
from trainer.runs.speed import flops_per_token

# MFU on the card (model FLOPs of the real tokens per second over the card's dense 16-bit TFLOPS; recomputation not
# counted), for models of up to 3B and of 8B, linear between. Up to 3B: packed runs on emulated cards
# (benchmarks/results/nvidia-h200.jsonl, 2026-12-03; nvidia-h100-80gb-hbm3.jsonl, 2026-11-24): no checkpointing 0.58
# on the RTX 3070 (Ampere), 0.48-0.51 on the Turing cards; with Unsloth's checkpointing 0.31-0.33. 8B: the figures of
# issue 32's emulated runs (Quadro RTX 5000 without checkpointing 0.58, RTX 3070 with Unsloth's 0.39), which no
# committed record holds yet: the estimate for 7-8B models is to be checked on the GPU.
MFU = {"off": {"ampere": (0.58, 0.58), "turing": (0.49, 0.58)},
       "checkpointing": {"ampere": (0.32, 0.39), "turing": (0.31, 0.39)}}
SMALL_B, LARGE_B = 3.0, 8.0
# Dense 16-bit tensor TFLOPS (fp32 accumulation) per SM at boost clock, by compute capability, for a card without a
# profile: GeForce rates (the RTX 2060 Super's 28.7 over 34 SMs, the RTX 3070's 40.6 over 46, the RTX 4090's 165
# over 128); professional cards run about twice that (a profile's hardware.tflops says so).
TFLOPS_PER_SM = {"7.5": 0.84, "8.0": 2.30, "8.6": 0.88, "8.7": 0.88, "8.9": 1.29, "9.0": 7.5}


def card_tflops(compute_capability: str, sms: int) -> float:
    rate = TFLOPS_PER_SM.get(compute_capability) or min(TFLOPS_PER_SM.values())
    return round(rate * sms, 1)


def tokens_per_s(shape: Shape, tflops: float, compute_capability: str, checkpointing: str,
                 mean_tokens: float) -> float:
    arch = "turing" if compute_capability and float(compute_capability) < 8 else "ampere"
    small, large = MFU["off" if checkpointing in ("off", "auto") else "checkpointing"][arch]
    share = min(1.0, max(0.0, (shape.billions - SMALL_B) / (LARGE_B - SMALL_B)))
    mfu = small + (large - small) * share
    dims = {"vocab": shape.vocab, "hidden": shape.hidden, "layers": shape.layers, "intermediate": shape.intermediate,
            "heads": shape.heads, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim}
    return mfu * tflops * 1e12 / flops_per_token(dims, mean_tokens, 2)


def duration(seconds: float) -> str:
    """"3 h 10 min", "25 min", "under a minute"."""
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(seconds / 60)} min" if seconds >= 60 else "under a minute"
