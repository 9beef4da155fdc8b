"""benchmarks/RESULTS.md and the table `bench` prints: the records of each session side by side, with ratios."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.bench.cards import CARDS, ESTIMATE, against_users, card_estimate, mfu
from trainer.data.synthetic import TOKENS_PER_ROW
from trainer.errors import UserError
from trainer.runs import write_atomic
from trainer.runs.speed import LLAMA_32_SHAPES
from trainer.system import PACKAGES

RESULTS = Path("benchmarks/results")  # relative to the repository root; the CLI passes config.records_dir()
REPORT = Path("benchmarks/RESULTS.md")
HEADER = ["config", "engine", "real tok/s", "x notebook", "x transformers", "steps/min", "samples/s",
          "peak reserved GB", "first step s", "GPU busy", "FineTome epoch h"]
EMULATED = ["config", "engine", "slice real tok/s", "x notebook", "x transformers", "MFU", "card tok/s (estimate)",
            "card epoch h (estimate)", "steps/min", "peak reserved GB", "first step s", "GPU busy"]


def comparison_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    emulated = any(r.get("emulation") for r in records)
    table = Table(title="ratios against the notebook recipe and the fastest plain transformers, same session")
    for column in EMULATED if emulated else HEADER:
        table.add_column(column)
    for row in report_rows(records):
        table.add_row(*row)
    return table


def report_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """One row per configuration of one benchmark session."""
    notebook = next((r["numbers"].get("tokens_per_s") for r in records if r["config"] == "notebook"
                     and "numbers" in r), None)
    plain = [r["numbers"]["tokens_per_s"] for r in records if r.get("engine") == "transformers"
             and r.get("world_size", 1) == 1 and "tokens_per_s" in r.get("numbers", {})]
    best_plain = max(plain, default=None)  # the fastest plain transformers configuration of the session
    emulated = any(r.get("emulation") for r in records)
    width = len(EMULATED if emulated else HEADER)
    rows = []
    for r in records:
        n = r.get("numbers", {})
        if "tokens_per_s" not in n:
            rows.append([r["config"], r.get("engine") or engine_of(r), failure(r)] + [""] * (width - 3))
            continue
        speed = [r["config"], r["engine"], f"{n['tokens_per_s']:,.0f}", ratio(n["tokens_per_s"], notebook),
                 ratio(n["tokens_per_s"], best_plain)]
        common = [f"{n['steps_per_min']:g}", fmt(n.get("peak_reserved_gb", n["peak_memory_gb"])),
                  fmt(n.get("time_to_first_step_s")), fmt(n.get("gpu_busy"))]
        if emulated:
            utilization, estimate = mfu(r), card_estimate(r) or {}
            rows.append(speed + ["-" if utilization is None else f"{utilization:.0%}",
                                 f"{estimate['tokens_per_s']:,.0f}" if estimate else "-",
                                 fmt(estimate.get("finetome_epoch_h"))] + common)
        else:
            rows.append(speed[:5] + [f"{n['steps_per_min']:g}", fmt(n.get("samples_per_s"))] + common[1:]
                        + [fmt(n.get("finetome_epoch_h") if r.get("method", "sft") == "sft" else None)])
    return rows


SCALING = ["config", "GPUs", "real tok/s (all GPUs)", "x 1 GPU", "per GPU", "peak reserved GB (rank 0)"]


def scaling_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="several GPUs against one, same configuration and session")
    for column in SCALING:
        table.add_column(column)
    for row in scaling_rows(records):
        table.add_row(*row)
    return table


def scaling_rows(records: list[dict[str, Any]]) -> list[list[str]]:
    """Each configuration measured on several GPUs (bench --gpus) against itself on one."""
    single = {r["config"]: r["numbers"]["tokens_per_s"] for r in records
              if r.get("world_size", 1) == 1 and "tokens_per_s" in r.get("numbers", {})}
    rows = []
    for r in records:
        size, n = r.get("world_size", 1), r.get("numbers", {})
        if size > 1 and "tokens_per_s" in n and r.get("base_config") in single:
            speedup = n["tokens_per_s"] / single[r["base_config"]]
            rows.append([r["base_config"], str(size), f"{n['tokens_per_s']:,.0f}", f"{speedup:.2f}x",
                         f"{speedup / size:.0%}", fmt(n.get("peak_reserved_gb", n.get("peak_memory_gb")))])
    return rows


def engine_of(record: dict[str, Any]) -> str:
    """The engine a configuration asked for (a failed one recorded no run)."""
    return next((o.split("=", 1)[1] for o in record.get("options") or [] if o.startswith("engine=")), "?")


def failure(record: dict[str, Any]) -> str:
    """Why a configuration has no numbers: its exit and the CLI's own error ("out of GPU memory"), or too few steps."""
    if "failed" not in record:
        return "too few steps"
    error = next((line[len("error: "):] for line in record.get("log_tail", "").splitlines()
                  if line.startswith("error: ")), None)
    if not error:
        return record["failed"]
    error = error.split(": ")[0]
    return f"{record['failed']}: {error if len(error) <= 70 else error[:69] + '…'}"


def ratio(value: float, reference: float | None) -> str:
    return f"{value / reference:.2f}x" if reference else "-"


