"""The benchmark: how fast a configuration trains, on this GPU and projected onto the profiles' cards.

Every training run writes `benchmark.json` (steps/min, real tokens/s, samples/s, time to first step, peak VRAM,
GPU-busy fraction, projected FineTome-100k epoch). `python -m trainer bench` runs short training segments of several
configurations in one go (the tuned profile, the Unsloth notebook's recipe, plain transformers + PEFT at its best
settings), appends one record per configuration to benchmarks/results/<gpu>.jsonl, and `bench --report` renders
those records as benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer import doctor
from trainer.config import Config, resolve
from trainer.console import console
from trainer.data.synthetic import FINETOME_ROWS, TOKENS_PER_ROW
from trainer.errors import UserError
from trainer.runs import RunDir, write_atomic

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "bitsandbytes", "unsloth",
            "unsloth_zoo", "xformers", "triton")
RESULTS = Path(os.environ.get("TRAINER_RECORDS_DIR", "benchmarks/results"))  # relative to the repository root
REPORT = Path("benchmarks/RESULTS.md")

# The Unsloth Llama 3.2 notebook as people copy it: batch 2 x accumulation 4, no packing, Unsloth's defaults.
NOTEBOOK = ("engine=unsloth", "micro_batch_size=2", "grad_accum_steps=4", "packing=false", "padding_free=auto",
            "group_by_length=false", "pad_to_multiple_of=0", "cudnn_attention=true", "gradient_checkpointing=unsloth")
# Plain transformers + PEFT + bitsandbytes QLoRA at its best settings: the fastest of those measured on the H100 under
# an 8 GB cap (benchmarks/RESULTS.md): packed rows, PEFT's gradient checkpointing, TRL's chunked loss so the
# 128k-vocabulary logits fit, no cuDNN attention. Grouped batches of 4 x 2 ran 25% slower; of 8, out of memory.
TRANSFORMERS = ("engine=transformers", "packing=true", "micro_batch_size=2", "grad_accum_steps=1",
                "cudnn_attention=false", "gradient_checkpointing=on", "loss_type=chunked_nll")
CONFIGS: dict[str, tuple[str, ...]] = {"tuned": (), "notebook": NOTEBOOK, "transformers": TRANSFORMERS}


# --- one run's numbers ---------------------------------------------------------------------------------------------

def summarize(run: RunDir, skip_steps: int | None = None) -> dict[str, Any]:
    """Speed from the last record within the warm-up steps (cuDNN plans, allocator growth, compilation: the first 20%
    of the steps, 1 to 5) to the last record; memory and time to first step over all of them. Records need not be
    one per step (train.log_every_s)."""
    steps = [m for m in run.read_metrics() if "loss" in m]
    if not steps:
        return {"steps": 0}
    skip = skip_steps if skip_steps is not None else min(5, max(1, steps[-1]["step"] // 5))
    warm = [m for m in steps if m["step"] <= skip]
    if not warm or warm[-1] is steps[-1]:
        return {"steps": steps[-1]["step"]}
    first, last = warm[-1], steps[-1]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    tokens_per_s = (last["tokens"] - first["tokens"]) / seconds
    summary: dict[str, Any] = {
        "steps": last["step"],
        "steps_per_min": round((last["step"] - first["step"]) / seconds * 60, 2),
        "tokens_per_s": round(tokens_per_s, 1),
        "peak_memory_gb": max(m["memory_gb"] for m in steps),
        "first_loss": steps[0]["loss"],
        "last_loss": last["loss"],
        "finetome_epoch_h": round(FINETOME_ROWS * TOKENS_PER_ROW / tokens_per_s / 3600, 2),
    }
    if "memory_reserved_gb" in last:
        summary["peak_reserved_gb"] = max(m["memory_reserved_gb"] for m in steps)
    data = json.loads(run.data_stats.read_text()) if run.data_stats.exists() else {}
    if data.get("tokens_mean"):
        summary["samples_per_s"] = round(tokens_per_s / data["tokens_mean"], 2)
    if "since_process_start_s" in steps[0]:
        summary["time_to_first_step_s"] = steps[0]["since_process_start_s"]
        summary["startup_s"] = steps[0].get("startup_s", {})  # when each start-up stage ended
    busy = [m["gpu_busy"] for m in steps if m["step"] > first["step"] and m.get("gpu_busy") is not None]
    if busy:
        summary["gpu_busy"] = round(statistics.mean(busy), 3)
    return summary


def write_run_benchmark(run: RunDir, config: Config, engine: str) -> dict[str, Any]:
    """The run's own benchmark.json: its numbers, the environment, the settings and the engine that ran, and (on a
    GPU) projections for the cards. `bench` records it as it is, with the session's facts added."""
    summary = summarize(run)
    record = {**environment(), **settings_of(config), "engine": engine, "numbers": summary}
    if record.get("gpu") and "tokens_per_s" in summary:
        record["projections"] = projections(record)
    write_atomic(run.benchmark, json.dumps(record, indent=2) + "\n")
    return summary


