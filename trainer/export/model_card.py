"""The model card (README.md) of an export: the Hub's YAML front matter and what a user needs to know."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer import weights
from trainer.export.merge import Source
from trainer.runs import eval_table


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


def evaluation(run: Any) -> str:
    """The run's `trainer eval` numbers (RUN/eval/eval.json), tuned against what it was compared with; "" without."""
    path = run.path / "eval" / "eval.json"
    if not path.is_file():
        return ""
    report = json.loads(path.read_text(encoding="utf-8"))
    table = "\n".join(f"| {what} | {a} | {b} |" for what, a, b in eval_table.numbers(report))
    return (f"\n## Evaluation\n\n`trainer eval` on {report['held_out_rows']} held-out rows and "
            f"{len(report['prompts'])} prompts the training never saw, against {report['against']} "
            f"({report['date'][:10]}):\n\n"
            f"| measure | {report['against']} | this model |\n|---|---|---|\n{table}\n")


def model_card(source: Source, cache_dir: str, adapter_only: bool, repo_id: str | None, gguf_files: list[str]) -> str:
    """README.md for the Hub: YAML front matter (huggingface_hub's ModelCardData) and what a user needs to know."""
    from huggingface_hub import ModelCard, ModelCardData

    from trainer.runs import speed

    cfg = source.config
    base, dataset = source.base_name, cfg["data"]["dataset"]
    license = license_of(base, weights.folder_of(base, cache_dir))
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
{evaluation(source.run)}"""
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
