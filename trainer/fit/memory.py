"""Predicted peak GPU memory of a training step: the model's own numbers (parameters by kind, activations per token per
layer, its vocabulary), weighted by coefficients fitted to peaks measured on the GPU.

The peak is what torch's allocator reserves (the CUDA context, about half a GB, is outside it: the budget leaves it
out, trainer/fit/budget.py). The coefficients come from `python benchmarks/fit_memory.py`, a non-negative least-squares
fit, relative error weighted, to the 33 points of benchmarks/results/memory/2026-12-06-h100.jsonl (five families,
1B to 8B, three kinds of gradient checkpointing, 1,024 to 8,192 tokens a pass, the unsloth engine). On those points
the prediction is within 9% of the measured peak (tests/fit/test_memory.py holds it to 10%).
"""

from __future__ import annotations

from trainer.fit.shape import Shape

GB = 2**30
LORA_BYTES = 4  # the adapter trains in float32
# At the start of training: 16-bit embeddings and LM head (and an image encoder, where the model has one), 4-bit layers
# (0.5 byte a weight) with their quantization state, the adapter. QUANT_STATE: what the measured start (metrics.jsonl's
# memory_at_start_gb) has beyond the weights' own bytes, per 4-bit weight (absmax and double quantization,
# bitsandbytes' NF4), fitted like the rest.
QUANT_STATE_BYTES = 0.02
# What a token stores per layer for the backward pass when nothing is recomputed (bf16 elements): the normed inputs of
# attention and MLP, q/k/v and attention's output, the MLP's gate, up and their product. Each family's kernels keep
# a different share of it (Gemma's extra norms, Phi's fused projections): the fitted FAMILY factor.
FAMILY = {"llama": 0.8365, "mistral": 0.8365, "qwen3": 0.9035, "gemma3_text": 1.1196, "phi3": 1.2437}
UNKNOWN_FAMILY = max(FAMILY.values())  # a family not measured: the most memory of those that were
# With checkpointing, each layer's input stays (bf16, per token per layer: `CHECKPOINT`; Unsloth's offloads part of
# it to the CPU) and one layer's activations exist at a time (`LAYER`, the fraction of one layer's stored bytes).
CHECKPOINT = {"on": 1.0966, "unsloth": 0.6258}
LAYER = {"on": 0.8076, "unsloth": 0.339}
# The loss: Unsloth's fused cross-entropy computes the logits in chunks; per token of the first 1,024 of a pass,
# this share of its float32 logits.
LOGIT_SHARE, LOGIT_TOKENS = 0.0369, 1024
# Allocator slack, cuBLAS workspaces and the optimizer's state, by checkpointing, plus per billion 4-bit weights.
CONSTANT_GB = {"off": 0.5598, "on": 1.281, "unsloth": 0.6838}
PER_4BIT_BILLION_GB = 0.073 * 1e9 / GB
# DPO and ORPO: a pair is two sequences in one pass, and their logits over the whole vocabulary are kept for the loss
# (no fused loss). Bytes per logit, from the two records of a pair a pass with Unsloth's checkpointing under a cap:
# 1B at 1,024 tokens a side, 4.16 GB (2026-12-03-dpo-fits-rtx3070.json; predicted 4.34), 3B at 2,048 a side, 8.47 GB
# (2026-12-03-dpo-fits-quadro-rtx5000.json; predicted 8.49); 1B at 2,048 a side ran out of 7 GB (predicted 6.91).
PAIR_LOGIT_BYTES = 10.0
# In float16 (Turing cards) a step takes more than in bfloat16, where the coefficients above were measured: the
# fitted settings' runs under a 15 GB cap (2026-12-06-h100-fitted-quadro-rtx5000.jsonl, no checkpointing) took
# 1.087x the predicted step for the Llama shapes, 1.04x Qwen3, 0.99x Phi-4-mini, and 1.30x Gemma 3 (Unsloth keeps
# more of Gemma 3 in float32 in float16, where its activations overflow). The step is scaled by the family's factor,
# else the largest of the others.
FLOAT16_STEP = {"gemma3_text": 1.30}
FLOAT16_OTHERS = 1.09

