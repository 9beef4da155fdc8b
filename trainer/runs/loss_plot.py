"""A run's loss.png: train and eval loss by step and, for a DPO or ORPO run, its reward margin on a right-hand axis."""

from __future__ import annotations

import os
from typing import Any

from trainer.runs.run_dir import RunDir

CURVES = ("loss", "eval_loss", "reward_margin")  # reward_margin: DPO and ORPO, chosen's reward over rejected's


def curves(metrics: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Each of CURVES that the metrics log, as its (steps, values); this plot and the UI's chart draw these."""
    out = {}
    for key in CURVES:
        points = [(m["step"], m[key]) for m in metrics if key in m]
        if points:
            steps, values = zip(*points, strict=True)
            out[key] = (list(steps), list(values))
    return out


def figure(run: RunDir) -> Any:
    """The run's metrics as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = curves(run.read_metrics())
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if "loss" in drawn:
        ax.plot(*drawn["loss"], label="train loss")
    if "eval_loss" in drawn:
        ax.plot(*drawn["eval_loss"], "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(run.path.name)
    ax.grid(alpha=0.3)
    lines = ax.get_lines()
    if "reward_margin" in drawn:
        right = ax.twinx()
        right.plot(*drawn["reward_margin"], color="tab:green", label="reward margin")
        right.set_ylabel("reward margin")
        lines += right.get_lines()
    if lines:
        ax.legend(lines, [line.get_label() for line in lines])
    fig.tight_layout()
    return fig


def write(run: RunDir) -> None:
    """Draw the figure to run.plot, replacing it whole."""
    import matplotlib.pyplot as plt

    fig = figure(run)
    staging = run.path / ".loss.png"
    fig.savefig(staging)
    plt.close(fig)
    os.replace(staging, run.plot)