def fmt(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


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
    """benchmarks/RESULTS.md: the emulated cards first (what profiles are chosen on), then each GPU's own sessions."""
    records = read_records(results)
    lines = ["# Benchmark results", "",
             "Generated by `python -m trainer bench --report` from `benchmarks/results/*.jsonl`; do not edit by hand.",
             "Real tokens are non-padding tokens. Ratios compare configurations measured in the same session. "
             "`first step s` is from process start to the end of the first optimizer step (import, load, 4-bit "
             "quantization, data, first step). FineTome epoch: 100,000 rows x "
             f"{TOKENS_PER_ROW} tokens (finetome-like, see trainer/data/synthetic.py) at the speed shown.", ""]
    sessions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        emulation = r.get("emulation")
        where = f"{emulation['card_name']}, emulated" if emulation else r.get("gpu") or "CPU"
        sessions.setdefault((where, r.get("session", r.get("date", "?"))), []).append(r)
    emulated_first = sorted({where for where, _ in sessions}, key=lambda w: (not w.endswith("emulated"), w))
    for where in emulated_first:
        lines += [f"## {where}", ""]
        for (w, session), rows in sorted(sessions.items(), key=lambda item: item[0][1], reverse=True):
            if w == where:
                lines += session_section(session, rows)
    lines += ["## How the emulated numbers are made", "", ESTIMATE, "",
              "Card specifications: " + "; ".join(f"{c.name}: {c.tflops:g} TFLOPS, {c.bandwidth_gbs:g} GB/s, "
                                                  f"{c.usable_gb:g} of {c.memory_gb} GB for training, {c.dtype}"
                                                  for c in CARDS.values()) + ".", ""]
    return "\n".join(lines)


# A configuration without options trained with the profile's settings (fitted to the model): those that decide speed.
AS_IS = ("micro_batch_size", "grad_accum_steps", "max_seq_length", "packing", "pad_to_multiple_of",
         "gradient_checkpointing")


def session_section(session: str, rows: list[dict[str, Any]]) -> list[str]:
    first = rows[0]
    method = first.get("method", "sft")
    trains = "" if method == "sft" else f"{method.upper()}, "
    lines = [f"### {session[:16].replace('T', ' ')} UTC: {trains}profile {first.get('profile', '?')}, "
             f"{model_text(first)}{first.get('data', '?')}, {first.get('steps_asked', '?')} steps, "
             f"{cap_text(first)}", ""]
    emulation = first.get("emulation")
    if emulation:
        lines += [slice_text(first), ""]
    lines += [f"Versions: {versions_text(first)}", ""]
    lines += markdown_table(EMULATED if emulation else HEADER, report_rows(rows))
    users = against_users(rows) if emulation else None
    if users:
        lines += ["", users]
    if scaling_rows(rows):
        lines += ["", "Several GPUs (`bench --gpus`, real tokens summed over the GPUs):", ""]
        lines += markdown_table(SCALING, scaling_rows(rows))
    lines += ["", "Settings:", ""]
    lines += [f"- `{r['config']}`: {', '.join(r.get('options') or [as_is(r)])}"
              + (f". {r['note']}" if r.get("note") else "") for r in rows]
    return lines + [""]


def as_is(record: dict[str, Any]) -> str:
    """"the profile as is (micro_batch_size=2, ..., packing=true)": what the profile and its fit trained with."""
    shown = [f"{key}={str(record[key]).lower() if isinstance(record[key], bool) else record[key]}"
             for key in AS_IS if key in record]
    return f"the profile as is ({', '.join(shown)})" if shown else "the profile as is"


def model_text(record: dict[str, Any]) -> str:
    """"model llama-3.1-8B-random, " where the session trained another model than its profile's own."""
    model = record.get("model") or ""
    card = CARDS.get(record.get("profile", ""))
    if not model or not record.get("shape") or (card and record["shape"] == LLAMA_32_SHAPES.get(card.users_model)):
        return ""
    return f"model {model.rstrip('/').rsplit('/', 1)[-1]}, "


def slice_text(record: dict[str, Any]) -> str:
    e = record["emulation"]
    if not e["confined"]:
        where = f"the whole {record.get('gpu')} (not confined: {e['how']})"
    else:
        where = (f"{e['sms']} SMs of {record.get('gpu')} (MPS share {e['mps_share_percent']}%, device memory limit "
                 f"{e['device_memory_limit_gb']} GB)")
    kernels = (f" Attention kernels (torch SDPA) as PyTorch has them on the card on {e.get('platform', 'linux')}: "
               f"{', '.join(e['sdpa_backends'])}." if e.get("sdpa_backends") else
               " Attention kernels: the big GPU's own (this session predates emulating the card's).")
    return (f"Emulated {e['card_name']} on {where}: the slice measured {e['slice_matmul_tflops']:g} TFLOPS "
            f"{e['dtype']} matmul and {e['slice_copy_gbs']:g} GB/s; the card has {e['card_tflops']:g} TFLOPS and "
            f"{e['card_gbs']:g} GB/s.{kernels}")


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
    text = report(results)
    try:
        write_atomic(output, text)
    except OSError as e:
        raise UserError(f"cannot write {output} ({e.strerror or e})",
                        "Give --output a file in a folder that exists and that you can write to.") from None
    return output