def settings_of(config: Config) -> dict[str, Any]:
    train = config.train
    return {
        "profile": config.profile, "model": config.model.name, "shape": model_shape(config),
        "dtype": config.model.dtype, "engine": config.engine, "micro_batch_size": train.micro_batch_size,
        "grad_accum_steps": train.grad_accum_steps,
        "max_seq_length": config.model.max_seq_length, "packing": train.packing, "padding_free": train.padding_free,
        "group_by_length": train.group_by_length, "pad_to_multiple_of": train.pad_to_multiple_of,
        "cudnn_attention": train.cudnn_attention, "gradient_checkpointing": train.gradient_checkpointing,
        "max_tokens_per_pass": train.max_tokens_per_pass,
        "vram_cap_gb": config.run.vram_cap_gb, "dataset": config.data.dataset,
    }


# --- projection onto consumer cards ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Card:
    name: str
    tflops: float  # dense fp16/bf16 tensor TFLOPS with fp32 accumulation (what torch's matmuls use)
    bandwidth_gbs: float


# Published specifications. GeForce cards run fp32-accumulate tensor math at half their fp16-accumulate rate:
# RTX 3070 (GA104): 81.3 / 40.6 TFLOPS (Ampere GA10x whitepaper); RTX 2060 Super (TU106, 34 SMs, 1650 MHz boost):
# 57.4 / 28.7; Quadro RTX 5000 (TU104, 48 SMs, 1815 MHz): 89.2 at full rate. All three have 448 GB/s of GDDR6.
CARDS = {
    "rtx2060s": Card("RTX 2060 Super 8 GB", 28.7, 448.0),
    "rtx3070": Card("RTX 3070 8 GB", 40.6, 448.0),
    "quadro-rtx5000": Card("Quadro RTX 5000 16 GB", 89.2, 448.0),
}
# The projection's assumptions, printed with every projection:
EFFICIENCY = 0.5  # the share of peak tensor throughput the step's matmuls reach on the card
BYTES_PER_PARAM_PASS = 4.5  # 4-bit weight read (0.5) + 16-bit dequantized copy written and read (2 + 2)
MODEL = (
    "card step time = max(H100 step time, GPU work on the card); GPU work = micro-batches (times their "
    "max_tokens_per_pass splits) x passes x weight bytes / bandwidth + tokens x FLOPs per token / "
    f"({EFFICIENCY:.0%} of peak tensor TFLOPS). FLOPs per token: "
    "2 x parameters (+ causal attention) per pass; 3 passes with gradient checkpointing (forward, recompute, "
    "backward to activations: LoRA leaves the 4-bit weights without gradients), 2 without. The H100 step time is "
    "a floor because the same software issues the same kernel launches from the CPU. Evaluation is left out (bench "
    "runs have none); `train` prints its share of the GPU work at the start."
)

LLAMA_32_SHAPES = {  # used when the model folder is not on this machine (a Hub id)
    "1B": {"vocab": 128256, "hidden": 2048, "layers": 16, "intermediate": 8192, "heads": 32, "kv_heads": 8,
           "head_dim": 64},
    "3B": {"vocab": 128256, "hidden": 3072, "layers": 28, "intermediate": 8192, "heads": 24, "kv_heads": 8,
           "head_dim": 128},
}


