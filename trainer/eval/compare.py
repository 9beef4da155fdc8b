"""`trainer eval RUN`: the run's tuned model (base + adapter) and its base, on the held-out rows the run never trained
on: loss and perplexity on the same tokens and masks, greedy answers side by side, the user's checks on them; into
RUN/eval/ (eval.json with every number, report.md) and a table on the console."""

from __future__ import annotations

import contextlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer.console import console
from trainer.data import stage
from trainer.errors import UserError
from trainer.eval import benchmarks, heldout, judge, parts
from trainer.eval import checks as user_checks
from trainer.runs import RunDir, eval_table, write_atomic
from trainer.runs.run_dir import is_run_dir


def main(target: str, cache_dir: str, prompts: int, checks_file: str | None, max_new_tokens: int,
         against: str = "base", ask: judge.Ask | None = None, judge_name: str = "", tasks: tuple[str, ...] = (),
         limit: int | None = None) -> Path:
    """Evaluate the run at `target` against its base (or `against`: another run, an adapter or checkpoint folder, a
    model), with the judge `ask` (named `judge_name`) and the lm-eval `tasks` where given; the path of its report.
    Each part is saved as it completes (RUN/eval/parts/): a rerun goes on where a stopped one ended."""
    from trainer.serve import chat
    from trainer.train import methods

    path = Path(target)
    if not is_run_dir(path):
        raise UserError(f"{target} is not a run directory", "Give a run's folder (python -m trainer runs lists them).")
    run = RunDir(path)
    config = run.read_config()
    heldout.check_method(config, target)
    checks = user_checks.read(Path(checks_file)) if checks_file else []  # every file problem before the model loads
    loaded: dict[str, Benchmark] = {}
    if tasks:
        console.print(f"Reading the benchmarks' data: {', '.join(tasks)}...")
        # a task that cannot download fails here, before any model loads
        loaded = {spec: Benchmark(benchmarks.load(spec), limit) for spec in tasks}
    rows = stage.load_rows(config)  # the run's rows, read as it read them
    asked = heldout.prompts(config, rows, prompts)
    tuned = chat.load(str(path), cache_dir)
    other = None
    if against != "base":  # the same base: the same tokens, so the losses compare
        other = chat.load(against, cache_dir)
        if other.base_name != tuned.base_name:
            raise UserError(f"{against} is trained on {other.base_name}, {target} on {tuned.base_name}: their "
                            "losses are over different tokens",
                            "Compare runs of the same base model, or drop --against.")
    prepared = methods.of(config).build(config, rows, tuned.tokenizer, check=False)
    if prepared.eval is None:
        console.print("[yellow]The run held out no rows for eval (eval_size=0): no loss to compare.[/]")
    settings = chat.GenerationSettings(temperature=0, max_new_tokens=max_new_tokens)
    identities = {"tuned": model_identity(str(path)), "base": model_identity(against) if other else
                  {"model": tuned.base_name}}
    results: dict[str, Any] = {}
    folder = path / "eval"
    with parts.saved_under(folder / "parts") as saved:
        for name in ("tuned", "base"):
            model = other if name == "base" and other is not None else tuned
            with tuned.model.disable_adapter() if name == "base" and other is None else contextlib.nullcontext():
                results[name] = evaluate(saved.stage, "tuned" if name == "tuned" else against if other else "base",
                                         model, {"model": identities[name]}, prepared.eval, asked, settings, checks,
                                         loaded)
        if ask is not None:
            with saved.stage(f"the judge: {len(asked)} pairs of answers, in both orders", len(asked)) as step:
                verdicts = [step.part({"part": "judge", "judge": judge_name, "prompt": p.messages,
                                       "reference": p.reference, "tuned": tuned_answer, "against": other_answer},
                                      lambda p=p, a=tuned_answer, b=other_answer: verdict(ask, p, a, b))
                            for p, tuned_answer, other_answer in zip(asked, results["tuned"]["answers"],
                                                                     results["base"]["answers"], strict=True)]
            results["judge"] = {"wins": sum(v["winner"] == "tuned" for v in verdicts),
                                "ties": sum(v["winner"] == "tie" for v in verdicts),
                                "losses": sum(v["winner"] == "against" for v in verdicts), "verdicts": verdicts}
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "run": str(path),
              "base_model": tuned.base_name, "against": f"its base, {tuned.base_name}" if other is None else against,
              "held_out_rows": len(prepared.eval) if prepared.eval is not None else 0,
              "prompts": [{"messages": p.messages, "reference": p.reference} for p in asked], "models": results}
    if tasks:
        samples = {name: count for spec in loaded.values() for name, count in spec.samples.items()}
        report["benchmarks"] = {"tasks": list(tasks), "limit": limit, "lm_eval": benchmarks.version(),
                                "samples": samples}
    write_atomic(folder / "eval.json", json.dumps(report, indent=2) + "\n")
    write_atomic(folder / "report.md", markdown(report))
    if saved.reused:
        console.print(f"{saved.reused} parts came from an earlier eval ({folder / 'parts'}; delete it to redo all).")
    console.print(summary(report))
    console.print(f"Report: {folder / 'report.md'} (every number: {folder / 'eval.json'})")
    return folder / "report.md"


