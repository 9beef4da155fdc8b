"""Peak GPU memory of real training runs over model shapes x settings: the records a memory model is fitted to.

    python benchmarks/memory_sweep.py MODEL_DIR [MODEL_DIR ...] --out records.jsonl [--grid quick|full]
        [--point micro_batch_size=1,max_seq_length=1024,gradient_checkpointing=off ...] [--steps 3] [--parallel 4]
        [--cap-gb GB] [--mps-share PERCENT] [--budget-s S] [--timeout-s S] [--profile auto] [--set KEY=VALUE ...]

Each point is `python -m trainer train` (the real CLI: the unsloth engine on a CUDA GPU, transformers on the CPU) in
a child process, on worst-case rows (every row max_seq_length tokens, as tests/gpu/test_cards_gpu.py makes them) for
--steps steps, --parallel at a time. Every child is capped at --cap-gb (default: the GPU's memory shared out among
the --parallel children), so children never take each other's memory; what does not fit under it is a valid result
(out of memory, recorded). Where an MPS daemon answers (gpu_session.sh may start one; this script never does), each
child runs on CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=--mps-share of the SMs.

One JSON line per point in --out, written as it ends: the model's facts (its config.json; parameters by kind from its
safetensors headers), the settings the run resolved (its config.toml), the engine, peak allocated and reserved memory
and what the model and adapter held when training began (metrics.jsonl), tokens/s, the exit code and, on failure, the
CLI's error line. The children's output goes to OUT's folder, <out-stem>-logs/. A table goes to stdout. Bad
arguments: exit 2 with the reason.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
AXES = ("micro_batch_size", "max_seq_length", "gradient_checkpointing", "packing")
# full: every micro-batch x length x checkpointing, unpacked (worst-case rows are all full: unpacked, the batch is
# flattened by the engine's padding-free collator anyway), and packed rows where the engine's attention then runs per
# conversation. 22 points.
FULL = [dict(zip(AXES, (b, s, c, False), strict=True))
        for b, s, c in itertools.product((1, 2, 4), (1024, 2048), ("off", "on", "unsloth"))] + [
    dict(zip(AXES, (b, 2048, c, True), strict=True)) for b, c in itertools.product((2, 4), ("off", "unsloth"))]
# quick: tokens per pass 1,024 to 8,192 and each checkpointing mode, so each shape has a slope per mode. 4 points.
QUICK = [dict(zip(AXES, p, strict=True)) for p in ((1, 1024, "off", False), (2, 2048, "off", False),
                                                    (2, 2048, "unsloth", False), (4, 2048, "on", False))]
GRIDS = {"quick": QUICK, "full": FULL}
# Every point: one pass per micro-batch (no splitting, no accumulation), metrics every step, no eval, no checkpoint,
# no token cache shared by children that run at once.
FIXED = ("grad_accum_steps=1", "max_tokens_per_pass=0", "log_every_s=0", "eval_size=0", "cache_tokens=false")
# What a family needs to train at all: Phi-3's attention and MLP projections are fused.
FAMILY_SETTINGS = {"phi3": ("target_modules=qkv_proj,o_proj,gate_up_proj,down_proj",)}
RESOLVED = {  # config.toml's [section] key -> the record's settings
    "model": ("dtype", "load_in_4bit", "max_seq_length"),
    "lora": ("r", "target_modules"),
    "train": ("micro_batch_size", "grad_accum_steps", "gradient_checkpointing", "packing", "padding_free",
              "max_tokens_per_pass", "loss_type", "trained_positions_only", "group_by_length", "pad_to_multiple_of",
              "cudnn_attention", "optimizer"),
    "run": ("vram_cap_gb", "sdpa_backends"),
}

ENVIRONMENT = ("gpu", "gpu_memory_gb", "sms", "cuda", "driver", "python", "versions")  # benchmark.json's, as measured


class BadArguments(Exception):
    """What the user gave cannot run: exit 2 with this message."""


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="memory_sweep.py", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", type=Path, help="model folders (config.json, weights, tokenizer)")
    parser.add_argument("--out", type=Path, required=True, help="JSONL file the records are appended to")
    parser.add_argument("--grid", choices=GRIDS, default="full")
    parser.add_argument("--point", action="append", default=[], metavar="KEY=V,KEY=V",
                        help="an explicit point (replaces --grid); axes: " + ", ".join(AXES))
    parser.add_argument("--fitted", action="store_true", help="one point a model: the settings --profile fits to it "
                        "under --cap-gb (the card's budget), its predicted peak recorded beside the measured")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--cap-gb", type=float, default=None, help="each child's memory cap (vram_cap_gb)")
    parser.add_argument("--mps-share", type=int, default=None, help="CUDA_MPS_ACTIVE_THREAD_PERCENTAGE per child")
    parser.add_argument("--budget-s", type=float, default=0, help="start no point after this many seconds, and stop "
                        "the ones running then (recorded as timed out); 0: no budget")
    parser.add_argument("--timeout-s", type=float, default=900, help="one point's limit")
    parser.add_argument("--profile", default="auto")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting for every point (after the grid's)")
    return parser.parse_args(argv)


def points_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    if args.fitted:
        return [{}]  # the settings the profile's fit chooses for each model (trainer/fit/)
    if not args.point:
        return GRIDS[args.grid]
    points = []
    for spec in args.point:
        pairs = [part.partition("=") for part in spec.split(",") if "=" in part]
        point = {key: typed(value) for key, _, value in pairs}
        if set(point) - set(AXES) or len(point) != len(spec.split(",")):
            raise BadArguments(f"--point {spec}: give KEY=VALUE pairs of {', '.join(AXES)}")
        points.append(point)
    return points


def typed(value: str) -> Any:
    """A --point value as the grids write it: 2 -> int, true/false -> bool, else the text."""
    return int(value) if value.isdigit() else {"true": True, "false": False}.get(value.lower(), value)


def text(value: Any) -> str:
    """A value as --set takes it."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(args: argparse.Namespace) -> None:
    args.models = [model.resolve() for model in args.models]  # the children run in folders of their own
    for model in args.models:
        if not (model / "config.json").is_file():
            raise BadArguments(f"{model} is not a model folder (no config.json there)")
    if args.steps < 1 or args.parallel < 1:
        raise BadArguments("--steps and --parallel must be at least 1")
    for setting in args.settings:
        if "=" not in setting:
            raise BadArguments(f"--set {setting}: give KEY=VALUE")