def model_shape(config: Config) -> dict[str, int] | None:
    """The transformer's dimensions, from the model folder's config.json, else from a Llama 3.2 name."""
    path = Path(config.model.name) / "config.json"
    if path.is_file():
        c = json.loads(path.read_text())
        heads = c.get("num_attention_heads")
        if not heads:
            return None
        return {"vocab": c["vocab_size"], "hidden": c["hidden_size"], "layers": c["num_hidden_layers"],
                "intermediate": c["intermediate_size"], "heads": heads,
                "kv_heads": c.get("num_key_value_heads", heads),
                "head_dim": c.get("head_dim") or c["hidden_size"] // heads}
    for size, shape in LLAMA_32_SHAPES.items():
        if f"-{size}" in config.model.name:
            return dict(shape)
    return None


def parameters(shape: dict[str, int]) -> int:
    """Parameters in the matmuls a token goes through (layers and the LM head; the embedding is a lookup)."""
    h, q, kv = shape["hidden"], shape["heads"] * shape["head_dim"], shape["kv_heads"] * shape["head_dim"]
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * shape["intermediate"]
    return shape["layers"] * per_layer + shape["vocab"] * h


def passes_per_token(gradient_checkpointing: str) -> int:
    """Forward-sized passes per trained token: forward and backward to the activations (LoRA leaves the 4-bit weights
    without gradients), and the forward again where gradient checkpointing recomputes it."""
    return 2 if gradient_checkpointing == "off" else 3


def flops_per_token(shape: dict[str, int], mean_tokens: float, passes: int) -> float:
    attention = 2 * 2 * (mean_tokens / 2) * shape["heads"] * shape["head_dim"] * shape["layers"]  # QK^T and AV
    return (2 * parameters(shape) + attention) * passes


def project(record: dict[str, Any], card: Card) -> dict[str, Any]:
    """Projected speed of `record`'s configuration on `card` (see MODEL)."""
    numbers, shape = record["numbers"], record["shape"]
    step_s = 60 / numbers["steps_per_min"]
    tokens_per_step = numbers["tokens_per_s"] * step_s
    passes = passes_per_token(record.get("gradient_checkpointing", "unsloth"))
    budget = record.get("max_tokens_per_pass") or 0  # a micro-batch over it runs as several passes
    splits = math.ceil(tokens_per_step / record["grad_accum_steps"] / budget) if budget else 1
    weight_bytes = record["grad_accum_steps"] * splits * passes * parameters(shape) * BYTES_PER_PARAM_PASS
    weights_s = weight_bytes / (card.bandwidth_gbs * 1e9)
    samples_per_s = numbers.get("samples_per_s")
    mean_tokens = numbers["tokens_per_s"] / samples_per_s if samples_per_s else TOKENS_PER_ROW
    compute_s = tokens_per_step * flops_per_token(shape, mean_tokens, passes) / (EFFICIENCY * card.tflops * 1e12)
    card_step_s = max(step_s, weights_s + compute_s)
    tokens_per_s = tokens_per_step / card_step_s
    return {"card": card.name, "steps_per_min": round(60 / card_step_s, 2), "tokens_per_s": round(tokens_per_s, 1),
            "finetome_epoch_h": round(FINETOME_ROWS * TOKENS_PER_ROW / tokens_per_s / 3600, 2),
            "bound": "GPU" if weights_s + compute_s > step_s else "CPU (as on the H100)"}


def projections(record: dict[str, Any]) -> dict[str, Any]:
    if not record.get("shape") or "tokens_per_s" not in record.get("numbers", {}):
        return {}
    return {profile: project(record, card) for profile, card in CARDS.items()}


# --- the bench command ----------------------------------------------------------------------------------------------

def configurations(engines: str | None, custom: list[str]) -> list[str]:
    """--engines unsloth,transformers picks the built-in configurations; --config NAME:SETTINGS adds one."""
    if engines is None:
        engines = "" if custom else "unsloth,transformers"
    names = [e.strip() for e in engines.split(",") if e.strip()]
    unknown = set(names) - {"unsloth", "transformers"}
    if unknown:
        raise UserError(f"--engines {engines}: unknown engine {', '.join(sorted(unknown))}",
                        "Use --engines unsloth,transformers (or one of them).")
    if "unsloth" in names:
        from trainer.profiles import detect_gpu

        if detect_gpu() is None:
            raise UserError("the unsloth configurations (tuned, notebook) need an NVIDIA GPU; none was detected",
                            "On the CPU use --engines transformers, or --config NAME:key=value,...")
    return (["tuned", "notebook"] if "unsloth" in names else []) + (
        ["transformers"] if "transformers" in names else []) + custom


def run(profile: str, settings: list[str], flags: dict[str, Any], configs: list[str], steps: int, data: str,
        results: Path = RESULTS) -> list[dict[str, Any]]:
    """Train each configuration for `steps` steps in its own process, one after the other; record and compare."""
    if not configs:
        raise UserError("no configuration to benchmark", "Use --engines unsloth,transformers or --config NAME:...")
    if steps < 2:
        raise UserError(f"--steps {steps} is too few to measure speed", "Use --steps 10 or more (default 30).")
    chosen = [parse_config(text) for text in configs]
    base, reason = resolve(profile, settings, flags)  # bad profiles and settings fail here, before any training
    for _, extra in chosen:
        resolve(profile, [*settings, *extra], flags)
    env = environment()
    session = env["date"]
    console.print(f"Benchmark of profile [bold]{base.profile}[/] ({reason}) on {env.get('gpu') or 'the CPU'}: "
                  f"{', '.join(name for name, _ in chosen)}; {steps} steps each on {data}")
    records = []
    path = results / f"{slug(env.get('gpu') or 'cpu')}.jsonl"
    with tempfile.TemporaryDirectory(prefix="trainer-bench-") as work:
        for name, extra in chosen:
            records.append(run_one(profile, settings, flags, name, extra, steps, data, Path(work) / name, session,
                                   env))
            results.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as f:  # each record as soon as it exists
                f.write(json.dumps(records[-1]) + "\n")
    console.print(comparison_table(records))
    console.print(f"Recorded in {path}; `python -m trainer bench --report` renders all records.")
    return records


def parse_config(text: str) -> tuple[str, tuple[str, ...]]:
    """"tuned", "notebook", "transformers", or "NAME:key=value,key=value" (the profile with those settings)."""
    name, _, spec = text.partition(":")
    if not spec:
        if name not in CONFIGS:
            raise UserError(f"unknown benchmark configuration '{text}'",
                            f"Use {', '.join(CONFIGS)} or NAME:key=value,key=value.")
        return name, CONFIGS[name]
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        raise UserError(f"benchmark configuration name '{name}' must be letters, digits, '.', '_' or '-'",
                        "e.g. --configs 'big-batch:micro_batch_size=8,grad_accum_steps=1'")
    return name, tuple(s.strip() for s in spec.split(",") if s.strip())


def run_one(profile: str, settings: list[str], flags: dict[str, Any], name: str, extra: tuple[str, ...], steps: int,
            data: str, folder: Path, session: str, env: dict[str, Any]) -> dict[str, Any]:
    options = [*settings, "eval_size=0", f"save_every_steps={steps + 1000}", *extra]
    command = [sys.executable, "-m", "trainer", "train", "--profile", profile, "--dataset", data,
               "--max-steps", str(steps), "--run-dir", str(folder / "run")]
    if flags.get("model.name"):
        command += ["--model", str(flags["model.name"])]
    for option in options:
        command += ["--set", option]
    console.print(f"[bold]{name}[/]: {' '.join(options) or 'the profile as is'}")
    folder.mkdir(parents=True)
    log = folder / "train.log"
    started = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
    run = RunDir(folder / "run")
    record: dict[str, Any] = {**env, "session": session, "config": name, "options": list(extra),
                              "wall_s": round(time.perf_counter() - started, 1), "steps_asked": steps, "data": data}
    if code != 0 or not run.benchmark.exists():
        tail = log.read_text(errors="replace")[-2000:]
        console.print(f"[red]{name} failed (exit {code})[/]; the end of its log:\n{tail}")
        return {**record, "failed": f"exit code {code}", "log_tail": tail}
    return {**json.loads(run.benchmark.read_text()), **record}  # the run's own benchmark.json (write_run_benchmark)


def comparison_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="ratios against the notebook recipe and the fastest plain transformers, same run")
    for column in ("config", "engine", "real tok/s", "x notebook", "x transformers", "steps/min", "samples/s",
                   "peak GB", "first step s", "GPU busy", "FineTome epoch h"):
        table.add_column(column)
    for row in report_rows(records):
        table.add_row(*row)
    return table


