"""`python -m trainer bench`: train each configuration for a few steps in its own process and record it.

The configurations are the tuned profile, the Unsloth notebook's recipe and plain transformers + PEFT at its best
settings (plus any `--config NAME:KEY=VALUE,...`); with `--method dpo|orpo`, the profile's preference settings and the
recipe of Unsloth's DPO and ORPO notebooks, on generated pairs. Each record is the run's own benchmark.json with the
session's facts added, appended to benchmarks/results/<gpu>.jsonl as soon as it exists. With `--emulate CARD` every
configuration runs on a card-sized share of the GPU (trainer/bench/emulate.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import system
from trainer.bench import emulate, report
from trainer.bench.cards import CARDS, mfu
from trainer.config import Config
from trainer.console import console
from trainer.errors import UserError
from trainer.runs import RunDir

# The Unsloth Llama 3.2 notebook as people copy it: batch 2 x accumulation 4, no packing, Unsloth's defaults.
NOTEBOOK = ("engine=unsloth", "micro_batch_size=2", "grad_accum_steps=4", "packing=false", "padding_free=auto",
            "group_by_length=false", "pad_to_multiple_of=0", "cudnn_attention=true", "gradient_checkpointing=unsloth",
            "max_tokens_per_pass=0", "load_in_4bit=true")
# Plain transformers + PEFT + bitsandbytes QLoRA at its best settings: the fastest of those measured on the H100 under
# an 8 GB cap (benchmarks/RESULTS.md): packed rows, PEFT's gradient checkpointing, TRL's chunked loss so the
# 128k-vocabulary logits fit, no cuDNN attention. Grouped batches of 4 x 2 ran 25% slower; of 8, out of memory.
TRANSFORMERS = ("engine=transformers", "packing=true", "padding_free=auto", "micro_batch_size=2", "grad_accum_steps=1",
                "cudnn_attention=false", "gradient_checkpointing=on", "loss_type=chunked_nll", "max_tokens_per_pass=0",
                "load_in_4bit=true")
# bench --method dpo|orpo. Unsloth's DPO notebook (Zephyr 7B, DPOTrainer after PatchDPOTrainer) and its ORPO notebook
# (Llama 3 8B) train batch 2 x accumulation 4 of pairs cut to 1,024 tokens, with Unsloth's gradient checkpointing,
# beta 0.1 (and the DPO notebook learning rate 5e-6). Their LoRA (r 64 for DPO) is not copied: the adapter of the SFT
# run it starts from fixes it, and it changes speed little. Their max_prompt_length of 512 is gone from TRL 1.14.
PREFERENCE_NOTEBOOK = ("engine=unsloth", "micro_batch_size=2", "grad_accum_steps=4", "max_seq_length=1024",
                       "packing=false", "padding_free=auto", "group_by_length=false", "pad_to_multiple_of=0",
                       "cudnn_attention=true", "gradient_checkpointing=unsloth", "max_tokens_per_pass=0",
                       "load_in_4bit=true", "learning_rate=5e-6", "beta=0.1")
# Plain transformers + PEFT on the profile's [preference] settings, with PEFT's gradient checkpointing.
PREFERENCE_TRANSFORMERS = ("engine=transformers", "gradient_checkpointing=on", "cudnn_attention=false",
                           "load_in_4bit=true")
CONFIGS: dict[str, dict[str, tuple[str, ...]]] = {
    "sft": {"tuned": (), "notebook": NOTEBOOK, "transformers": TRANSFORMERS},
    "preference": {"tuned": (), "notebook": PREFERENCE_NOTEBOOK, "transformers": PREFERENCE_TRANSFORMERS},
}
DATA = {"sft": "finetome-like", "preference": "pairs-like"}  # what each method is measured on by default


def kind(method: str) -> str:
    """sft, or preference (dpo, orpo): which built-in configurations and data a method is measured with."""
    return "sft" if method == "sft" else "preference"


def configurations(engines: str | None, custom: list[str], emulated: bool = False) -> list[str]:
    """--engines unsloth,transformers picks the built-in configurations; --config NAME:SETTINGS adds one."""
    if engines is None:
        engines = "" if custom else "unsloth,transformers"
    names = [e.strip() for e in engines.split(",") if e.strip()]
    unknown = set(names) - {"unsloth", "transformers"}
    if unknown:
        raise UserError(f"--engines {engines}: unknown engine {', '.join(sorted(unknown))}",
                        "Use --engines unsloth,transformers (or one of them).")
    if "unsloth" in names and not emulated:  # an emulated session measures the GPU in its own processes
        from trainer.system import detect_gpu

        if detect_gpu() is None:
            raise UserError("the unsloth configurations (tuned, notebook) need an NVIDIA GPU; none was detected",
                            "On the CPU use --engines transformers, or --config NAME:key=value,...")
    return (["tuned", "notebook"] if "unsloth" in names else []) + (
        ["transformers"] if "transformers" in names else []) + custom


@dataclass(frozen=True)
class Plan:
    """A benchmark session as the child processes are started with: the profile, the --set list (the card's added),
    the model, and what each configuration adds, besides the steps, the data and the card."""

    profile: str
    settings: tuple[str, ...]
    model: str | None
    configs: tuple[tuple[str, tuple[str, ...]], ...]  # (name, its settings)
    steps: int
    data: str
    card: str | None = None
    gpus: int | None = None
    platform: str = "linux"
    results: Path = report.RESULTS
    method: str = "sft"

    def settings_of(self, extra: tuple[str, ...]) -> list[str]:
        """The --set list of one configuration (what the CLI resolves to check it before any training)."""
        return [*self.settings, *extra]


def plan(profile: str, settings: list[str], model: str | None, configs: list[str], steps: int, data: str | None,
         card: str | None = None, gpus: int | None = None, platform: str = "linux",
         results: Path = report.RESULTS, method: str = "sft") -> Plan:
    """The session, checked: steps, card, GPUs and configuration names. With `card`, on that card's share of the GPU,
    its usable memory, its dtype and the attention kernels PyTorch has on it on `platform`. With `gpus`, each
    configuration also on that many GPUs (one process each, trainer/distributed/), right after it ran on one.
    With `method` dpo or orpo, every configuration trains that (the profile's [preference] settings under its own),
    on `data` or generated pairs, against the Unsloth preference notebooks' recipe."""
    if not configs:
        raise UserError("no configuration to benchmark", "Use --engines unsloth,transformers or --config NAME:...")
    if steps < 2:
        raise UserError(f"--steps {steps} is too few to measure speed", "Use --steps 10 or more (default 30).")
    if card is not None and card not in CARDS:
        raise UserError(f"--emulate {card}: no such card", f"Use one of {', '.join(CARDS)}.")
    if card is not None:
        settings = [*settings, f"vram_cap_gb={CARDS[card].usable_gb:g}", f"dtype={CARDS[card].dtype}",
                    f"sdpa_backends={','.join(CARDS[card].sdpa_backends[platform])}"]
        profile = CARDS[card].profile if profile == "auto" else profile
    if gpus is not None:
        from trainer.distributed import launch

        if gpus < 2:
            raise UserError(f"--gpus {gpus}: bench compares each configuration on 1 GPU and on N",
                            "Use --gpus 2 or more.")
        launch.processes_per_machine(str(gpus))  # no GPU, too few, or taken: said now, before any training
    if method != "sft":
        settings = [*settings, f"method={method}"]
    chosen = tuple(parse_config(text, method) for text in configs)
    return Plan(profile, tuple(settings), model, chosen, steps, data or DATA[kind(method)], card, gpus, platform,
                results, method)


def run(plan: Plan, base: Config, reason: str) -> list[dict[str, Any]]:
    """Train each configuration of `plan` for its steps in its own process, one after the other; record and compare.
    `base` is the profile resolved with the session's settings (by the CLI, with each configuration's, before)."""
    card, platform, steps, data, gpus, chosen = plan.card, plan.platform, plan.steps, plan.data, plan.gpus, plan.configs
    records = []
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as work:
        with emulate.card_slice(card, Path(work), platform) if card else nullcontext() as confined:
            env = confined.environment if confined else system.environment()
            session: dict[str, Any] = {**env, "session": env["date"]}
            if confined:
                session["emulation"] = confined.facts
            where = f"an emulated {CARDS[card].name} ({platform})" if card else env.get("gpu") or "the CPU"
            trains = "" if plan.method == "sft" else f"{plan.method.upper()} "
            console.print(f"{trains}Benchmark of profile [bold]{base.profile}[/] ({reason}) on {where}: "
                          f"{', '.join(name for name, _ in chosen)}; {steps} steps each on {data}")
            path = plan.results / f"{slug(env.get('gpu') or 'cpu')}.jsonl"
            for name, extra in chosen:
                for processes in (None, gpus) if gpus else (None,):
                    records.append(run_one(plan, name, extra, Path(work), session, confined.env if confined else {},
                                           processes))
                    plan.results.mkdir(parents=True, exist_ok=True)
                    with path.open("a", encoding="utf-8") as f:  # each record as soon as it exists
                        f.write(json.dumps(records[-1]) + "\n")
    console.print(report.comparison_table(records))
    if gpus:
        console.print(report.scaling_table(records))
    console.print(f"Recorded in {path}; `python -m trainer bench --report` renders all records.")
    return records


def parse_config(text: str, method: str = "sft") -> tuple[str, tuple[str, ...]]:
    """"tuned", "notebook", "transformers" (the built-in ones for `method`), or "NAME:key=value,key=value" (the
    profile with those settings)."""
    name, _, spec = text.partition(":")
    builtin = CONFIGS[kind(method)]
    if not spec:
        if name not in builtin:
            raise UserError(f"unknown benchmark configuration '{text}'",
                            f"Use {', '.join(builtin)} or NAME:key=value,key=value.")
        return name, builtin[name]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"benchmark configuration name '{name}' must be letters, digits, '.', '_' or '-'",
                        "e.g. --config 'big-batch:micro_batch_size=8,grad_accum_steps=1'")
    return name, tuple(s.strip() for s in spec.split(",") if s.strip())


def run_one(plan: Plan, name: str, extra: tuple[str, ...], work: Path, session: dict[str, Any], env: dict[str, str],
            gpus: int | None = None) -> dict[str, Any]:
    """One configuration trained by the real CLI in a child process; its record (or why it failed)."""
    steps, data = plan.steps, plan.data
    options = [*plan.settings, "eval_size=0", f"save_every_steps={steps + 1000}", *extra]
    base, name = name, f"{name}-{gpus}gpus" if gpus else name
    folder = work / name
    command = [sys.executable, "-m", "trainer", "train", "--profile", plan.profile, "--dataset", data,
               "--max-steps", str(steps), "--run-dir", str(folder / "run")]
    if plan.model:
        command += ["--model", plan.model]
    for option in options:
        command += ["--set", option]
    if gpus:
        command += ["--gpus", str(gpus)]
    console.print(f"[bold]{name}[/]: {' '.join(extra) or 'the profile as is'}" + (f" on {gpus} GPUs" if gpus else ""))
    folder.mkdir(parents=True)
    log = folder / "train.log"
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}).returncode
    run = RunDir(folder / "run")
    record: dict[str, Any] = {**session, "config": name, "base_config": base, "options": list(extra),
                              "wall_s": round(time.perf_counter() - started, 1), "steps_asked": steps, "data": data}
    if code != 0 or not run.benchmark.exists():
        tail = log.read_text(errors="replace")[-2000:]
        console.print(f"[red]{name} failed (exit {code})[/]; the end of its log:\n{tail}")
        return {**record, "failed": f"exit code {code}", "log_tail": tail}
    measured = json.loads(run.benchmark.read_text())  # the run's own benchmark.json (speed.write_run_benchmark)
    result = {**measured, **record, "date": measured["date"]}
    utilization = mfu(result)
    if utilization is not None:
        result["numbers"]["mfu"] = round(utilization, 3)
    console.print(f"{name}: {said(result['numbers'])} ({record['wall_s']:.0f} s)")
    return result


def said(numbers: dict[str, Any]) -> str:
    """A configuration's result in one line, as it ends (the table comes after the last; a session stopped before
    then has these): "1,578 real tokens/s, 11.97 steps/min, MFU 43%, peak 3.96 GB"."""
    if "tokens_per_s" not in numbers:
        return f"{numbers.get('steps', 0)} steps, too few to measure"
    mfu_said = f", MFU {numbers['mfu']:.0%}" if "mfu" in numbers else ""
    return (f"{numbers['tokens_per_s']:,.0f} real tokens/s, {numbers['steps_per_min']} steps/min{mfu_said}, peak "
            f"{numbers['peak_memory_gb']:.2f} GB")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()
