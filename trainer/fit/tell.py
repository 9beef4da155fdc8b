"""What a run will take, told before the model loads: the predicted peak against the budget, and the time an epoch of
this data takes on this card."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from trainer.config import Config
from trainer.fit import choose, estimate
from trainer.fit.budget import Budget
from trainer.fit.shape import shape_of
from trainer.runs.speed import SCORING_PASSES

CHARS_PER_TOKEN = 4.0  # English text in these tokenizers, where the tokenizer cannot be read here
SAMPLE_ROWS = 200  # rows tokenized to learn the data's characters per token
# The sizes the memory model and the speed figures were measured on (benchmarks/results/: from Llama 3.2 1B, 1.24B
# parameters, to Qwen3 8B, 8.19B); a plan of a model outside them says it extrapolates.
MEASURED_B = (1.2, 8.2)


def expected_engine(config: Config, gpu_here: bool) -> str:
    """The engine trainer.engines.choose will pick, said without importing anything (the fit plans for it before the
    start): unsloth, unless asked otherwise or this machine has a GPU and no unsloth installed (a plan for a card
    elsewhere counts on unsloth there)."""
    if config.engine != "auto":
        return config.engine
    return "transformers" if gpu_here and importlib.util.find_spec("unsloth") is None else "unsloth"


def settings_of(config: Config, engine: str = "unsloth") -> dict[str, Any]:
    """The config as {"section.field": value}, the keys trainer.fit.choose reads and writes, and the `engine` the run
    will train with (expected_engine)."""
    return {f"{section}.{name}": value for section, fields in config.to_dict().items() if isinstance(fields, dict)
            for name, value in fields.items()} | {"engine": engine}


def texts_of(data: Any) -> list[str]:
    """Each row's text: a conversation's messages, a plain text, a pair's prompt and both answers, or a prompt and
    its labelled answer (KTO)."""
    if hasattr(data, "completions"):
        return [" ".join(m["content"] for m in prompt) + answer
                for prompt, answer in zip(data.prompts, data.completions, strict=True)]
    if hasattr(data, "chosen"):
        return [" ".join(m["content"] for m in prompt) + chosen + rejected
                for prompt, chosen, rejected in zip(data.prompts, data.chosen, data.rejected, strict=True)]
    if data.format == "text":
        return list(data.texts)
    return [" ".join(str(m.get("content", "")) for m in conversation) for conversation in data.conversations]


def chars_per_token(config: Config, texts: list[str]) -> float:
    """Measured with the model's tokenizer.json on the first rows where it is here (a local folder, or the Hub's cache),
    else CHARS_PER_TOKEN. Through the tokenizers library, not transformers: the plan comes before the engine, and
    unsloth must be imported before transformers to patch it."""
    path = tokenizer_file(config.model.name)
    sample = [t for t in texts[:SAMPLE_ROWS] if t]
    if path is None or not sample:
        return CHARS_PER_TOKEN
    from tokenizers import Tokenizer

    try:
        encodings = Tokenizer.from_file(str(path)).encode_batch(sample, add_special_tokens=False)
    except Exception:  # a tokenizer.json this tokenizers cannot read: the plan still comes, from a typical ratio
        return CHARS_PER_TOKEN
    tokens = sum(len(e.ids) for e in encodings)
    return sum(map(len, sample)) / tokens if tokens else CHARS_PER_TOKEN


def tokenizer_file(model: str) -> Path | None:
    """The model's tokenizer.json in its folder, or in the Hub's cache (never downloaded for a plan)."""
    local = Path(model) / "tokenizer.json"
    if local.is_file():
        return local
    if Path(model).exists():
        return None
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(model, "tokenizer.json")
    return Path(cached) if isinstance(cached, str) else None


def epoch_tokens(config: Config, data: Any) -> int:
    """The data's tokens in one epoch, each row cut to max_seq_length (a pair's both sides)."""
    texts = texts_of(data)
    ratio = chars_per_token(config, texts)
    most = config.model.max_seq_length * (2 if hasattr(data, "chosen") else 1)
    return int(sum(min(most, len(t) / ratio) for t in texts))


def prediction(config: Config, data: Any, budget: Budget, engine: str = "unsloth") -> dict[str, Any]:
    """The predicted peak of a worst-case batch on `engine` against the budget, and (where the card's TFLOPS are
    known) the speed and the time of an epoch of `data`: what the run records beside what it measures
    (benchmark.json)."""
    shape = shape_of(config.model.name)
    told: dict[str, Any] = {"peak_gb": choose.predict(shape, settings_of(config, engine)), "budget_gb": budget.gb,
                            "budget": budget.why, "engine": engine}
    if not MEASURED_B[0] <= shape.billions <= MEASURED_B[1]:
        told["extrapolated"] = (f"No GPU record of a model of {shape.billions:.1f}B parameters, measured "
                                f"{MEASURED_B[0]:g}B to {MEASURED_B[1]:g}B: the memory and the time are extrapolated")
    hw = config.hardware
    if hw.tflops and len(data):
        tokens = epoch_tokens(config, data)
        checkpointing = config.train.gradient_checkpointing
        if engine == "transformers" and checkpointing != "off":  # its own, always (choose.choose)
            checkpointing = "on"
        speed = estimate.tokens_per_s(shape, hw.tflops, hw.compute_capability, checkpointing, tokens / len(data),
                                      config.model.dtype)
        # the scoring passes without a backward (DPO's reference, KTO's reference and KL term): 2 passes of 3, of 5
        speed *= 2 / (2 + SCORING_PASSES.get(config.train.method, 0))
        told |= {"epoch_tokens": tokens, "tokens_per_s": round(speed), "epoch_h": round(tokens / speed / 3600, 2)}
        if note := estimate.SLOW_NOTE.get((shape.family, config.model.dtype)):
            told["slow"] = note
    elif len(data):
        told["untimed"] = ("no time per epoch: the profile does not give the card's speed (hardware.tflops, its dense "
                           "16-bit TFLOPS)")
    return told


def line(told: dict[str, Any]) -> str:
    """"fits: about 6.1 of 7.0 GB on worst-case rows; about 3 h 10 min per epoch of 68.2M tokens (about 6,000
    tokens/s on the card)", and why it is slow where a family is (estimate.SLOW_NOTE)."""
    fits = "fits" if told["peak_gb"] <= told["budget_gb"] else "[red]does not fit[/]"
    said = f"{fits}: about {told['peak_gb']:.1f} of {told['budget_gb']:.1f} GB on worst-case rows"
    if "epoch_h" in told:
        tokens = told["epoch_tokens"]
        count = f"{tokens / 1e6:.1f}M" if tokens >= 1e6 else f"{tokens:,}"
        took = estimate.duration(told["epoch_h"] * 3600)
        said += (f"; {'' if took.startswith('under') else 'about '}{took} per epoch of {count} tokens (about "
                 f"{told['tokens_per_s']:,} tokens/s on the card)")
    if "extrapolated" in told:
        said += f". {told['extrapolated']}"
    if "slow" in told:
        said += f". {told['slow']}"
    if "untimed" in told:
        said += f"; {told['untimed']}"
    return said