def report_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per configuration of one benchmark session."""
    notebook = next((r["numbers"].get("tokens_per_s") for r in records if r["config"] == "notebook"
                     and "numbers" in r), None)
    plain = [r["numbers"]["tokens_per_s"] for r in records
             if r.get("engine") == "transformers" and "tokens_per_s" in r.get("numbers", {})]
    best_plain = max(plain, default=None)  # the fastest plain transformers configuration of the session
    rows = []
    for r in records:
        n = r.get("numbers", {})
        if "tokens_per_s" not in n:
            rows.append([r["config"], r.get("engine", "?"), r.get("failed", "too few steps")] + [""] * 8)
            continue
        rows.append([
            r["config"], r["engine"], f"{n['tokens_per_s']:,.0f}", ratio(n["tokens_per_s"], notebook),
            ratio(n["tokens_per_s"], best_plain), f"{n['steps_per_min']:g}",
            _fmt(n.get("samples_per_s")), _fmt(n.get("peak_reserved_gb", n["peak_memory_gb"])),
            _fmt(n.get("time_to_first_step_s")), _fmt(n.get("gpu_busy")), _fmt(n.get("finetome_epoch_h")),
        ])
    return rows


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


# --- the report -----------------------------------------------------------------------------------------------------

def read_records(results: Path = RESULTS) -> list[dict[str, Any]]:
    records = []
    for path in sorted(results.glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path} line {number} is not valid JSON: {e.msg}",
                                "Remove or repair that line (each line is one benchmark record).") from None
    return records


def report(results: Path = RESULTS) -> str:
    """benchmarks/RESULTS.md: per GPU, each benchmark session's table, then the projections onto the cards."""
    records = read_records(results)
    lines = ["# Benchmark results", "",
             "Generated by `python -m trainer bench --report` from `benchmarks/results/*.jsonl`; do not edit by hand.",
             "Real tokens are non-padding tokens. Ratios compare configurations measured in the same session. "
             "`first step s` is from process start to the end of the first optimizer step (import, load, 4-bit "
             "quantization, data, first step). FineTome epoch: 100,000 rows x "
             f"{TOKENS_PER_ROW} tokens (finetome-like, see trainer/data/synthetic.py) at the measured speed.", ""]
    sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        sessions.setdefault((r.get("gpu") or "CPU", r.get("session", r.get("date", "?"))), []).append(r)
    header = ["config", "engine", "real tok/s", "x notebook", "x transformers", "steps/min", "samples/s",
              "peak reserved GB", "first step s", "GPU busy", "FineTome epoch h"]
    for gpu in sorted({gpu for gpu, _ in sessions}):
        lines += [f"## {gpu}", ""]
        for (g, session), rows in sorted(sessions.items(), key=lambda item: item[0][1], reverse=True):
            if g != gpu:
                continue
            first = rows[0]
            lines.append(f"### {session[:16].replace('T', ' ')} UTC: profile {first.get('profile', '?')}, "
                         f"{first.get('data', '?')}, {first.get('steps_asked', '?')} steps, "
                         f"{cap_text(first)}")
            lines.append("")
            lines.append(f"Versions: {versions_text(first)}")
            lines.append("")
            lines += markdown_table(header, report_rows(rows))
            lines.append("")
            lines += ["Settings:", ""]
            lines += [f"- `{r['config']}`: {', '.join(r.get('options') or ['the profile as is'])}"
                      + (f". {r['note']}" if r.get("note") else "") for r in rows]
            lines.append("")
            projected = [(r, p) for r in rows for p in [r.get("projections", {}).get(r.get("profile", ""))] if p]
            if projected:
                lines += ["Projected onto the profile's card (a model, not a measurement; see below):", ""]
                lines += markdown_table(
                    ["config", "card", "steps/min", "real tok/s", "FineTome epoch h", "bound by"],
                    [[r["config"], p["card"], f"{p['steps_per_min']:g}", f"{p['tokens_per_s']:,.0f}",
                      f"{p['finetome_epoch_h']:g}", p["bound"]] for r, p in projected])
                lines.append("")
    lines += ["## How projections are made", "", MODEL, ""]
    anchor = [r for r in records if r.get("config") == "notebook" and r.get("profile") == "rtx3070"
              and r.get("projections", {}).get("rtx3070")]
    if anchor:
        hours = anchor[-1]["projections"]["rtx3070"]["finetome_epoch_h"]
        lines += [f"Check against users: the notebook recipe projects to {hours:g} h per FineTome-100k epoch on an RTX "
                  "3070 (the latest such record); users of that notebook reported about 9 h.", ""]
    lines += [
              "Card specifications: " + "; ".join(f"{c.name}: {c.tflops:g} TFLOPS, {c.bandwidth_gbs:g} GB/s"
                                                  for c in CARDS.values()) + ".", ""]
    return "\n".join(lines)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def cap_text(record: dict[str, Any]) -> str:
    cap = record.get("vram_cap_gb")
    return f"{cap:g} GB cap, {record.get('dtype')}" if cap else f"no memory cap, {record.get('dtype')}"


def versions_text(record: dict[str, Any]) -> str:
    versions = record.get("versions", {})
    found = [f"{name} {versions[name]}" for name in PACKAGES if versions.get(name)]
    driver = f"; driver {record['driver']}" if record.get("driver") else ""
    return ", ".join(found) + driver


def write_report(results: Path = RESULTS, output: Path = REPORT) -> Path:
    write_atomic(output, report(results))
    return output


def since_process_start() -> float:
    """Seconds since this process started: at the first step, the user's wait for training to begin."""
    import psutil

    return round(time.time() - psutil.Process().create_time(), 2)


# --- environment ----------------------------------------------------------------------------------------------------

def environment() -> dict[str, Any]:
    """GPU, driver and library versions, for a record that says exactly what was measured."""
    import torch

    env: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "versions": {name: doctor.version_of(name) for name in PACKAGES},
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
        env["cuda"] = torch.version.cuda
        env["driver"] = (doctor.nvidia_driver() or {}).get("version")
    else:
        env["gpu"] = None
    return env


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower()
