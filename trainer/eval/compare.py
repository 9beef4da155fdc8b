"""`trainer eval RUN`: the run's tuned model (base + adapter) and its base, on the held-out rows the run never trained
on: loss and perplexity on the same tokens and masks, greedy answers side by side, the user's checks on them; into
RUN/eval/ (eval.json with every number, report.md) and a table on the console."""

from __future__ import annotations

import contextlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from trainer.console import console
from trainer.data import stage
from trainer.errors import UserError
from trainer.eval import checks as user_checks
from trainer.eval import heldout, judge
from trainer.runs import RunDir, write_atomic
from trainer.runs.run_dir import is_run_dir


def main(target: str, cache_dir: str, prompts: int, checks_file: str | None, max_new_tokens: int,
         against: str = "base", ask: judge.Ask | None = None) -> Path:
    """Evaluate the run at `target` against its base (or `against`: another run, an adapter or checkpoint folder, a
    model), with the judge `ask` where given; the path of its report."""
    from trainer.serve import chat
    from trainer.train import methods

    path = Path(target)
    if not is_run_dir(path):
        raise UserError(f"{target} is not a run directory", "Give a run's folder (python -m trainer runs lists them).")
    run = RunDir(path)
    config = run.read_config()
    heldout.check_method(config, target)
    checks = user_checks.read(Path(checks_file)) if checks_file else []  # every file problem before the model loads
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
    results: dict[str, Any] = {}
    for name in ("tuned", "base"):
        model = other if name == "base" and other is not None else tuned
        with tuned.model.disable_adapter() if name == "base" and other is None else contextlib.nullcontext():
            console.print(f"Evaluating {target if name == 'tuned' else against if other else 'its base'} on "
                          f"{len(asked)} held-out prompts...")
            result: dict[str, Any] = {}
            if prepared.eval is not None:
                loss, tokens = heldout.loss(model.model, prepared.eval)
                result |= {"loss": round(loss, 4), "perplexity": round(math.exp(min(loss, 50)), 3),
                           "tokens": tokens}
            result["answers"] = [answer(chat, model, p.messages, settings) for p in asked]
            result["checks"] = user_checks.score(checks, result["answers"], [p.reference for p in asked])
            results[name] = result
    if ask is not None:
        console.print(f"The judge compares {len(asked)} pairs of answers, in both orders...")
        verdicts = [judge.compare(ask, p.messages[-1]["content"], p.reference, tuned_answer, other_answer)
                    for p, tuned_answer, other_answer in zip(asked, results["tuned"]["answers"],
                                                             results["base"]["answers"], strict=True)]
        results["judge"] = {"wins": sum(v.winner == "tuned" for v in verdicts),
                            "ties": sum(v.winner == "tie" for v in verdicts),
                            "losses": sum(v.winner == "against" for v in verdicts),
                            "verdicts": [{"winner": v.winner, "replies": list(v.reasons)} for v in verdicts]}
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "run": str(path),
              "base_model": tuned.base_name, "against": f"its base, {tuned.base_name}" if other is None else against,
              "held_out_rows": len(prepared.eval) if prepared.eval is not None else 0,
              "prompts": [{"messages": p.messages, "reference": p.reference} for p in asked], "models": results}
    folder = path / "eval"
    folder.mkdir(exist_ok=True)
    write_atomic(folder / "eval.json", json.dumps(report, indent=2) + "\n")
    write_atomic(folder / "report.md", markdown(report))
    console.print(summary(report))
    console.print(f"Report: {folder / 'report.md'} (every number: {folder / 'eval.json'})")
    return folder / "report.md"


def answer(chat: Any, model: Any, messages: list[dict[str, str]], settings: Any) -> str:
    """The model's whole greedy reply."""
    from collections import deque

    last = deque(chat.stream(model, messages, settings), maxlen=1)  # each item is the whole reply so far
    return last[0].strip() if last else ""


def numbers(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, base, tuned): held-out loss and perplexity, then the share of answers passing each check."""
    base, tuned = report["models"]["base"], report["models"]["tuned"]
    rows = [(label, f"{base[key]:g}", f"{tuned[key]:g}") for key, label in
            (("loss", "held-out loss (lower is better)"), ("perplexity", "perplexity")) if key in tuned]
    rows += [(f"check: {name}", f"{base['checks'][name]:.0%}", f"{tuned['checks'][name]:.0%}")
             for name in tuned["checks"]]
    if "judge" in report["models"]:
        said = report["models"]["judge"]
        rows.append(("judge: wins / ties / losses of tuned", "", f"{said['wins']} / {said['ties']} / {said['losses']}"))
    return rows


def summary(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{report['run']} against {report['against']}")
    for column in ("", "against", "tuned"):
        table.add_column(column)
    for row in numbers(report):
        table.add_row(*row)
    return table


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Eval of {report['run']}", "",
             f"{report['date']}: the tuned model (base + the run's adapter) against {report['against']}, "
             f"on {report['held_out_rows']} held-out rows the run never trained on "
             f"(loss on the same tokens and masks) and {len(report['prompts'])} of their prompts (greedy answers).",
             "", "| | against | tuned |", "|---|---|---|"]
    lines += [f"| {what} | {base} | {tuned} |" for what, base, tuned in numbers(report)]
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