# --- the model's facts ---------------------------------------------------------------------------------------------

def model_facts(folder: Path) -> dict[str, Any]:
    """The shape from config.json and the parameters by kind, counted from the safetensors headers."""
    c = json.loads((folder / "config.json").read_text())
    c = {**c, **c.get("text_config", {})}
    heads = c["num_attention_heads"]
    facts = {"folder": folder.name, "family": c.get("model_type"), "hidden": c["hidden_size"],
             "layers": c["num_hidden_layers"], "heads": heads, "kv_heads": c.get("num_key_value_heads") or heads,
             "head_dim": c.get("head_dim") or c["hidden_size"] // heads, "intermediate": c["intermediate_size"],
             "vocab": c["vocab_size"], "tied": bool(c.get("tie_word_embeddings", False)),
             "weights_dtype": c.get("dtype") or c.get("torch_dtype")}
    return {**facts, "parameters": parameters_by_kind(folder)}


def parameters_by_kind(folder: Path) -> dict[str, int]:
    counts = dict.fromkeys(("embeddings", "attention", "mlp", "norm", "lm_head", "other"), 0)
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as f:
            header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
        for name, tensor in header.items():
            if name != "__metadata__":
                counts[kind(name)] += math.prod(tensor["shape"])
    counts["total"] = sum(counts.values())
    return counts


def kind(name: str) -> str:
    if "norm" in name:  # before attention: q_norm/k_norm are norms
        return "norm"
    for part, what in (("embed_tokens", "embeddings"), ("lm_head", "lm_head"), ("self_attn", "attention"),
                       ("mlp", "mlp")):
        if part in name:
            return what
    return "other"


# --- one point ------------------------------------------------------------------------------------------------------

def worst_case_dataset(path: Path, rows: int, seed: int = 0) -> Path:
    """Conversations longer than any max_seq_length (synthetic.longest): every training row is cut to it."""
    from trainer.data import synthetic  # once main has put the checkout on sys.path

    path.write_text("".join(json.dumps(row) + "\n" for row in synthetic.longest(rows, seed)))
    return path


def command(args: argparse.Namespace, model: Path, family: str, point: dict[str, Any], data: Path,
            run_dir: Path) -> list[str]:
    settings = [f"{key}={text(value)}" for key, value in point.items()]
    settings += [*FIXED, f"save_every_steps={args.steps + 1000}", *FAMILY_SETTINGS.get(family, ())]
    if args.cap_gb:
        settings.append(f"vram_cap_gb={args.cap_gb:g}")
    cli = [sys.executable, "-m", "trainer", "train", "--profile", args.profile, "--model", str(model), "--dataset",
           str(data), "--max-steps", str(args.steps), "--run-dir", str(run_dir)]
    for setting in [*settings, *args.settings]:
        cli += ["--set", setting]
    return cli


