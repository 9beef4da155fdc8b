"""What the settings mean for an engine: "auto" made the engine's, the dtype and the settings the hardware refuses."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from trainer.config import Config
from trainer.errors import UserError
from trainer.system import Gpu, unseen_gpu

if TYPE_CHECKING:
    import torch

# What "auto" becomes for each engine, chosen on the emulated RTX 3070 (benchmarks/RESULTS.md). Unsloth ran fastest
# without gradient checkpointing and computes its own fused loss. Plain transformers + PEFT needs both savings to fit an
# 8 GB card: with the unsloth settings a 1B step of 2 packed rows of 2,048 tokens peaked at 18.7 GB (the H100's
# records of 2026-11-24); with checkpointing and TRL's chunked loss, at 3.1 GB under emulation.
# Unsloth's fused loss can be given the trained positions only (trained_positions_only); TRL's cannot.
AUTO = {"unsloth": {"gradient_checkpointing": "off", "loss_type": "nll", "trained_positions_only": "on"},
        "transformers": {"gradient_checkpointing": "on", "loss_type": "chunked_nll", "trained_positions_only": "off"}}


def settle(config: Config, engine: str) -> tuple[Config, str]:
    """`config` with its "auto" settings made the engine's (AUTO), and what they became ("" when none was auto)."""
    chosen = {key: value for key, value in AUTO[engine].items() if getattr(config.train, key) == "auto"}
    if not chosen:
        return config, ""
    said = ", ".join(f"{key}={value}" for key, value in chosen.items())
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **chosen)), said


def check_settled(config: Config) -> None:
    """An internal error when a setting is still "auto" where a trainer is built: `settle` must have run (TRL would
    refuse loss_type="auto" only once training starts on the GPU)."""
    left = [key for key in AUTO["unsloth"] if getattr(config.train, key) == "auto"]
    if left:
        raise ValueError(f"config not settled for its engine: {', '.join(left)} still auto (call policy.settle)")


def torch_dtype(config: Config, gpu: Gpu | None) -> torch.dtype:
    """The compute dtype, checked against the hardware (bf16 needs Ampere or newer; fp16 needs a GPU)."""
    import torch

    name = config.model.dtype
    if name == "auto":
        name = "float32" if gpu is None else ("bfloat16" if gpu.has_bf16 else "float16")
    if name == "bfloat16" and gpu is not None and not gpu.has_bf16:
        raise UserError(
            f"dtype bfloat16 needs an Ampere or newer GPU; {gpu} has none",
            "Use --set dtype=float16 (or the rtx2060s / quadro-rtx5000 profile).",
        )
    if name == "float16" and gpu is None:
        raise UserError("dtype float16 needs a GPU; on the CPU use float32",
                        "Use --profile cpu or --set dtype=float32.")
    return getattr(torch, name)


def check_hardware(config: Config, gpu: Gpu | None) -> None:
    """Settings that need a GPU, refused on a machine without one before anything slow happens."""
    if gpu is not None:
        return
    needs_gpu = config.model.load_in_4bit or "8bit" in config.train.optimizer
    if needs_gpu and (unseen := unseen_gpu()):  # a GPU torch cannot use: that, not the setting, is what to fix
        raise UserError(f"{unseen.why}, so profile {config.profile} cannot train on it",
                        f"{unseen.fix}; --profile cpu runs the offline CPU demo meanwhile.")
    if config.model.load_in_4bit:
        raise UserError(
            f"profile {config.profile} loads the model in 4-bit, which needs an NVIDIA GPU; none was detected",
            "Run the offline CPU demo with --profile cpu, or --set load_in_4bit=false on a machine with enough RAM.",
        )
    if "8bit" in config.train.optimizer:
        raise UserError(
            f"optimizer {config.train.optimizer} (bitsandbytes) needs an NVIDIA GPU; none was detected",
            "Use --set optimizer=adamw_torch.",
        )
