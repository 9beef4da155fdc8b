"""The adapter merged into 16-bit weights, checked against base + adapter before it replaces RUN_DIR/merged."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import weights
from trainer.data.render import stop_token_ids
from trainer.errors import UserError
from trainer.runs import RunDir

# Prompts the merged model must answer exactly like base + adapter (chat-templated, so the trained format is used).
CHECK_PROMPTS = ("What is the capital of France?", "Write a haiku about the sea.", "Explain LoRA in one sentence.")


# The merge itself (float32 merge_and_unload against base + adapter) may differ only by float32 rounding.
MERGE_TOLERANCE = 1e-3


# What is saved is 16-bit: each merged weight is rounded to 11 (float16) or 8 (bfloat16) bits of mantissa. Measured on
# the CPU demo (SmolLM2) that moves the logits by 0.26% of their range in float16 and 0.87% in bfloat16; 2% allows
# bfloat16 bases and still fails a merged model without the adapter or with a wrong one (the tests check that the
# adapters they use move the logits by far more).
SAVED_TOLERANCE = 0.02  # max |logit difference| / max |logit|


@dataclass(frozen=True)
class Source:
    """What a run exports: its folder, base model (as configured and as loaded), adapter, engine and config."""

    run: RunDir
    base_name: str  # as the user named it (a Hub id, or a local folder)
    adapter: Path
    engine: str
    config: dict[str, Any]


def open_source(run_dir: str) -> Source:
    path = Path(run_dir)
    if not path.is_dir():
        raise UserError(f"run directory {path} does not exist", "Pass a run folder, e.g. runs/<date-time>-<profile>.")
    run = RunDir.open(path)
    if not (run.status).is_file():
        raise UserError(f"{path} has no status.json, so it is not a finished run", "Export a run that completed.")
    _, adapter = weights.describe(str(path))  # raises when the run has no finished adapter
    assert adapter is not None
    config = run.read_config()
    return Source(run, config.model.name, adapter, run.read_status().get("engine", "transformers"), config.to_dict())


def merge(source: Source, cache_dir: str) -> dict[str, Any]:
    """Write RUN_DIR/merged/: the adapter merged into 16-bit base weights, tokenizer, chat template and generation
    config, checked against base + adapter before it is moved into place. Returns the check's record."""
    import torch

    started = time.perf_counter()
    staging = source.run.path / f".merged-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    if source.engine == "unsloth" and torch.cuda.is_available():
        check = merge_unsloth(source, staging)
    else:
        check = merge_peft(source, cache_dir, staging)
    check["seconds"] = round(time.perf_counter() - started, 2)
    replace_dir(staging, source.run.path / "merged")
    return check