def run_point(args: argparse.Namespace, model: Path, point: dict[str, Any], data: Path, work: Path, logs: Path,
              env: dict[str, str], deadline: float | None, facts: dict[str, Any]) -> dict[str, Any]:
    name = f"{model.name}-" + ("-".join(text(v) for v in point.values()) or f"fitted-{args.profile}")
    run_dir = work / name / "run"  # a runs root of its own: the CLI trains one run at a time per runs root
    cli = command(args, model, facts["family"], point, data, run_dir)
    run_dir.parent.mkdir(parents=True)
    limit = args.timeout_s if deadline is None else min(args.timeout_s, deadline - time.monotonic())
    started = time.monotonic()
    record: dict[str, Any] = {"point": name, "model": facts, "requested": point,
                              "extra_settings": list(args.settings), "steps": args.steps,
                              "mps_share_percent": int(env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"])
                              if "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" in env else None}
    if limit <= 0:
        return {**record, "exit_code": None, "error": "not started: --budget-s spent"}
    log = logs / f"{name}.log"
    with log.open("w") as out:
        out.write(" ".join(cli) + "\n")
        out.flush()
        # A folder of its own as the working directory: Unsloth writes its compiled modules into
        # ./unsloth_compiled_cache, which children starting at once would write over each other.
        child = subprocess.Popen(cli, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=run_dir.parent,
                                 start_new_session=True)
        try:
            code: int | None = child.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, 9)  # the child and anything it started (compile workers)
            child.wait()
            code = None
    record.update(wall_s=round(time.monotonic() - started, 1), exit_code=code, **outcome(run_dir, log.read_text()))
    if code is None:
        record["error"] = f"timed out after {limit:.0f} s"
    shutil.rmtree(run_dir.parent, ignore_errors=True)  # the adapter of a random model is of no use
    return record


def outcome(run_dir: Path, output: str) -> dict[str, Any]:
    """Settings, memory and speed as the run recorded them, and how it failed, if it did."""
    result: dict[str, Any] = {"resolved": None, "engine": None}
    if (run_dir / "config.toml").is_file():
        table = tomllib.loads((run_dir / "config.toml").read_text())
        result["engine"] = table.get("engine")
        result["resolved"] = {key: table.get(section, {}).get(key)
                              for section, keys in RESOLVED.items() for key in keys}
    metrics = []
    if (run_dir / "metrics.jsonl").is_file():
        metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    steps = [m for m in metrics if "loss" in m]
    reserved = [m["memory_reserved_gb"] for m in steps if "memory_reserved_gb" in m]
    on_gpu = bool(reserved)  # on the CPU, metrics.jsonl's memory_gb is the process's resident memory
    result.update(
        steps_done=steps[-1]["step"] if steps else 0, tokens=steps[-1]["tokens"] if steps else 0,
        peak_reserved_gb=max(reserved) if on_gpu else None,
        peak_allocated_gb=max(m["memory_gb"] for m in steps) if on_gpu else None,
        peak_rss_gb=max(m["memory_gb"] for m in steps) if steps and not on_gpu else None,
        first_step_reserved_gb=reserved[0] if on_gpu else None,
        memory_at_start_gb=steps[0].get("memory_at_start_gb") if steps else None,  # model and adapter, on the GPU
        losses=[m["loss"] for m in steps])
    benchmark = json.loads((run_dir / "benchmark.json").read_text()) if (run_dir / "benchmark.json").is_file() else {}
    numbers = benchmark.get("numbers", {})
    result["tokens_per_s"] = numbers.get("tokens_per_s") or (steps[-1].get("tokens_per_s") if steps else None)
    result["engine"] = benchmark.get("engine") or result["engine"]
    result["predicted"] = benchmark.get("predicted") or predicted_of(output)
    result["environment"] = {key: benchmark[key] for key in ENVIRONMENT if key in benchmark}
    flat = " ".join(output.split())
    healed = re.findall(r"Out of GPU memory on a micro-batch of \d+ tokens: .*? as passes of at most \d+ tokens", flat)
    result["out_of_memory"] = ("stopped" if "out of GPU memory" in flat or "OutOfMemoryError" in flat
                               else "healed" if healed else None)
    result["healed"] = healed[:3]  # the peak then is that of the smaller passes
    errors = [line.strip() for line in output.splitlines() if line.startswith(("error", "fix:"))]
    status = json.loads((run_dir / "status.json").read_text()) if (run_dir / "status.json").is_file() else {}
    last = [line for line in output.splitlines() if line.strip()][-1:] or [""]
    result["error"] = " ".join(errors) or status.get("error") or (last[0] if status.get("state") != "completed"
                                                                  else None)
    return result


