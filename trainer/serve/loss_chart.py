"""The Runs tab's loss chart: train and eval loss of several runs as one table for Gradio's LinePlot."""

from __future__ import annotations

from typing import Any

from trainer.runs import RunDir


def smoothed(values: list[float], weight: float) -> list[float]:
    """An exponential moving average, debiased as TensorBoard's (the first points are not pulled toward 0)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i) if weight else value)
    return out


def loss_frame(runs: list[RunDir], smoothing: float) -> Any:
    """One row per logged point: step, loss, series ("<run> train" or "<run> eval"); the train loss smoothed."""
    import pandas as pd

    rows = []
    for run in runs:
        metrics = run.read_metrics()
        train = [m for m in metrics if "loss" in m]
        for m, loss in zip(train, smoothed([m["loss"] for m in train], smoothing), strict=True):
            rows.append({"step": m["step"], "loss": round(loss, 4), "series": f"{run.path.name} train"})
        rows += [{"step": m["step"], "loss": round(m["eval_loss"], 4), "series": f"{run.path.name} eval"}
                 for m in metrics if "eval_loss" in m]
    return pd.DataFrame(rows, columns=["step", "loss", "series"])
