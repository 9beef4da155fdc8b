"""A run's loss.png: train and eval loss by step and, for a DPO or ORPO run, its reward margin on a right-hand axis."""

from __future__ import annotations

import os
from typing import Any

from trainer.runs.run_dir import RunDir


def figure(run: RunDir) -> Any:
    """The run's metrics as a matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = run.read_metrics()
    train = [(m["step"], m["loss"]) for m in metrics if "loss" in m]
    evals = [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]
    margins = [(m["step"], m["reward_margin"]) for m in metrics if "reward_margin" in m]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss")
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(run.path.name)
    ax.grid(alpha=0.3)
    lines = ax.get_lines()
    if margins:  # DPO and ORPO: chosen's reward over rejected's
        right = ax.twinx()
        right.plot(*zip(*margins, strict=True), color="tab:green", label="reward margin")
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