def predicted_of(output: str) -> dict[str, float] | None:
    """The peak and budget the run's "Plan:" line told before the start (a run that failed wrote no benchmark.json)."""
    found = re.search(r"about ([0-9.]+) of ([0-9.]+) GB on worst-case rows", " ".join(output.split()))
    return {"peak_gb": float(found[1]), "budget_gb": float(found[2])} if found else None


# --- the sweep ------------------------------------------------------------------------------------------------------

def environment(args: argparse.Namespace) -> dict[str, str]:
    """The children's environment: MPS share where a daemon answers, wide output for whole error lines."""
    env = {**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if mps_daemon_answers():
        env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] = str(args.mps_share or max(1, 100 // args.parallel))
    return env


def mps_daemon_answers() -> bool:
    from trainer.bench import emulate

    control = shutil.which(emulate.CONTROL)
    return control is not None and emulate.answers(control, {k: v for k, v in os.environ.items()
                                                              if k.startswith("CUDA_MPS_")})


def default_cap_gb(parallel: int) -> float:
    """The GPU's memory (nvidia-smi: no CUDA context in this process) shared out among the children, a tenth kept
    for their CUDA contexts; 0 (no cap) without a GPU."""
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=30)
        total_mib = float(answer.stdout.split()[0]) if answer.returncode == 0 else 0.0
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        total_mib = 0.0
    return round(total_mib / 1024 * 0.9 / parallel, 1)


def table(records: list[dict[str, Any]]) -> str:
    lines = [f"{'point':<52} {'exit':>4} {'reserved':>8} {'alloc':>7} {'tok/s':>8}  oom/error"]
    for r in records:
        gb = lambda v: f"{v:.2f}" if isinstance(v, float | int) else "-"  # noqa: E731
        note = r.get("out_of_memory") or (r.get("error") or "")[:60]
        lines.append(f"{r['point'][:52]:<52} {r.get('exit_code')!s:>4} {gb(r.get('peak_reserved_gb')):>8} "
                     f"{gb(r.get('peak_allocated_gb')):>7} {r.get('tokens_per_s') or '-':>8}  {note}")
    return "\n".join(lines)


def sweep(args: argparse.Namespace) -> list[dict[str, Any]]:
    points = points_of(args)
    check(args)
    if args.cap_gb is None:
        args.cap_gb = default_cap_gb(args.parallel)
    env = environment(args)
    deadline = time.monotonic() + args.budget_s if args.budget_s else None
    logs = args.out.parent / f"{args.out.stem}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    facts = {model: model_facts(model) for model in args.models}
    session = {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "cap_gb": args.cap_gb, "parallel": args.parallel}
    largest = max(int(p.get("micro_batch_size", 8)) for p in points)
    records = []
    with tempfile.TemporaryDirectory(prefix="memory-sweep-") as work:
        data = worst_case_dataset(Path(work) / "worst-case.jsonl", rows=max(64, 2 * args.steps * largest))
        jobs = [(model, point) for model in args.models for point in points]
        print(f"{len(jobs)} points, {args.parallel} at a time, "
              + (f"each capped at {args.cap_gb:g} GB" if args.cap_gb else "no memory cap")
              + (f", MPS share {env['CUDA_MPS_ACTIVE_THREAD_PERCENTAGE']}%" if "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
                 in env else ", no MPS daemon"), flush=True)
        with ThreadPoolExecutor(args.parallel) as pool, args.out.open("a") as out:
            running = [pool.submit(run_point, args, model, point, data, Path(work), logs, env, deadline, facts[model])
                       for model, point in jobs]
            for done in as_completed(running):  # each record as soon as its point ends
                record = {**session, **done.result()}
                out.write(json.dumps(record) + "\n")
                out.flush()
                records.append(record)
                print(f"{record['point']}: exit {record['exit_code']}, reserved {record.get('peak_reserved_gb')} GB,"
                      f" {record.get('tokens_per_s')} tok/s {record.get('out_of_memory') or ''}", flush=True)
    return records


def main(argv: list[str]) -> int:
    args = parse(argv)
    try:
        records = sweep(args)
    except BadArguments as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(table(records))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
