"""The unsloth engine: FastLanguageModel 4-bit loading and LoRA with Unsloth's gradient checkpointing (GPU only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer import weights
from trainer.config import Config
from trainer.engines import families
from trainer.engines.policy import torch_dtype
from trainer.errors import UserError
from trainer.runs.run_dir import RunDir
from trainer.system import Gpu

CHECKPOINTING = {"unsloth": "unsloth", "on": True, "off": False}
PACKED_ATTENTION = "unsloth.utils.hf_packed_attention"  # packed or padding-free rows on transformers' modeling path


def packed_attention_calls() -> dict[str, int] | None:
    """How Unsloth ran attention over packed (or padding-free) rows of a family it loads through transformers'
    modeling code (Phi, Gemma 3): its counters of varlen-kernel calls ("fast") and of calls left to SDPA over the dense
    mask ("fallback"); None where that code never loaded (no unsloth, or its own Llama kernels only)."""
    import sys

    module = sys.modules.get(PACKED_ATTENTION)
    return dict(module.HF_PACKED_ATTENTION_STATS) if module is not None else None


def load(config: Config, gpu: Gpu | None) -> tuple[Any, Any]:
    from unsloth import FastLanguageModel  # first: unsloth patches transformers, peft and trl on import

    # No device_map: under torchrun or accelerate launch, unsloth 2026.10.7 puts the whole model on the GPU of
    # LOCAL_RANK itself when it is left to choose (loader_utils.prepare_device_map); a map given here would be kept.

    if config.train.trained_positions_only == "on":
        from trainer.engines.trained_positions import patch_unsloth

        patch_unsloth()
    dtype = torch_dtype(config, gpu)
    source = weights.folder_of(config.model.name, config.run.cache_dir)
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(
            model_name=source,
            max_seq_length=config.model.max_seq_length,
            dtype=dtype,
            load_in_4bit=config.model.load_in_4bit,
            use_gradient_checkpointing=CHECKPOINTING[config.train.gradient_checkpointing],
            random_state=config.train.seed,
        )
    except OSError as e:
        raise UserError(f"could not load model '{config.model.name}': {e}",
                        "Check the id or path and your network (HF_TOKEN for gated models).") from None
    tokenizer = text_tokenizer(tokenizer)
    targets = families.lora_targets(config.model.name, model.config.model_type, config.lora.target_modules)
    if config.model.from_run:
        # The run's adapter, trained further (train/from_run.py checked that it fits): as unsloth 2026.10.7 loads an
        # adapter folder itself (loader.py: PeftModel.from_pretrained, is_trainable, then patch_peft_model).
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(RunDir(Path(config.model.from_run)).adapter), is_trainable=True)
        return FastLanguageModel.patch_peft_model(model, CHECKPOINTING[config.train.gradient_checkpointing]), tokenizer
    model = FastLanguageModel.get_peft_model(
        model,
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(targets),
        bias=config.lora.bias,
        use_gradient_checkpointing=CHECKPOINTING[config.train.gradient_checkpointing],
        random_state=config.train.seed,
        use_rslora=config.lora.use_rslora,
        init_lora_weights="loftq" if config.lora.use_loftq else True,
    )
    return model, tokenizer


def text_tokenizer(loaded: Any) -> Any:
    """What unsloth loaded beside the model, as the text tokenizer: a multimodal checkpoint (Gemma 3 4B and up) comes
    with its processor (an image processor and a tokenizer), whose tokenizer is what text training uses."""
    if not hasattr(loaded, "image_processor") or not hasattr(loaded, "tokenizer"):
        return loaded
    tokenizer = loaded.tokenizer
    if not getattr(tokenizer, "chat_template", None) and getattr(loaded, "chat_template", None):
        tokenizer.chat_template = loaded.chat_template
    return tokenizer
