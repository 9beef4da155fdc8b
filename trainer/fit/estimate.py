"""The time an epoch takes on the card: the model's FLOPs per token, the data's tokens, and the model FLOPs
utilization (MFU) measured on emulated cards."""

from __future__ import annotations

from trainer.fit.shape import Shape
from trainer.runs.speed import flops_per_token

# MFU on the card (model FLOPs of the real tokens per second over the card's dense 16-bit TFLOPS; recomputation not
# counted), for models of up to 3B and of 8B, linear between. Without checkpointing, up to 3B: packed runs on emulated
# cards (benchmarks/results/nvidia-h200.jsonl, 2026-12-03; nvidia-h100-80gb-hbm3.jsonl, 2026-11-24): 0.58 on the RTX
# 3070 (Ampere), 0.48-0.51 on the Turing cards; 8B: the Quadro RTX 5000 0.58 (the estimate within 10%). With
# Unsloth's checkpointing: the fitted settings (2 packed rows a pass) of the 4B models on the RTX 3070 ran at 0.42
# (Qwen3) and 0.43 (Gemma 3), the 8B at 0.446 (nvidia-h100-80gb-hbm3.jsonl and nvidia-h200.jsonl, 2026-12-06; one row
# of 1B or 3B a pass, 2026-12-03: 0.31-0.33); on the Turing cards the 3B's one row 0.31, Qwen3 4B's two 0.34, the
# 8B's 0.39 (within 1%).
MFU = {"off": {"ampere": (0.58, 0.58), "turing": (0.49, 0.58)},
       "checkpointing": {"ampere": (0.42, 0.446), "turing": (0.31, 0.39)}}
# Measured far from the rest: Gemma 3 in float16 (a Turing card), Quadro RTX 5000 emulated, 4B, in two sessions on an
# H100 that differ 1.7x: 299 card tokens/s (4 steps, 2026-12-06, GPU busy 77% of the time) and 520 (3 steps,
# 2026-12-07, busy 99%), against 2,872 this estimate gives Llama-like models; their mean is told. Asked for float16,
# Unsloth loads Gemma 3 in bfloat16 and runs its norms, SwiGLU and attention in float32, where they overflow float16
# (UNSLOTH_FORCE_FLOAT32: unsloth/models/loader.py, unsloth_zoo/temporary_patches/gemma.py). Why the sessions
# differ is not established.
# Phi-4-mini (phi3) in bfloat16, one conversation a row as the fit now trains it (fit/choose.py UNPACKED), ran at 0.72
# of this estimate (RTX 3070 emulated, Unsloth's checkpointing: MFU 0.30, 794 card tokens/s; one session of 4 steps,
# H100, 2026-12-07), 1.08x the notebook recipe; packed, at an MFU of 0.19 (two sessions, 2026-12-06 and -07).
# Unsloth loads it through its generic transformers path, not its own Llama-like kernels. Not measured in float16
# nor on another card.
SLOWER = {("gemma3_text", "float16"): 0.143, ("phi3", "bfloat16"): 0.72}
# What the plan says beside the time where a family trains far slower than a Llama of its size, from the records.
SLOW_NOTE = {("gemma3_text", "float16"): "Gemma 3 trains slowly in float16 (cards without bfloat16): on an emulated "
             "Quadro RTX 5000 its 4B trained at 300-520 tokens/s, Llama 3.2 3B at about 3,000"}
SMALL_B, LARGE_B = 3.0, 8.0
# Dense 16-bit tensor TFLOPS (fp32 accumulation) per SM at boost clock, by compute capability, for a card without a
# profile: GeForce rates (the RTX 2060 Super's 28.7 over 34 SMs, the RTX 3070's 40.6 over 46, the RTX 4090's 165
# over 128); professional cards run about twice that (a profile's hardware.tflops says so).
TFLOPS_PER_SM = {"7.5": 0.84, "8.0": 2.30, "8.6": 0.88, "8.7": 0.88, "8.9": 1.29, "9.0": 7.5}


def card_tflops(compute_capability: str, sms: int) -> float:
    rate = TFLOPS_PER_SM.get(compute_capability) or min(TFLOPS_PER_SM.values())
    return round(rate * sms, 1)


def tokens_per_s(shape: Shape, tflops: float, compute_capability: str, checkpointing: str,
                 mean_tokens: float, dtype: str = "bfloat16") -> float:
    arch = "turing" if compute_capability and float(compute_capability) < 8 else "ampere"
    small, large = MFU["off" if checkpointing in ("off", "auto") else "checkpointing"][arch]
    share = min(1.0, max(0.0, (shape.billions - SMALL_B) / (LARGE_B - SMALL_B)))
    mfu = (small + (large - small) * share) * SLOWER.get((shape.family, dtype), 1.0)
    dims = {"vocab": shape.vocab, "hidden": shape.hidden, "layers": shape.layers, "intermediate": shape.intermediate,
            "heads": shape.heads, "kv_heads": shape.kv_heads, "head_dim": shape.head_dim}
    return mfu * tflops * 1e12 / flops_per_token(dims, mean_tokens, 2)


def duration(seconds: float) -> str:
    """"3 h 10 min", "25 min", "under a minute"."""
    if seconds >= 3600:
        hours, minutes = divmod(round(seconds / 60), 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{round(seconds / 60)} min" if seconds >= 60 else "under a minute"
