"""The transformers engine: PEFT LoRA on a bitsandbytes 4-bit model (GPU) or a full-precision model (CPU)."""

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


def load(config: Config, gpu: Gpu | None) -> tuple[Any, Any]:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, set_seed
    from transformers.utils import logging

    logging.disable_progress_bar()
    if config.lora.use_loftq:
        raise UserError("use_loftq is only supported by the unsloth engine", "Use --set use_loftq=false.")
    if config.train.trained_positions_only == "on":
        raise UserError("trained_positions_only=on is only supported by the unsloth engine (its fused loss)",
                        "Use --set trained_positions_only=off (or auto: on with unsloth, off here).")
    dtype = torch_dtype(config, gpu)
    source = weights.folder_of(config.model.name, config.run.cache_dir)
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if gpu is not None:
        import torch

        # This process's GPU: its local rank's in a job of several (trainer/distributed/ranks.start made it current).
        # 4-bit weights cannot be moved after loading, so each rank loads straight onto its own.
        kwargs["device_map"] = {"": torch.cuda.current_device()}
    if config.model.load_in_4bit:
        kwargs["quantization_config"] = weights.four_bit(dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        raise UserError(f"could not load model '{config.model.name}': {e}",
                        "Check the id or path and your network (HF_TOKEN for gated models).") from None
    targets = families.lora_targets(config.model.name, model.config.model_type, config.lora.target_modules)
    checkpointing = config.train.gradient_checkpointing != "off"
    if config.model.load_in_4bit:
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    elif checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    lora = LoraConfig(
        r=config.lora.r,
        lora_alpha=config.lora.alpha,
        lora_dropout=config.lora.dropout,
        target_modules=list(targets),
        exclude_modules=families.lora_excluded(model.config),
        bias=config.lora.bias,
        use_rslora=config.lora.use_rslora,
        task_type="CAUSAL_LM",
    )
    set_seed(config.train.seed)  # the LoRA init, as Unsloth's random_state does
    if config.model.from_run:  # the run's adapter, trained further (train/from_run.py checked that it fits)
        from peft import PeftModel

        return PeftModel.from_pretrained(model, str(RunDir(Path(config.model.from_run)).adapter),
                                         is_trainable=True), tokenizer
    try:
        model = get_peft_model(model, lora)
    except ValueError as e:  # e.g. target modules the architecture doesn't have
        raise UserError(f"LoRA settings don't fit {config.model.name}: {e}", "Check lora.target_modules.") from None
    return model, tokenizer
