"""The Runs tab's chart: train loss smoothed without bias, eval points, and DPO/ORPO's reward margin on its own axis."""

from __future__ import annotations

import json

import pytest

from trainer.runs import RunDir
from trainer.ui.loss_chart import loss_figure, smoothed


def run_with(tmp_path, name, rows):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return RunDir(folder)


def test_smoothing_is_debiased_and_zero_leaves_values():
    assert smoothed([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])  # no pull toward 0 at the start
    assert smoothed([1.0, 3.0], 0.0) == [1.0, 3.0]
    assert smoothed([1.0, 3.0], 0.5) == pytest.approx([1.0, (0.25 + 1.5) / 0.75])


def test_runs_overlay_and_the_margin_gets_the_right_hand_axis(tmp_path):
    sft = run_with(tmp_path, "sft", [{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5, "eval_loss": 1.7}])
    dpo = run_with(tmp_path, "dpo", [{"step": 1, "loss": 0.69, "reward_margin": 0.0},
                                     {"step": 2, "loss": 0.6, "reward_margin": 0.3}])
    fig = loss_figure([sft, dpo], smoothing=0.0)
    traces = {trace.name: trace for trace in fig.data}
    assert list(traces) == ["sft train", "sft eval", "dpo train", "dpo reward margin"]
    assert list(traces["dpo reward margin"].y) == [0.0, 0.3] and traces["dpo reward margin"].yaxis == "y2"
    assert traces["sft train"].line.color != traces["dpo train"].line.color
    assert fig.layout.yaxis2.title.text == "reward margin"
    assert "yaxis2" not in loss_figure([sft], 0.0).to_dict()["layout"]  # no margin, no second axis
