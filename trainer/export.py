"""Export a finished run: the adapter merged into 16-bit weights (checked), a model card, GGUF + Modelfile, Hub push."""

from __future__ import annotations

import json
import os
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import models
from trainer.console import console
from trainer.errors import UserError
from trainer.runs import RunDir, write_atomic
from trainer.serve import chat

GGUF_TYPES = ("f16", "q8_0", "q4_k_m")
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
    _, adapter = chat.describe(str(path))  # raises when the run has no finished adapter
    assert adapter is not None
    config = tomllib.loads(run.config.read_text(encoding="utf-8"))
    return Source(run, config["model"]["name"], adapter, run.read_status().get("engine", "transformers"), config)


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

    base_dir = models.resolve(chat.describe(str(source.run.path))[0], cache_dir)
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
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
        model.generation_config.save_pretrained(out)


def replace_dir(staging: Path, target: Path) -> None:
    """Move a finished staging folder into place: `target` is either the old complete folder or the new one."""
    old = target.with_name(f".{target.name}-old-{os.getpid()}")
    if target.exists():
        os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old, ignore_errors=True)


def record(run: RunDir, key: str, value: dict[str, Any]) -> None:
    """Add this export step's facts to RUN_DIR/export.json."""
    path = run.path / "export.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[key] = {**value, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def license_of(base_name: str, base_dir: str) -> str:
    """The base model's license: from its local model card, else known for the models our profiles use."""
    readme = Path(base_dir) / "README.md"
    if readme.is_file():
        from huggingface_hub import ModelCard

        found = ModelCard.load(readme).data.license
        if found:
            return str(found)
    name = base_name.lower()
    if "llama-3.2" in name:
        return "llama3.2"
    if "smollm2" in name:
        return "apache-2.0"
    return "other"


def is_hub_id(name: str) -> bool:
    return name.count("/") == 1 and not Path(name).expanduser().exists() and not name.startswith((".", "/", "~"))


