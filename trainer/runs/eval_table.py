"""The table of a run's eval report (RUN/eval/eval.json, written by `trainer eval`): each number for the model it was
compared with and the tuned one, as the console, report.md and the model card show it."""

from __future__ import annotations

from typing import Any


def numbers(report: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(what, against, tuned): held-out loss and perplexity, the share of answers passing each check, the judge's
    verdicts, then each benchmark's metrics (their standard errors left to eval.json)."""
    base, tuned = report["models"]["base"], report["models"]["tuned"]
    rows = [(label, f"{base[key]:g}", f"{tuned[key]:g}") for key, label in
            (("loss", "held-out loss (lower is better)"), ("perplexity", "perplexity")) if key in tuned]
    rows += [(f"check: {name}", f"{base['checks'][name]:.0%}", f"{tuned['checks'][name]:.0%}")
             for name in tuned["checks"]]
    if "judge" in report["models"]:
        said = report["models"]["judge"]
        rows.append(("judge: wins / ties / losses of tuned", "", f"{said['wins']} / {said['ties']} / {said['losses']}"))
    for task, metrics in tuned.get("benchmarks", {}).items():
        for metric, value in metrics.items():
            name, _, kept = metric.partition(",")  # lm-eval's "metric,filter"
            if "_stderr" not in name:
                shown = f"{task} {name}" + (f" ({kept})" if kept and kept != "none" else "")
                other = base.get("benchmarks", {}).get(task, {}).get(metric)
                rows.append((shown, f"{other:.4g}" if other is not None else "", f"{value:.4g}"))
    return rows
