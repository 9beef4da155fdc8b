"""The fastest settings that fit: for the card's memory budget and the model's shape, the first candidate (fastest
first) whose predicted peak on a worst-case batch leaves the margin; what the user set stays, and is checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trainer.errors import UserError
from trainer.fit import memory
from trainer.fit.shape import Shape

# The memory model is within 9% of every measured peak (most within 5%); a budget keeps this share free for its error.
# Where nothing fits so, the fastest that fits within TIGHT_MARGIN is taken and said to be tight (an 8B model on an
# 8 GB card: one row of 1,024 tokens, 6.84 GB predicted, 6.79 measured, of 7).
MARGIN, TIGHT_MARGIN = 0.05, 0.02
# Fastest first. Without gradient checkpointing a token costs two forward-sized passes, with it three; a larger pass
# keeps the card busier (the named profiles: 2 packed rows a pass, 1.02-1.05x one row, benchmarks/RESULTS.md). Last,
# shorter rows: only where nothing else fits (long conversations are cut).
CANDIDATES = (("off", 2, None), ("off", 1, None), ("unsloth", 2, None), ("unsloth", 1, None),
              ("unsloth", 1, 1536), ("unsloth", 1, 1024), ("unsloth", 1, 768), ("unsloth", 1, 512))
KEYS = ("train.gradient_checkpointing", "train.micro_batch_size", "model.max_seq_length")
# Rows of max_seq_length tokens an optimizer step takes, where the user did not say: the named profiles' 2 x 2
# packed rows (about 12 FineTome conversations, the Unsloth notebook's 8); pairs: the profiles' and Unsloth's DPO
# notebook's 8; rows of one conversation each (UNPACKED): the Unsloth notebook's 8. Pairs are never trained without
# checkpointing (their logits are whole: the profiles' [preference]).
STEP_ROWS = {"rows": 4, "pairs": 8, "conversations": 8}
# KTO trains answers, not pairs, and its KL term needs two a pass (train/methods/kto.py). An answer is one sequence
# with a gradient (its KL term's sequence is scored without one): two answers a pass are predicted as one pair, and a
# step takes as many answers as it would pairs. Not measured on a card yet.
ANSWERS_PER_PAIR = {"kto": 2}
# Families whose packed rows train slower than the Unsloth notebook's rows of one conversation each: Phi-3 (Phi-4-mini
# on an emulated RTX 3070, 2026-12-07: packed 0.69-0.71x the notebook, padded to 64 or not; one a row 1.08x,
# docs/any-model.md). Unsloth runs it through transformers' modeling code, not its own kernels; so does Gemma 3, whose
# packed rows ran at the MFU of Qwen3's there (0.43 and 0.42; its notebook not measured), and stay packed. SFT rows
# of these families are not packed, and a step takes the notebook's 8 conversations (STEP_ROWS).
UNPACKED = ("phi3",)


@dataclass(frozen=True)
class Fit:
    settings: dict[str, Any]  # config keys ("train.micro_batch_size") to values
    peak_gb: float  # predicted peak of a worst-case batch
    budget_gb: float
    why: str  # one line


def tokens_per_pass(micro_batch_size: int, max_seq_length: int, max_tokens_per_pass: int, pairs: bool,
                    answers_per_pair: int = 1) -> int:
    """A worst-case pass: every row max_seq_length tokens (a pair: two of them; KTO's answers: a pair's worth of
    `answers_per_pair`), split at max_tokens_per_pass."""
    tokens = micro_batch_size * max_seq_length * (2 if pairs else 1) // answers_per_pair
    return min(tokens, max_tokens_per_pass) if max_tokens_per_pass else tokens


def predict(shape: Shape, settings: dict[str, Any]) -> float:
    """Predicted peak of `settings` (the config keys KEYS, train.max_tokens_per_pass, lora.r, train.method,
    model.dtype, and "engine": the one the run will pick, tell.settings_of)."""
    engine = settings.get("engine", "unsloth")
    checkpointing = settings["train.gradient_checkpointing"]
    if checkpointing == "auto":  # the engine's own choice (engines.policy.AUTO)
        checkpointing = "off" if engine == "unsloth" else "on"
    method = settings.get("train.method", "sft")
    tokens = tokens_per_pass(settings["train.micro_batch_size"], settings["model.max_seq_length"],
                             settings.get("train.max_tokens_per_pass", 0), method != "sft",
                             ANSWERS_PER_PAIR.get(method, 1))
    pairs = method != "sft"
    return memory.peak_gb(shape, tokens, checkpointing, settings.get("lora.r", 16), pairs, engine,
                          settings.get("model.dtype", "bfloat16"))


def choose(shape: Shape, budget_gb: float, current: dict[str, Any], given: set[str], model: str,
           pairs: bool = False) -> Fit:
    """The fastest candidate that fits `budget_gb` less the margin (else less TIGHT_MARGIN: said so), keeping what
    the user gave (`given` keys of `current`); the step's rows kept near STEP_ROWS by gradient accumulation unless
    given."""
    longest = current["model.max_seq_length"]
    per_pair = ANSWERS_PER_PAIR.get(current.get("train.method", "sft"), 1)  # KTO's answers a pair's pass holds
    plain = current.get("engine") == "transformers"  # torch's checkpointing alone, and always (memory.TRANSFORMERS)
    tried = []
    for margin in (MARGIN, TIGHT_MARGIN):
        for checkpointing, micro, seq in CANDIDATES:
            if (pairs or plain) and checkpointing == "off":
                continue
            checkpointing = "on" if plain else checkpointing
            # "auto" is off on the unsloth engine and on for plain transformers, which needs it (engines.policy.AUTO)
            settings = {**current, "train.gradient_checkpointing": "auto" if checkpointing == "off" else checkpointing,
                        "train.micro_batch_size": micro * per_pair,
                        "model.max_seq_length": min(seq or longest, longest)}
            settings = {**settings, **{key: current[key] for key in given if key in current}}  # the user's win
            peak = predict(shape, settings)
            tried.append(peak)
            if peak <= budget_gb * (1 - margin):
                if "train.grad_accum_steps" not in given:
                    rows = STEP_ROWS["pairs" if pairs else "rows"]
                    settings["train.grad_accum_steps"] = max(1, rows * longest // (
                        settings["train.micro_batch_size"] * settings["model.max_seq_length"]))
                unpacked, note = unpack(shape, settings, given)
                settings |= unpacked
                said = why(settings, current, peak, budget_gb, pairs) + note
                if margin == TIGHT_MARGIN:
                    said += (f" [yellow](tight: within the estimate's error; if one row runs out of memory, --set "
                             f"max_seq_length={settings['model.max_seq_length'] * 3 // 4})[/]")
                return Fit(settings, peak, budget_gb, said)
    if mine := [key for key in KEYS if key in given]:  # what the user set is what does not fit, where the fit would
        try:
            fits = choose(shape, budget_gb, current, given - set(KEYS), model, pairs)
        except UserError:
            fits = None
        if fits is not None:
            named = ", ".join(f"{key.split('.')[-1]}={current[key]}" for key in mine)
            raise UserError(f"{named} needs at least about {min(tried):.1f} GB on worst-case rows (whatever else the "
                            f"fit changes); the card has {budget_gb:.1f}",
                            f"Set less, or leave it to the fit: {fits.why.removeprefix('fitted: ')}.")
    one = "two answers" if per_pair > 1 else "one pair" if pairs else "one row"
    raise UserError(f"{model} ({shape.billions:.1f}B parameters) does not fit {budget_gb:.1f} GB even {one} of "
                    f"{settings['model.max_seq_length']} tokens{' a side' if pairs and per_pair == 1 else ''} at a "
                    "time with gradient checkpointing: about "
                    f"{min(tried):.1f} GB", "Pick a smaller model (for example unsloth/Llama-3.2-1B-Instruct-bnb-4bit "
                    "or unsloth/Qwen3-1.7B-bnb-4bit), or a card with more memory; close other programs that use the "
                    "GPU.")


def unpack(shape: Shape, settings: dict[str, Any], given: set[str]) -> tuple[dict[str, Any], str]:
    """Rows of one conversation each, unpadded as in the notebook, a step of STEP_ROWS of them, for SFT of the
    families whose packed rows train slower on Unsloth (UNPACKED); and what to say of it. Nothing where packing
    stays."""
    if (not settings.get("train.packing") or "train.packing" in given or shape.family not in UNPACKED
            or settings.get("engine") != "unsloth" or settings.get("train.method", "sft") != "sft"):
        return {}, ""
    change = {"train.packing": False} | ({} if "train.pad_to_multiple_of" in given else {"train.pad_to_multiple_of": 0})
    if "train.grad_accum_steps" not in given:
        change["train.grad_accum_steps"] = max(1, STEP_ROWS["conversations"] // settings["train.micro_batch_size"])
    return change, f"; one conversation a row, not packed (packed rows of {shape.family} train slower on Unsloth)"


def why(settings: dict[str, Any], current: dict[str, Any], peak: float, budget: float, pairs: bool = False) -> str:
    checkpointing = settings["train.gradient_checkpointing"]
    how = ("no gradient checkpointing" if checkpointing in ("off", "auto")
           else f"gradient checkpointing ({checkpointing})")
    answers = ANSWERS_PER_PAIR.get(settings.get("train.method", "sft"), 1) > 1
    rows = "answer(s)" if answers else "pair(s)" if pairs else "row(s)"
    side = " a side" if pairs and not answers else ""
    line = (f"fitted: {settings['train.micro_batch_size']} {rows} of {settings['model.max_seq_length']} tokens{side} a "
            f"pass, {how}: about {peak:.1f} of {budget:.1f} GB on worst-case rows")
    if settings["model.max_seq_length"] < current["model.max_seq_length"]:
        line += f" (rows cut to {settings['model.max_seq_length']} tokens: {current['model.max_seq_length']} "
        line += "does not fit)"
    return line


def check(shape: Shape, budget_gb: float, settings: dict[str, Any], given: set[str]) -> str | None:
    """A warning when the settings (the user's, or a profile's) are predicted not to fit the budget."""
    peak = predict(shape, settings)
    if peak <= budget_gb:
        return None
    named = ", ".join(f"{key.split('.')[-1]}={settings[key]}" for key in KEYS if key in given) or "these settings"
    return (f"{named} needs about {peak:.1f} GB on worst-case rows; the card has {budget_gb:.1f}: long batches will "
            "run out of memory and be split (slower), or stop where one row does not fit")