def merge_peft(source: Source, cache_dir: str, out: Path) -> dict[str, Any]:
    """PEFT merge_and_unload on the CPU, in float32, saved in the base model's 16-bit dtype."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = weights.folder_of(weights.describe(str(source.run.path))[0], cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(source.adapter)
    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    if getattr(base.config, "quantization_config", None):
        raise UserError(f"the base model {source.base_name} is stored quantized, so it cannot be merged on the CPU",
                        "Export on the GPU machine the run trained on (unsloth dequantizes the base when merging).")
    dtype = saved_dtype(base.config)
    model = PeftModel.from_pretrained(base, source.adapter).eval()
    inputs = check_inputs(tokenizer)
    reference = logits(model, inputs)
    with model.disable_adapter():
        unadapted = logits(model, inputs)
    saving = time.perf_counter()
    merged = model.merge_and_unload()
    merge_diff = (logits(merged, inputs) - reference).abs().max().item()
    if merge_diff > MERGE_TOLERANCE:
        raise RuntimeError(f"merge_and_unload changed the logits by {merge_diff} (> {MERGE_TOLERANCE})")
    merged.to(dtype).save_pretrained(out)
    save_tokenizer(tokenizer, merged, out)
    save_seconds = round(time.perf_counter() - saving, 2)
    check = verify_saved(out, inputs, reference)
    return {"method": "peft merge_and_unload (cpu, float32)", "dtype": str(dtype).removeprefix("torch."),
            "merge_max_abs_diff": merge_diff, "merge_tolerance": MERGE_TOLERANCE,
            "adapter_max_abs_effect": (reference - unadapted).abs().max().item(), "save_seconds": save_seconds, **check}


def merge_unsloth(source: Source, out: Path) -> dict[str, Any]:
    """Unsloth's merged_16bit save, on the GPU. It merges the adapter into the base's original 16-bit weights where
    it finds them, not into the dequantized 4-bit ones: the reference is therefore the 16-bit base + adapter (on the
    CUDA host, the 4-bit reference differed from a correct merge by 1.48 in the logits of a random 1B model)."""
    from unsloth import FastLanguageModel  # GPU only; first, so it patches transformers and peft

    model, tokenizer = FastLanguageModel.from_pretrained(model_name=str(source.adapter), load_in_4bit=False,
                                                         max_seq_length=source.config["model"]["max_seq_length"])
    FastLanguageModel.for_inference(model)
    inputs = check_inputs(tokenizer).to(model.device)
    reference = logits(model, inputs)
    saving = time.perf_counter()
    model.save_pretrained_merged(str(out), tokenizer, save_method="merged_16bit")
    save_tokenizer(tokenizer, None, out)
    save_seconds = round(time.perf_counter() - saving, 2)
    del model
    check = verify_saved(out, inputs, reference, device="cuda")
    return {"method": "unsloth save_pretrained_merged (merged_16bit, gpu)", "save_seconds": save_seconds, **check}


def saved_dtype(config: Any) -> Any:
    """The base model's own 16-bit dtype; float16 (3 more bits of mantissa than bfloat16) when it was stored in
    float32, as the CPU demo's model is."""
    import torch

    dtype = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    return dtype if dtype in (torch.float16, torch.bfloat16) else torch.float16


def check_inputs(tokenizer: Any) -> Any:
    conversations = [[{"role": "user", "content": p}] for p in CHECK_PROMPTS]
    tokenizer.padding_side = "left"
    return tokenizer.apply_chat_template(conversations, add_generation_prompt=True, return_tensors="pt",
                                         return_dict=True, padding=True)


def logits(model: Any, inputs: Any) -> Any:
    import torch

    with torch.inference_mode():
        out = model(**inputs).logits.float()
    return out.masked_fill(~inputs["attention_mask"].bool()[..., None], 0).cpu()  # padding positions don't count


def verify_saved(folder: Path, inputs: Any, reference: Any, device: str = "cpu") -> dict[str, Any]:
    """Load what was written with plain transformers and compare its logits with base + adapter."""
    import torch
    from transformers import AutoModelForCausalLM

    saved = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, device_map={"": device})
    diff = (logits(saved, inputs.to(device)) - reference).abs().max().item()
    scale = reference.abs().max().item()
    same_next = bool((logits(saved, inputs.to(device))[:, -1].argmax(-1) == reference[:, -1].argmax(-1)).all())
    check = {"prompts": list(CHECK_PROMPTS), "saved_max_abs_diff": diff, "logit_scale": scale,
             "saved_tolerance": SAVED_TOLERANCE * scale, "same_next_token": same_next}
    if diff > SAVED_TOLERANCE * scale:
        raise UserError(f"the merged model in {folder} does not reproduce base + adapter: logits differ by {diff:.4g} "
                        f"(allowed {SAVED_TOLERANCE * scale:.4g}); nothing was replaced",
                        "This is a bug worth reporting with the run's config.toml.")
    return check


def save_tokenizer(tokenizer: Any, model: Any, out: Path) -> None:
    """Tokenizer with its chat template, and a generation config that stops at the chat's end-of-turn token."""
    tokenizer.padding_side = "right"
    tokenizer.save_pretrained(out)
    if model is not None and model.generation_config is not None:
        stops = stop_token_ids(tokenizer)  # Gemma ends a turn with <end_of_turn>, not its EOS <eos>: both stop it
        model.generation_config.eos_token_id = stops if len(stops) > 1 else tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
        model.generation_config.save_pretrained(out)


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished staging folder into place: `target` is either the old complete folder or the new one."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)