def model_card(source: Source, cache_dir: str, adapter_only: bool, repo_id: str | None, gguf_files: list[str]) -> str:
    """README.md for the Hub: YAML front matter (huggingface_hub's ModelCardData) and what a user needs to know."""
    from huggingface_hub import ModelCard, ModelCardData

    from trainer.runs import speed

    cfg = source.config
    base, dataset = source.base_name, cfg["data"]["dataset"]
    license = license_of(base, models.resolve(base, cache_dir))
    data = ModelCardData(
        base_model=base if is_hub_id(base) else None, base_model_relation="adapter" if adapter_only else "finetune",
        library_name="peft" if adapter_only else "transformers", license=license, pipeline_tag="text-generation",
        datasets=[dataset] if is_hub_id(dataset) else None,
        tags=["trainer", "lora", "sft", "conversational", *(["gguf"] if gguf_files else [])])
    metrics = source.run.read_metrics()
    steps = [m for m in metrics if "loss" in m]
    evals = [m for m in metrics if "eval_loss" in m]
    numbers = speed.summarize(source.run)
    repo = repo_id or "USER/NAME"
    train, lora = cfg["train"], cfg["lora"]
    hyper = {
        "LoRA": f"r={lora['r']}, alpha={lora['alpha']}, dropout={lora['dropout']}, "
                f"targets {', '.join(lora['target_modules'])}",
        "batch": f"{train['micro_batch_size']} x {train['grad_accum_steps']} gradient accumulation",
        "optimizer": f"{train['optimizer']}, lr {train['learning_rate']} ({train['lr_scheduler']}, "
                     f"{train['warmup_steps']} warmup steps), weight decay {train['weight_decay']}",
        "steps": f"{steps[-1]['step'] if steps else 0} (max_steps {train['max_steps']}, seed {train['seed']})",
        "sequence length": f"{cfg['model']['max_seq_length']} tokens, dtype {cfg['model']['dtype']}, "
                           f"4-bit base: {cfg['model']['load_in_4bit']}",
    }
    results = {
        "training time": f"{steps[-1]['elapsed_s']:.0f} s" if steps else "unknown",
        "final train loss": f"{steps[-1]['loss']:.4f}" if steps else "unknown",
        "final eval loss": f"{evals[-1]['eval_loss']:.4f}" if evals else "not evaluated",
        "steps/min": numbers.get("steps_per_min", "n/a"), "tokens/s": numbers.get("tokens_per_s", "n/a"),
        "peak memory (GB)": numbers.get("peak_memory_gb", "n/a"),
    }
    if adapter_only:
        load = (f"from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                f"model = AutoPeftModelForCausalLM.from_pretrained(\"{repo}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")")
    else:
        load = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f"model = AutoModelForCausalLM.from_pretrained(\"{repo}\")\n"
                f"tokenizer = AutoTokenizer.from_pretrained(\"{repo}\")")
    load += ("\nmessages = [{\"role\": \"user\", \"content\": \"Hello!\"}]\n"
             "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors=\"pt\", "
             "return_dict=True)\nprint(tokenizer.decode(model.generate(**inputs, max_new_tokens=64)[0]))")
    gguf = ""
    if gguf_files:
        gguf = ("\n\nGGUF for llama.cpp and Ollama: " + ", ".join(f"`{f}`" for f in gguf_files)
                + ". With Ollama, next to the downloaded files: `ollama create my-model -f Modelfile`, "
                  "then `ollama run my-model`.")
    body = f"""
# {repo.split("/")[-1]}

A LoRA fine-tune of {base} on {dataset}, made with `trainer` (TRL SFTTrainer, engine {source.engine},
profile `{cfg.get("profile", source.run.read_status().get("profile", "?"))}`).
{"This repository holds the LoRA adapter only." if adapter_only else
 "The adapter is merged into the base weights in 16-bit: it loads with plain transformers."}

## Intended use

A chat assistant in the style of the training conversations, for experiments and personal use. It inherits the
abilities, biases and license terms ({license}) of {base}; it was not evaluated for safety or factual accuracy, so don't
use it for decisions that matter without checking its answers.

## How to load

```python
{load}
```{gguf}

## Training

| setting | value |
|---|---|
| base model | {base} |
| dataset | {dataset} (format {cfg["data"]["format"]}) |
| profile | {source.run.read_status().get("profile", "?")} |
{chr(10).join(f"| {k} | {v} |" for k, v in hyper.items())}

## Results

| measure | value |
|---|---|
{chr(10).join(f"| {k} | {v} |" for k, v in results.items())}
"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))


def main(run_dir: str, cache_dir: str, merged_16bit: bool = False, gguf: str | None = None, push: str | None = None,
         private: bool = False, adapter_only: bool = False, token_file: str | None = None) -> None:
    """`trainer export`: every input is checked before anything slow runs or anything is written."""
    from trainer import hub

    if gguf is not None and gguf not in GGUF_TYPES:
        raise UserError(f"--gguf {gguf} is not a GGUF type we make", f"Use one of: {', '.join(GGUF_TYPES)}.")
    if adapter_only and not push:
        raise UserError("--adapter-only says what to push, but there is no --push", "Add --push USER/NAME.")
    if adapter_only and (merged_16bit or gguf):
        raise UserError("--adapter-only pushes the adapter alone", "Drop --merged-16bit/--gguf, or --adapter-only.")
    source = open_source(run_dir)
    token = None
    if push:
        hub.check_repo_id(push)
        token = hub.find_token(token_file)
        hub.check_token(token)
    if gguf:
        from trainer import gguf as gguf_export

        gguf_export.check_tooling()
    merged = source.run.path / "merged"
    if not adapter_only and (merged_16bit or not (merged / "config.json").is_file()):
        console.print(f"Merging {source.adapter} into {source.base_name} (16-bit)")
        check = merge(source, cache_dir)
        record(source.run, "merged_16bit", check)
        console.print(f"[green]Merged[/] into {merged} in {check['seconds']} s; logits match base + adapter within "
                      f"{check['saved_max_abs_diff']:.3g} (allowed {check['saved_tolerance']:.3g})")
    if gguf:
        result = gguf_export.export(merged, source.run.path / "gguf", gguf, cache_dir)
        record(source.run, f"gguf_{gguf}", result)
    gguf_dir = source.run.path / "gguf"
    gguf_files = sorted(p.name for p in gguf_dir.glob("*.gguf")) if gguf_dir.is_dir() and not adapter_only else []
    card_folder = source.adapter if adapter_only else merged
    write_atomic(card_folder / "README.md", model_card(source, cache_dir, adapter_only, push, gguf_files))
    console.print(f"Model card: {card_folder / 'README.md'}")
    if push:
        assert token is not None
        folders = [card_folder] + ([gguf_dir] if gguf_files else [])
        url = hub.push(push, folders, token, private)
        record(source.run, "push", {"repo": push, "private": private, "adapter_only": adapter_only, "url": url})
        console.print(f"[green]Pushed[/] to {url}")
