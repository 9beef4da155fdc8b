"""Experiment trackers (TensorBoard, MLflow, W&B): the Hugging Face integrations log every step; this module points
them at the run directory, continues the same tracker run on resume, and adds the resolved config as parameters."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

from trainer.config import TRACKERS, Config, TrackerEnvironment
from trainer.console import console
from trainer.errors import UserError
from trainer.runs import RunDir, write_atomic

# The metrics.jsonl numbers the integrations receive besides the Trainer's own (loss, learning_rate, grad_norm,
# eval_loss): MetricsCallback adds them to the logs.
LOGGED = ("tokens_per_s", "memory_gb", "memory_reserved_gb")
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow-skinny", "wandb": "wandb"}  # import name: what pip installs
INSTALL = 'pip install -e ".[trackers]"'


def installed() -> dict[str, bool]:
    """Which trackers can be imported (found, not imported: wandb and mlflow take seconds)."""
    return {name: importlib.util.find_spec(name) is not None for name in TRACKERS}


def check_installed(report_to: tuple[str, ...]) -> None:
    """Import each tracker asked for (the integrations will anyway), or name the install command."""
    missing = []
    for name in report_to:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise UserError(f"report_to asks for {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not "
                        "installed", f"{INSTALL} (or pip install {' '.join(PACKAGES[m] for m in missing)}), or leave "
                        f"{', '.join(missing)} out of report_to.")


def attach(trainer: Any, config: Config, run: RunDir, env: TrackerEnvironment) -> None:
    """Open (on resume: reopen) each tracker's run for the Trainer's integrations to log into, record where in
    RUN_DIR/trackers.json, and log the resolved config as the run's parameters.

    The integrations are moved after MetricsCallback, which adds LOGGED to the logs they receive."""
    from transformers.integrations import INTEGRATION_TO_CALLBACK, TensorBoardCallback

    handler = trainer.callback_handler
    reporters = [c for c in handler.callbacks if type(c) in INTEGRATION_TO_CALLBACK.values()]
    for callback in reporters:
        handler.remove_callback(callback)
        handler.add_callback(callback)
    kept = run.read_metrics()  # a resumed run keeps the steps through its checkpoint
    resumed_at = kept[-1]["step"] if kept else 0
    saved, ids = read_ids(run), {}
    params = parameters(config)
    for callback in reporters:
        if isinstance(callback, TensorBoardCallback):
            ids["tensorboard"] = {"dir": str(run.path / "tensorboard")}
            tensorboard(callback, run.path / "tensorboard", resumed_at, params)
    if "mlflow" in config.run.report_to:
        ids["mlflow"] = mlflow_run(run, env, saved.get("mlflow", {}), params)
    if "wandb" in config.run.report_to:
        ids["wandb"] = wandb_run(run, env, saved.get("wandb", {}), params)
    write_atomic(run.path / "trackers.json", json.dumps(ids, indent=2) + "\n")
    console.print("Trackers: " + "; ".join(where(name, record) for name, record in ids.items()))


def tensorboard(callback: Any, folder: Path, resumed_at: int, params: dict[str, Any]) -> None:
    """The integration's writer, on RUN_DIR/tensorboard; a resumed run hides what a killed run logged after its
    checkpoint (TensorBoard's purge_step), and the config goes in as hparams."""
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams

    callback.logging_dir = str(folder)  # also where it reopens a writer for the evaluation after training
    callback.tb_writer = SummaryWriter(log_dir=str(folder), purge_step=resumed_at + 1 if resumed_at else None)
    for summary in hparams(params, {"train/loss": 0.0, "eval/loss": 0.0}):
        callback.tb_writer.file_writer.add_summary(summary)


def mlflow_run(run: RunDir, env: TrackerEnvironment, saved: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The active MLflow run the integration logs into: in the run directory's file store unless MLFLOW_TRACKING_URI
    names another; on resume, the run this run directory started."""
    import mlflow

    uri = env.mlflow_tracking_uri
    if not uri:
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps its file store only on request
        uri = (run.path / "mlruns").resolve().as_uri()
    mlflow.set_tracking_uri(uri)
    run_id = saved.get("run_id") if saved.get("tracking_uri") == uri else None
    active = mlflow.start_run(run_id=run_id, run_name=None if run_id else run.path.name)
    logged = active.data.params
    mlflow.log_params({k: v for k, v in params.items() if k not in logged})  # a parameter cannot change value
    return {"run_id": active.info.run_id, "tracking_uri": uri}


def wandb_run(run: RunDir, env: TrackerEnvironment, saved: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The W&B run the integration logs into: under RUN_DIR/wandb, offline without an API key; resumed by id."""
    import wandb

    mode = None if env.wandb_key or env.wandb_mode else "offline"
    active = wandb.init(dir=str(run.path), id=saved.get("id"), resume="allow", name=run.path.name, mode=mode,
                        project=env.wandb_project or "trainer", config=params)
    return {"id": active.id, "project": active.project, "offline": active.offline, "dir": str(run.path / "wandb")}


def parameters(config: Config) -> dict[str, Any]:
    """The resolved config as flat `section.field` parameters (what `--set` takes); lists become "a,b"."""
    flat: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for name, leaf in items:
            flat[f"{key}.{name}" if name else key] = ",".join(leaf) if isinstance(leaf, (list, tuple)) else leaf
    return flat


def read_ids(run: RunDir) -> dict[str, Any]:
    path = run.path / "trackers.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


def where(name: str, record: dict[str, Any]) -> str:
    if name == "mlflow":
        return f"MLflow run {record['run_id']} in {record['tracking_uri']}"
    if name == "wandb":
        return f"W&B run {record['id']} ({'offline, in ' + record['dir'] if record['offline'] else 'online'})"
    return f"TensorBoard in {record['dir']}"