# The transformers engine (the fallback where unsloth does not import: PEFT, TRL's chunked loss, torch's gradient
# checkpointing, the loss over every position): coefficients of its own, fitted the same way
# (`python benchmarks/fit_memory.py --engine transformers`) to the 6 points with checkpointing of
# 2026-12-06-h100-transformers.jsonl (Llama 3.2 1B and 3B, 2,048 to 8,192 tokens a pass, bf16); the fit gives it
# checkpointing always (without it, one row of 1,024 tokens took 5.3 GB for 1B). Its start holds the embedding
# once more in 16 bits (measured 1.47 GB for 1B, 2.87 for 3B, against Unsloth's 1.03 and 2.21): EXTRA_EMBEDDING.
TRANSFORMERS = {"checkpoint_on": 1.6669, "layer_on": 4.1449, "logits": 0.1024, "constant_on": 0.2094,
                "per_4bit_billion": 0.3245}
TRANSFORMERS_EXTRA_EMBEDDING = 0.9


def layer_bytes(shape: Shape) -> int:
    """Bytes a token stores in one layer for the backward pass, nothing recomputed (bf16)."""
    return 2 * 3 * (shape.hidden + shape.q_dim + shape.kv_dim + shape.intermediate)


def start_gb(shape: Shape, lora_r: int, engine: str = "unsloth") -> float:
    """Memory held before the first step: the weights, their quantization state and the adapter."""
    quantized = shape.quantized_parameters
    embedding = 2 + (2 * TRANSFORMERS_EXTRA_EMBEDDING if engine == "transformers" else 0)
    return (embedding * shape.embedding_parameters + quantized * (0.5 + QUANT_STATE_BYTES)
            + 2 * shape.image_parameters + LORA_BYTES * shape.lora_parameters(lora_r)) / GB


def features(shape: Shape, tokens: int, checkpointing: str) -> dict[str, float]:
    """What the step's peak beyond the start is a sum of, each in GB before its coefficient (benchmarks/fit_memory.py
    fits the coefficients to these)."""
    family = shape.family if shape.family in FAMILY else "unknown"
    stored = tokens * shape.layers * layer_bytes(shape) / GB
    named = {f"off_{f}": stored if checkpointing == "off" and family == f else 0.0 for f in (*FAMILY, "unknown")}
    for mode in CHECKPOINT:
        named[f"checkpoint_{mode}"] = tokens * shape.layers * 2 * shape.hidden / GB if checkpointing == mode else 0.0
        named[f"layer_{mode}"] = tokens * layer_bytes(shape) / GB if checkpointing == mode else 0.0
    named["logits"] = min(tokens, LOGIT_TOKENS) * shape.vocab * 4 / GB
    for mode in CONSTANT_GB:
        named[f"constant_{mode}"] = 1.0 if checkpointing == mode else 0.0
    named["per_4bit_billion"] = shape.quantized_parameters / GB
    return named


def coefficients(engine: str = "unsloth") -> dict[str, float]:
    if engine == "transformers":
        return {name: TRANSFORMERS.get(name, 0.0) for name in coefficients()}
    named = {f"off_{f}": factor for f, factor in FAMILY.items()} | {"off_unknown": UNKNOWN_FAMILY}
    for mode in CHECKPOINT:
        named[f"checkpoint_{mode}"], named[f"layer_{mode}"] = CHECKPOINT[mode], LAYER[mode]
    named["logits"] = LOGIT_SHARE
    named |= {f"constant_{mode}": gb for mode, gb in CONSTANT_GB.items()}
    named["per_4bit_billion"] = PER_4BIT_BILLION_GB
    return named


def peak_gb(shape: Shape, tokens_per_pass: int, checkpointing: str, lora_r: int = 16, pairs: bool = False,
            engine: str = "unsloth", dtype: str = "bfloat16") -> float:
    """Predicted peak reserved memory of a pass of `tokens_per_pass` tokens (a pair counts both sequences) with this
    gradient checkpointing ("off", "on", "unsloth"; the transformers engine has torch's alone: "unsloth" is "on")."""
    if engine == "transformers" and checkpointing == "unsloth":
        checkpointing = "on"
    weights = coefficients(engine)
    step = sum(weights[name] * value for name, value in features(shape, tokens_per_pass, checkpointing).items())
    if pairs:
        step += tokens_per_pass * shape.vocab * PAIR_LOGIT_BYTES / GB
    if dtype == "float16":
        step *= FLOAT16_STEP.get(shape.family, FLOAT16_OTHERS)
    return round(start_gb(shape, lora_r, engine) + step, 2)
