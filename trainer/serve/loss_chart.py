"""The Runs tab's loss chart: train and eval loss of several runs, the train loss smoothed, as one figure.

Gradio 6.31's LinePlot drew no lines after its data changed (axes only; checked in Chromium), so this is a
matplotlib figure in gr.Plot, redrawn only when a run's metrics change."""

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


def loss_figure(runs: list[RunDir], smoothing: float) -> Any:
    """Each run's train loss (smoothed, the raw values faint behind it) and eval loss (points), one color per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 4), dpi=100)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"
        metrics = run.read_metrics()
        train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
        evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
        if train:
            steps, losses = zip(*train, strict=True)
            if smoothing:
                ax.plot(steps, losses, color=color, alpha=0.25, linewidth=1)
            ax.plot(steps, smoothed(list(losses), smoothing), color=color, label=f"{run.path.name} train")
        if evals:
            ax.plot(*zip(*evals, strict=True), "o--", color=color, label=f"{run.path.name} eval")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small")
    fig.tight_layout()
    plt.close(fig)  # gr.Plot renders it; pyplot need not keep it
    return fig
