"""A run's speed: the numbers of `RUN_DIR/benchmark.json`, the environment they were measured in, and model FLOPs.

Every training run writes `benchmark.json` (steps/min, real tokens/s, samples/s, time to first step, peak VRAM,
GPU-busy fraction, FineTome-100k epoch at the measured speed). The benchmark command (trainer/bench/) records these
files as they are.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from trainer.config import Config
from trainer.data.synthetic import FINETOME_ROWS, TOKENS_PER_ROW
from trainer.runs.run_dir import RunDir, write_atomic
from trainer.system import environment


def summarize(run: RunDir, skip_steps: int | None = None) -> dict[str, Any]:
    """Speed from the last record within the warm-up steps (cuDNN plans, allocator growth, compilation: the first 20%
    of the steps, 1 to 5) to the last record; memory and time to first step over all of them. Records need not be
    one per step (train.log_every_s)."""
    steps = [m for m in run.read_metrics() if "loss" in m]
    if not steps:
        return {"steps": 0}
    skip = skip_steps if skip_steps is not None else min(5, max(1, steps[-1]["step"] // 5))
    warm = [m for m in steps if m["step"] <= skip]
    if not warm or warm[-1] is steps[-1]:
        return {"steps": steps[-1]["step"]}
    first, last = warm[-1], steps[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    tokens_per_s = (last["tokens"] - first["tokens"]) / seconds
    summary: dict[str, Any] = {
        "steps": last["step"],
        "steps_per_min": round((last["step"] - first["step"]) / seconds * 60, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "peak_memory_gb": max(m["memory_gb"] for m in steps),
        "first_loss": steps[0]["loss"],
        "last_loss": last["loss"],
        "finetome_epoch_h": epoch_hours(tokens_per_s),
    }
    if "memory_reserved_gb" in last:
        summary["peak_reserved_gb"] = max(m["memory_reserved_gb"] for m in steps)
    data = json.loads(run.data_stats.read_text()) if run.data_stats.exists() else {}
    if data.get("tokens_mean"):
        summary["samples_per_s"] = round(tokens_per_s / data["tokens_mean"], 2)
        summary["tokens_per_row"] = data["tokens_mean"]
    if "since_process_start_s" in steps[0]:
        summary["time_to_first_step_s"] = steps[0]["since_process_start_s"]
        summary["startup_s"] = steps[0].get("startup_s", {})  # when each start-up stage ended
    busy = [m["gpu_busy"] for m in steps if m["step"] > first["step"] and m.get("gpu_busy") is not None]
    if busy:
        summary["gpu_busy"] = round(statistics.mean(busy), 3)
    return summary


def epoch_hours(tokens_per_s: float) -> float:
    """Hours for one FineTome-100k epoch (100,000 rows of TOKENS_PER_ROW real tokens) at this speed."""
    return round(FINETOME_ROWS * TOKENS_PER_ROW / tokens_per_s / 3600, 2)


def write_run_benchmark(run: RunDir, config: Config, engine: str, sdpa_backends: tuple[str, ...],
                        world_size: int = 1, predicted: dict[str, Any] | None = None,
                        attention_calls: dict[str, int] | None = None) -> dict[str, Any]:
    """The run's own benchmark.json: its numbers (tokens summed over the processes of a job of `world_size`), the
    environment, the settings, the engine that ran and the attention kernels it was allowed (`sdpa_backends`, as the
    engines decided them: this record only writes them down), how the engine's attention ran where it counts that
    (`attention_calls`), and what was `predicted` before the start."""
    summary = summarize(run)
    record = {**environment(), **settings_of(config, sdpa_backends), "engine": engine, "world_size": world_size,
              "numbers": summary, **({"attention_calls": attention_calls} if attention_calls else {}),
              **({"predicted": predicted} if predicted else {})}
    write_atomic(run.benchmark, json.dumps(record, indent=2) + "\n")
    return summary


def settings_of(config: Config, sdpa_backends: tuple[str, ...]) -> dict[str, Any]:
    train = config.train
    return {
        "profile": config.profile, "method": train.method, "model": config.model.name, "shape": model_shape(config),
        "dtype": config.model.dtype, "load_in_4bit": config.model.load_in_4bit, "engine": config.engine,
        "micro_batch_size": train.micro_batch_size, "grad_accum_steps": train.grad_accum_steps,
        "max_seq_length": config.model.max_seq_length, "packing": train.packing, "padding_free": train.padding_free,
        "group_by_length": train.group_by_length, "pad_to_multiple_of": train.pad_to_multiple_of,
        "cudnn_attention": train.cudnn_attention, "sdpa_backends": list(sdpa_backends),
        "gradient_checkpointing": train.gradient_checkpointing,
        "max_tokens_per_pass": train.max_tokens_per_pass,
        "vram_cap_gb": config.run.vram_cap_gb, "dataset": config.data.dataset,
    }


# --- model FLOPs ----------------------------------------------------------------------------------------------------

LLAMA_32_SHAPES = {  # used when the model folder is not on this machine (a Hub id)
    "1B": {"vocab": 128256, "hidden": 2048, "layers": 16, "intermediate": 8192, "heads": 32, "kv_heads": 8,
           "head_dim": 64},
    "3B": {"vocab": 128256, "hidden": 3072, "layers": 28, "intermediate": 8192, "heads": 24, "kv_heads": 8,
           "head_dim": 128},
}


def model_shape(config: Config) -> dict[str, int] | None:
    """The transformer's dimensions, from the model folder's config.json, else from a Llama 3.2 name."""
    path = Path(config.model.name) / "config.json"
    if path.is_file():
        c = json.loads(path.read_text())
        heads = c.get("num_attention_heads")
        if not heads:
            return None
        return {"vocab": c["vocab_size"], "hidden": c["hidden_size"], "layers": c["num_hidden_layers"],
                "intermediate": c["intermediate_size"], "heads": heads,
                "kv_heads": c.get("num_key_value_heads", heads),
                "head_dim": c.get("head_dim") or c["hidden_size"] // heads}
    for size, shape in LLAMA_32_SHAPES.items():
        if f"-{size}" in config.model.name:
            return dict(shape)
    return None


def parameters(shape: dict[str, int]) -> int:
    """Parameters in the matmuls a token goes through (layers and the LM head; the embedding is a lookup)."""
    h, q, kv = shape["hidden"], shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * shape["intermediate"]
    return shape["layers"] * per_layer + shape["vocab"] * h


# Forward passes without a backward per trained token, besides the training's own, by train.method: DPO scores each
# pair with the reference (the adapter disabled); KTO scores the answer with the reference, and the KL term's
# mismatched sequence (about as long) with the model and the reference.
SCORING_PASSES = {"dpo": 1, "kto": 3}


def passes_per_token(gradient_checkpointing: str) -> int:
    """Forward-sized passes per trained token: forward and backward to the activations (LoRA leaves the 4-bit weights
    without gradients), and the forward again where gradient checkpointing recomputes it."""
    return 2 if gradient_checkpointing == "off" else 3


def flops_per_token(shape: dict[str, int], mean_tokens: float, passes: int) -> float:
    """Matmul FLOPs per token over `passes` forward-sized passes: 2 per parameter, plus causal attention (QK^T and AV
    over half the row on average)."""
    attention = 2 * 2 * (mean_tokens / 2) * shape["heads"] * shape["head_dim"] * shape["layers"]
    return (2 * parameters(shape) + attention) * passes
