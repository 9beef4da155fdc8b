"""The model families we train, and what each needs of us: its LoRA target modules and Unsloth's 4-bit checkpoints.

A family is decided from config.json's model_type once the model is loaded (the engines ask). What a chat template
does (the end-of-turn token, where the system turn goes, thinking blocks) is read from the template itself
(data/render.py), never assumed from the family: SmolLM2 is a Llama with ChatML turns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.config import LLAMA_TARGETS
from trainer.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]  # config.json's model_type values of the family's checkpoints
    targets: tuple[str, ...]  # the linear layers that get a LoRA adapter (all attention and MLP projections)
    # Unsloth's pre-quantized 4-bit checkpoints (faster to download, quantized once by Unsloth), by size
    unsloth_4bit: dict[str, str]


FAMILIES = {
    "llama": Family("llama", ("llama",), LLAMA_TARGETS, {
        "1B": "unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "3B": "unsloth/Llama-3.2-3B-Instruct-bnb-4bit",
        "8B": "unsloth/Llama-3.1-8B-Instruct-bnb-4bit"}),
    "qwen3": Family("qwen3", ("qwen3",), LLAMA_TARGETS, {
        "0.6B": "unsloth/Qwen3-0.6B-unsloth-bnb-4bit", "4B": "unsloth/Qwen3-4B-unsloth-bnb-4bit",
        "8B": "unsloth/Qwen3-8B-unsloth-bnb-4bit", "14B": "unsloth/Qwen3-14B-unsloth-bnb-4bit"}),
    # Gemma 3 270M and 1B are text-only (gemma3_text); 4B and up carry a vision tower (gemma3).
    "gemma3": Family("gemma3", ("gemma3_text", "gemma3"), LLAMA_TARGETS, {
        "270M": "unsloth/gemma-3-270m-it-unsloth-bnb-4bit", "1B": "unsloth/gemma-3-1b-it-unsloth-bnb-4bit",
        "4B": "unsloth/gemma-3-4b-it-unsloth-bnb-4bit", "12B": "unsloth/gemma-3-12b-it-unsloth-bnb-4bit"}),
    "mistral": Family("mistral", ("mistral",), LLAMA_TARGETS, {
        "7B": "unsloth/mistral-7b-instruct-v0.3-bnb-4bit"}),
    # Phi-3 and Phi-4-mini fuse q, k, v into one projection and gate, up into another.
    "phi3": Family("phi3", ("phi3",), ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"), {
        "3.8B": "unsloth/Phi-4-mini-instruct-unsloth-bnb-4bit"}),
}


def family_of(name: str, kind: str) -> Family:
    """The family of model `name` whose config.json says `kind`; a UserError naming the families we support."""
    for family in FAMILIES.values():
        if kind in family.model_types:
            return family
    raise UserError(
        f"model '{name}' is a {kind} model (config.json's model_type), a family trainer does not support",
        f"Use a model of a supported family: {', '.join(FAMILIES)} (for example {FAMILIES['llama'].unsloth_4bit['1B']}"
        f" or {FAMILIES['qwen3'].unsloth_4bit['4B']}).",
    )


def lora_targets(name: str, kind: str, asked: tuple[str, ...]) -> tuple[str, ...]:
    """The LoRA target modules for model `name` of model_type `kind`: the family's own when the setting is left at its
    (Llama-named) default, what the user set otherwise. A family we do not support is refused."""
    family = family_of(name, kind)
    return family.targets if asked == LLAMA_TARGETS else asked


# The image side of a model that reads images too (Gemma 3 4B and up): its encoder's attention layers are named as the
# language model's (q_proj, k_proj, v_proj), so the targets alone would give them adapters, for text that never
# reaches them. PEFT's exclude_modules (a regex over the module's full name).
IMAGE_SIDE = r".*\.(vision_tower|vision_model|multi_modal_projector)\..*"


def lora_excluded(config: Any) -> str | None:
    """The modules no adapter goes to: a model's image side, where its config has one (text is what trainer trains)."""
    return IMAGE_SIDE if getattr(config, "vision_config", None) is not None else None
