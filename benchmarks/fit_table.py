"""The card x model table of docs/any-model.md: what the fit chooses for each card's profile and each model, the
predicted peak of a worst-case batch, the estimated FineTome-100k epoch, the peak measured on the GPU where a record
of that fitted run exists (benchmarks/results/memory/*fitted*.jsonl), and the speed measured on the emulated card
where `bench --emulate` ran that model (benchmarks/results/*.jsonl: its card estimate, against the notebook recipe
of the same session).

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
from trainer.bench.cards import card_estimate  # noqa: E402
from trainer.bench.report import read_records  # noqa: E402
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
# Mistral's shape built with Llama's 128,256-token vocabulary (mistral-7B-v0.3-random: the host had only the Llama
# tokenizer) has peaks that are not Mistral 7B's, and is left out; the one with its own 32,768 is counted.
MEASURED_AS = {"llama-3.2-1B-random": MODELS[0], "llama-3.2-3B-random": MODELS[1], "llama-3.1-8B-random": MODELS[2],
               "qwen3-4B-random": MODELS[3], "qwen3-8B-random": MODELS[4], "gemma-3-4B-random": MODELS[5],
               "mistral-7B-v0.3-own-vocab-random": MODELS[6], "phi-4-mini-random": MODELS[7],
               "gemma-3-4B-images-random": MODELS[5]}
# Shapes measured without the image encoder the real checkpoint loads beside its language model (in 16 bits: the
# prediction counts it): their peaks are said to be of the text model alone, where no run of the whole exists.
TEXT_ALONE = {"gemma-3-4B-random"}


def measured() -> dict[tuple[str, str, tuple], dict[str, tuple[float, bool]]]:
    """(model id, dtype, settings as `trained` gives them) -> {the profile a fitted run on the GPU ran for: its peak
    reserved GB, and whether the run was of the text model alone}. A peak holds for every card whose fit chose the
    same settings in the same dtype: the runs were capped at the card's budget, not confined to its SMs, so the card's
    speed does not enter."""
    found = {}
    for path in sorted((ROOT / "benchmarks" / "results" / "memory").glob("*fitted*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            profile = record["point"].rsplit("-fitted-", 1)[-1]
            model = MEASURED_AS.get(record["model"]["folder"])
            if model and record.get("exit_code") == 0 and record.get("peak_reserved_gb") and \
                    record.get("engine", "unsloth") == "unsloth":
                key = (model, record["resolved"]["dtype"], trained(record["resolved"]))
                alone = record["model"]["folder"] in TEXT_ALONE
                kept = found.get(key, {}).get(profile)
                if alone and kept and not kept[1]:
                    continue  # the whole model's run of the same settings is kept
                found.setdefault(key, {})[profile] = (record["peak_reserved_gb"], alone)
    return found


def trained(settings: dict) -> tuple:
    """What a measurement holds for: micro-batch, tokens and checkpointing ("auto" on unsloth is off)."""
    checkpointing = settings["gradient_checkpointing"]
    return settings["micro_batch_size"], settings["max_seq_length"], "off" if checkpointing == "auto" else checkpointing


def emulated() -> dict[tuple[str, str], tuple[float, float | None, tuple]]:
    """(profile, model id) -> the fitted settings' real tokens/s on the emulated card, the notebook recipe's of the
    same session (None where it did not finish), and the settings (`trained`'s and the packing), from the newest
    `bench --emulate` session of that model since the fit exists (its records say what was predicted)."""
    found: dict[tuple[str, str], tuple[float, float | None, tuple]] = {}
    sessions: dict[str, dict[str, dict]] = {}
    for record in read_records(ROOT / "benchmarks" / "results"):
        sessions.setdefault(record.get("session", ""), {})[record["config"]] = record
    for _, configs in sorted(sessions.items()):
        tuned, notebook = configs.get("tuned"), configs.get("notebook")
        model = MEASURED_AS.get(Path(tuned.get("model") or "").name) if tuned and "predicted" in tuned else None
        speed = card_estimate(tuned) if model else None
        if speed:
            other = card_estimate(notebook) if notebook else None
            found[(tuned["profile"], model)] = (speed["tokens_per_s"], other["tokens_per_s"] if other else None,
                                                (*trained(tuned), tuned.get("packing", True)))
    return found


def row(card: str, model: str, peaks: dict[tuple[str, str, tuple], dict[str, tuple[float, bool]]],
        speeds: dict[tuple[str, str], tuple[float, float | None, tuple]]) -> str:
    """One card and model; a measurement only where it holds for the settings fitted now."""
    short = model.split("/")[-1].removesuffix("-bnb-4bit")
    try:
        config, _ = profiles.resolve(card, ["vram_cap_gb=0"], {"model.name": model}, fit=True)
    except UserError as e:
        return f"| {card} | {short} | does not fit: {e.message.split(': about ')[-1]} at 512 tokens | | | | |"
    from trainer.fit import choose
    from trainer.fit.budget import budget
    from trainer.fit.tell import settings_of

    shape = shape_of(model)
    peak = choose.predict(shape, settings_of(config))  # the unsloth engine: a card's profile plans for it
    t = config.train
    checkpointing = {"auto": "none", "unsloth": "Unsloth's"}.get(t.gradient_checkpointing, t.gradient_checkpointing)
    settings = (f"{t.micro_batch_size} x {config.model.max_seq_length}{'' if t.packing else ' unpacked'}, "
                f"accum {t.grad_accum_steps}, {checkpointing}")
    speed = estimate.tokens_per_s(shape, config.hardware.tflops, config.hardware.compute_capability,
                                  t.gradient_checkpointing, TOKENS_PER_ROW, config.model.dtype)
    hours = FINETOME_ROWS * TOKENS_PER_ROW / speed / 3600
    now = trained({"micro_batch_size": t.micro_batch_size, "max_seq_length": config.model.max_seq_length,
                   "gradient_checkpointing": t.gradient_checkpointing})
    runs = peaks.get((model, config.model.dtype, now), {})
    measured_for = card if card in runs else next(iter(runs), card)  # the card's own run, else another's
    seen = ""
    if runs:
        gb, alone = runs[measured_for]
        said = ([f"as {measured_for}"] if measured_for != card else []) + (["text model alone"] if alone else [])
        seen = f"{gb:.2f}" + (f" ({', '.join(said)})" if said else "")
    ran = ""
    if speeds.get((card, model), (0, 0, ()))[2][:3] == now:
        fitted, notebook, (*_, packed) = speeds[(card, model)]
        epoch = FINETOME_ROWS * TOKENS_PER_ROW / fitted / 3600
        off = round(speed / fitted - 1, 2) + 0  # + 0: a rounded -0.0 prints as +0%
        ran = (f"{fitted:,.0f} tok/s, {epoch:.1f} h an epoch ({speed:,.0f} told, {off:+.0%}); notebook "
               + (f"{notebook:,.0f} ({fitted / notebook:.2f}x)" if notebook else "not measured"))
        if packed != t.packing:  # the fit has stopped packing the family's rows since (choose.UNPACKED)
            ran = f"packed rows then: {ran}"
    return (f"| {card} | {short} | {settings} | {peak:.1f} of {budget(config).gb:g} | "
            f"{seen} | {hours:.1f} h | {ran} |")


def table() -> str:
    peaks, speeds = measured(), emulated()
    lines = ["| card | model | fitted: micro-batch x tokens, accumulation, checkpointing | predicted peak GB | "
             "measured peak GB | estimated FineTome epoch | "
             "emulated card: fitted settings (its epoch), against the notebook |",
             "|---|---|---|---|---|---|---|"]
    lines += [row(card, model, peaks, speeds) for card in CARDS for model in MODELS]
    return "\n".join(lines)


def page_with_table(page: str) -> str:
    return with_block(page, START, END, table())


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page_with_table(PAGE.read_text()))
    else:
        print(table())