@dataclass
class Benchmark:
    tasks: dict[str, Any]  # what benchmarks.load built
    limit: int | None
    samples: dict[str, int] = field(default_factory=dict)  # the examples each of its tasks ran


def evaluate(stages: Any, label: str, model: Any, depends: dict[str, Any], held_out: Any, asked: list[heldout.Prompt],
             settings: Any, checks: list[user_checks.Check], loaded: dict[str, Benchmark]) -> dict[str, Any]:
    """One model as it is now (its adapter on or off): held-out loss, answers, checks, benchmarks; each part from
    RUN/eval/parts where saved, else done and saved there."""
    from trainer.serve import chat

    result: dict[str, Any] = {}
    if held_out is not None:
        batches = math.ceil(len(held_out) / heldout.BATCH_ROWS)
        with stages(f"{label}: held-out loss", batches) as step:
            result |= step.part(depends | {"part": "loss", "rows": data_key(held_out)},
                                lambda: loss_of(model.model, held_out, step.advance), batches)
    with stages(f"{label}: answers to {len(asked)} held-out prompts", len(asked)) as step:
        result["answers"] = [step.part(depends | {"part": "answer", "messages": p.messages,
                                                  "max_new_tokens": settings.max_new_tokens},
                                       lambda p=p: answer(chat, model, p.messages, settings)) for p in asked]
    result["checks"] = user_checks.score(checks, result["answers"], [p.reference for p in asked])
    if loaded:
        result["benchmarks"] = {}
    for spec, benchmark in loaded.items():
        with stages(f"{label}: {benchmarks.label(benchmark.tasks)} (lm-eval requests)", 0) as step:
            done = step.part(depends | {"part": "benchmark", **benchmarks.identity(spec, benchmark.tasks,
                                                                                   benchmark.limit)},
                             lambda benchmark=benchmark, step=step: benchmarks.run(
                                 model.model, model.tokenizer, benchmark.tasks, benchmark.limit, step.grow,
                                 step.advance), units=None)
        result["benchmarks"] |= done["metrics"]
        benchmark.samples |= done["samples"]
    return result


def model_identity(target: str) -> dict[str, Any]:
    """What a model's answers depend on: the run, adapter or model it is, and its adapter's files as they are now (a
    retrained or resumed run answers anew)."""
    from trainer import weights

    base, adapter = weights.describe(target)
    where = Path(target)
    return {"model": str(where.resolve()) if where.exists() else target, "base": base,
            "adapter": parts.fingerprint(adapter)}


def data_key(dataset: Any) -> str:
    """The held-out rows' tokens and masks, as one hash: another split, template or tokenizer is another loss."""
    if dataset is None:
        return ""
    return parts.key({"input_ids": list(dataset["input_ids"]), "labels": list(dataset["labels"])})


def loss_of(model: Any, dataset: Any, advance: Any) -> dict[str, Any]:
    loss, tokens = heldout.loss(model, dataset, advance)
    return {"loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3), "tokens": tokens}


def verdict(ask: judge.Ask, prompt: heldout.Prompt, tuned: str, against: str) -> dict[str, Any]:
    found = judge.compare(ask, prompt.messages[-1]["content"], prompt.reference, tuned, against)
    return {"winner": found.winner, "replies": list(found.reasons)}


def answer(chat: Any, model: Any, messages: list[dict[str, str]], settings: Any) -> str:
    """The model's whole greedy reply."""
    from collections import deque

    last = deque(chat.stream(model, messages, settings), maxlen=1)  # each item is the whole reply so far
    return last[0].strip() if last else ""


def summary(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{report['run']} against {report['against']}")
    for column in ("", "against", "tuned"):
        table.add_column(column)
    for row in eval_table.numbers(report):
        table.add_row(*row)
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Eval of {report['run']}", "",
             f"{report['date']}: the tuned model (base + the run's adapter) against {report['against']}, "
             f"on {report['held_out_rows']} held-out rows the run never trained on "
             f"(loss on the same tokens and masks) and {len(report['prompts'])} of their prompts (greedy answers).",
             "", "| | against | tuned |", "|---|---|---|"]
    lines += [f"| {what} | {base} | {tuned} |" for what, base, tuned in eval_table.numbers(report)]
    for number, prompt in enumerate(report["prompts"]):
        asked = prompt["messages"][-1]["content"]
        lines += ["", f"## Prompt {number + 1}", "", quoted(asked), "", "**Reference (held out)**", "",
                  quoted(prompt["reference"])]
        for name, label in (("base", report["against"]), ("tuned", "tuned")):
            lines += ["", f"**{label}**", "", quoted(report["models"][name]["answers"][number])]
        if "judge" in report["models"]:
            verdict = report["models"]["judge"]["verdicts"][number]
            lines += ["", f"**The judge**: {verdict['winner']} (tuned shown first, then second):", "",
                      *(quoted(reply) for reply in verdict["replies"])]
    return "\n".join(lines) + "\n"


def quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in (text or "(empty)").splitlines())
