"""The Runs tab's loss chart: train and eval loss of several runs, the train loss smoothed, as one figure.

Gradio 6.31's LinePlot drew no lines after its data changed (axes only; checked in Chromium), so this is a plotly
figure in gr.Plot (hover, zoom), redrawn only when a run's metrics change."""

from __future__ import annotations

from typing import Any

from trainer.runs import RunDir
from trainer.runs.loss_plot import curves


def smoothed(values: list[float], weight: float) -> list[float]:
    """An exponential moving average, debiased as TensorBoard's (the first points are not pulled toward 0)."""
    out, average = [], 0.0
    for i, value in enumerate(values, start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**i) if weight else value)
    return out


def loss_figure(runs: list[RunDir], smoothing: float) -> Any:
    """Each run's train loss (smoothed, the raw values faint behind it), eval loss (points) and, for DPO and ORPO,
    reward margin (right-hand axis), one color per run: a plotly figure, so the page shows each point's step and loss
    on hover, and zooms."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for i, run in enumerate(runs):
        color = qualitative.Plotly[i % len(qualitative.Plotly)]
        drawn = curves(run.read_metrics())
        name = run.path.name
        if "loss" in drawn:
            steps, losses = drawn["loss"]
            if smoothing:
                fig.add_scatter(x=steps, y=losses, mode="lines", line={"color": color, "width": 1}, opacity=0.3,
                                name=f"{name} train (raw)", showlegend=False, hoverinfo="skip")
            fig.add_scatter(x=steps, y=smoothed(losses, smoothing), mode="lines", line={"color": color},
                            name=f"{name} train", hovertemplate="step %{x}<br>loss %{y:.4f}")
        if "eval_loss" in drawn:
            steps, losses = drawn["eval_loss"]
            fig.add_scatter(x=steps, y=losses, mode="markers+lines", line={"color": color, "dash": "dot"},
                            name=f"{name} eval", hovertemplate="step %{x}<br>eval loss %{y:.4f}")
        if "reward_margin" in drawn:  # on the right-hand axis
            steps, values = drawn["reward_margin"]
            fig.add_scatter(x=steps, y=values, mode="lines", line={"color": color, "dash": "dash"}, yaxis="y2",
                            name=f"{name} reward margin", hovertemplate="step %{x}<br>reward margin %{y:.4f}")
    fig.update_layout(xaxis_title="optimizer step", yaxis_title="loss", height=420, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 20, "b": 50}, legend={"orientation": "h", "y": -0.2},
                      hovermode="x unified")
    if any(trace.yaxis == "y2" for trace in fig.data):
        fig.update_layout(yaxis2={"title": "reward margin", "overlaying": "y", "side": "right"})
    return fig
