"""The card x model table of docs/any-model.md: what the fit chooses for each card's profile and each model, the
predicted peak of a worst-case batch, the estimated FineTome-100k epoch, and the peak measured on the GPU where a
record of that fitted run exists (benchmarks/results/memory/*fitted*.jsonl).

`python benchmarks/fit_table.py` prints it; `--write` replaces the block between the markers in docs/any-model.md.
No GPU and no network: the models' shapes are the published ones (trainer/fit/shape.py KNOWN), the budgets the
cards' labels less 1 GB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from verified_table import with_block  # noqa: E402

from trainer import profiles  # noqa: E402
from trainer.data.synthetic import FINETOME_ROWS, TOKENS_PER_ROW  # noqa: E402
from trainer.errors import UserError  # noqa: E402
from trainer.fit import estimate  # noqa: E402
from trainer.fit.shape import shape_of  # noqa: E402

PAGE = ROOT / "docs" / "any-model.md"
START, END = "<!-- fit-table:start -->", "<!-- fit-table:end -->"
CARDS = ("rtx2060s", "rtx3070", "quadro-rtx5000", "t4", "a4000", "a5000")
MODELS = ("unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "unsloth/Llama-3.2-3B-Instruct-bnb-4bit",
          "unsloth/Llama-3.1-8B-Instruct-bnb-4bit", "unsloth/Qwen3-4B-bnb-4bit", "unsloth/Qwen3-8B-bnb-4bit",
          "unsloth/gemma-3-4b-it-bnb-4bit", "unsloth/mistral-7b-instruct-v0.3-bnb-4bit",
          "unsloth/Phi-4-mini-instruct-bnb-4bit")
# The random-init shape folders of benchmarks/gpu_models.py that a fitted GPU run trained, by model id.
MEASURED_AS = {"llama-3.1-8B-random": MODELS[2], "llama-3.2-3B-random": MODELS[1], "qwen3-4B-random": MODELS[3],
               "phi-4-mini-random": MODELS[7], "gemma-3-4B-random": MODELS[5]}


def measured() -> dict[tuple[str, str], float]:
    """(profile, model id) -> peak reserved GB of the fitted runs on the GPU."""
    found = {}
    for path in sorted((ROOT / "benchmarks" / "results" / "memory").glob("*fitted*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            profile = record["point"].rsplit("-fitted-", 1)[-1]
            model = MEASURED_AS.get(record["model"]["folder"])
            if model and record.get("exit_code") == 0 and record.get("peak_reserved_gb"):
                found[(profile, model)] = record["peak_reserved_gb"]
    return found


def row(card: str, model: str, peaks: dict[tuple[str, str], float]) -> str:
    short = model.split("/")[-1].removesuffix("-bnb-4bit")
    try:
        config, _ = profiles.resolve(card, ["vram_cap_gb=0"], {"model.name": model}, fit=True)
    except UserError as e:
        return f"| {card} | {short} | does not fit: {e.message.split(': about ')[-1]} at 512 tokens | | | |"
    from trainer.fit import choose
    from trainer.fit.budget import budget
    from trainer.fit.tell import settings_of

    shape = shape_of(model)
    peak = choose.predict(shape, settings_of(config))
    t = config.train
    checkpointing = {"auto": "none", "unsloth": "Unsloth's"}.get(t.gradient_checkpointing, t.gradient_checkpointing)
    settings = f"{t.micro_batch_size} x {config.model.max_seq_length}, accum {t.grad_accum_steps}, {checkpointing}"
    speed = estimate.tokens_per_s(shape, config.hardware.tflops, config.hardware.compute_capability,
                                  t.gradient_checkpointing, TOKENS_PER_ROW)
    hours = FINETOME_ROWS * TOKENS_PER_ROW / speed / 3600
    seen = peaks.get((card, model))
    return (f"| {card} | {short} | {settings} | {peak:.1f} of {budget(config).gb:g} | "
            f"{f'{seen:.2f}' if seen else ''} | {hours:.1f} h |")


def table() -> str:
    peaks = measured()
    lines = ["| card | model | fitted: micro-batch x tokens, accumulation, checkpointing | predicted peak GB | "
             "measured peak GB | estimated FineTome epoch |", "|---|---|---|---|---|---|"]
    lines += [row(card, model, peaks) for card in CARDS for model in MODELS]
    return "\n".join(lines)


def page_with_table(page: str) -> str:
    return with_block(page, START, END, table())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page_with_table(PAGE.read_text()))
    else:
        print(table())
