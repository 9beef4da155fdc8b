"""`--set report_to`: TensorBoard, MLflow and W&B (offline) read back with each tool's own reader, across a resume."""

from __future__ import annotations

import glob
import json
import os
import signal
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import ROOT, cli_command, run_cli, wait_for
from trainer.runs import RunDir

STEPS = 8
TRACKED = "report_to=tensorboard,mlflow,wandb"
# metrics.jsonl's names, as the Hugging Face integrations name them (train/ and eval/ prefixes: TensorBoard, W&B).
TRAIN_KEYS = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "tokens_per_s": "tokens_per_s",
              "memory_gb": "memory_gb"}
USERS_SETTINGS = ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "WANDB_MODE", "WANDB_API_KEY", "WANDB_PROJECT")


def cli(*args: str) -> tuple[list[str], dict[str, str]]:
    """The CLI without the user's own tracker settings: the defaults are what is tested (offline, in the run)."""
    command, env = cli_command(*args)
    return command, {k: v for k, v in env.items() if k not in USERS_SETTINGS}


def train_args(model: Path, run_dir: Path) -> list[str]:
    return ["--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", str(STEPS),
            "--set", "save_every_steps=3", "--set", "eval_size=8", "--set", "eval_every_steps=4",
            "--set", "log_every_s=0", "--set", "learning_rate=3e-2", "--set", TRACKED, "--run-dir", str(run_dir)]


@pytest.fixture(scope="module")
def tracked(shared_tiny_llama, tmp_path_factory) -> tuple[Path, dict]:
    """A run logged to all three trackers, stopped with Ctrl+C after 3 steps and resumed to the end; and the tracker
    ids it recorded before the resume."""
    run_dir = tmp_path_factory.mktemp("tracked") / "run"
    command, env = cli(*train_args(shared_tiny_llama, run_dir))
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    wait_for(lambda: len([m for m in RunDir(run_dir).read_metrics() if "loss" in m]) >= 3, process)
    process.send_signal(signal.SIGINT)
    out = process.communicate(timeout=120)[0]
    assert process.returncode == 130, out
    before = json.loads((run_dir / "trackers.json").read_text())
    command, env = cli("--resume", "--run-dir", str(run_dir))
    resumed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in out + resumed.stdout + resumed.stderr
    assert RunDir(run_dir).read_status()["state"] == "completed"
    return run_dir, before


def expected(run_dir: Path) -> tuple[dict[str, list], list]:
    """metrics.jsonl: (step, value) per train metric, and (step, eval loss)."""
    metrics = RunDir(run_dir).read_metrics()
    train = {name: [(m["step"], m[key]) for m in metrics if "loss" in m] for name, key in TRAIN_KEYS.items()}
    assert [step for step, _ in train["loss"]] == list(range(1, STEPS + 1))
    return train, [(m["step"], m["eval_loss"]) for m in metrics if "eval_loss" in m]


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_metrics_and_config(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import metadata

    run_dir, _ = tracked
    train, evals = expected(run_dir)
    events = EventAccumulator(str(run_dir / "tensorboard"))  # one run: both processes' files, one folder
    events.Reload()
    as_float32 = [(s, float(np.float32(v))) for s, v in evals]  # TensorBoard stores float32
    assert [(e.step, e.value) for e in events.Scalars("eval/loss")] == as_float32
    for name, points in train.items():
        assert [(e.step, e.value) for e in events.Scalars(f"train/{name}")] == [
            (s, float(np.float32(v))) for s, v in points], name
    start = metadata.parse_session_start_info_plugin_data(
        events.PluginTagToContent("hparams")[metadata.SESSION_START_INFO_TAG])
    assert start.hparams["lora.r"].number_value == 16
    assert start.hparams["run.report_to"].string_value == "tensorboard,mlflow,wandb"
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2  # first process, resumed one


@pytest.mark.slow
def test_mlflow_file_store_holds_one_run_continued_after_the_resume(tracked, shared_tiny_llama, monkeypatch):
    from mlflow import MlflowClient

    run_dir, before = tracked
    train, evals = expected(run_dir)
    record = json.loads((run_dir / "trackers.json").read_text())["mlflow"]
    assert record == before["mlflow"] and record["tracking_uri"] == (run_dir / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 opens its file store only on request
    client = MlflowClient(record["tracking_uri"])
    run = client.get_run(record["run_id"])
    assert len(client.search_runs([run.info.experiment_id])) == 1 and run.info.status == "FINISHED"
    history = {name: [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, name)]
               for name in [*TRAIN_KEYS, "eval_loss"]}
    assert history == {**train, "eval_loss": evals}
    params = run.data.params
    assert params["lora.r"] == "16" and params["model.name"] == str(shared_tiny_llama)
    assert params["train.learning_rate"] == "0.03" and params["run.report_to"] == "tensorboard,mlflow,wandb"


def wandb_records(path: Path):
    """The records of a W&B run file: W&B's protobuf Records in LevelDB's log format (32 KiB blocks of chunks,
    each with a 7-byte header: CRC-32, length, type), after the 7-byte ":W&B" file header."""
    from wandb.proto import wandb_internal_pb2

    data, position, payload = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while position + 7 <= len(data):
        if 32768 - position % 32768 < 7:  # the rest of a block is padding
            position += 32768 - position % 32768
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        payload += data[position + 7:position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(payload)
            yield record
            payload = b""


@pytest.mark.slow
def test_wandb_offline_run_files_hold_the_metrics_under_one_run_id(tracked, shared_tiny_llama):
    run_dir, before = tracked
    train, evals = expected(run_dir)
    record = json.loads((run_dir / "trackers.json").read_text())["wandb"]
    assert record == before["wandb"] and record["offline"]
    files = sorted(glob.glob(str(run_dir / "wandb" / "offline-run-*" / f"run-{record['id']}.wandb")))
    assert len(files) == 2  # the first process and the resumed one: `wandb sync` joins them as one run
    rows, config = [], {}
    for path in files:
        for item in wandb_records(Path(path)):
            kind = item.WhichOneof("record_type")
            if kind == "run":
                assert item.run.run_id == record["id"]
                config.update({i.key: json.loads(i.value_json) for i in item.run.config.update})
            elif kind == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in item.history.item})
    logged = {name: [(r["train/global_step"], r[f"train/{name}"]) for r in rows if f"train/{name}" in r]
              for name in TRAIN_KEYS}
    assert logged == train
    assert [(r["train/global_step"], r["eval/loss"]) for r in rows if "eval/loss" in r] == evals
    assert config["lora.r"] == 16 and config["model.name"] == str(shared_tiny_llama)


def test_a_tracker_that_is_not_installed_is_a_user_error(shared_tiny_llama, tmp_path):
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "wandb.py").write_text("raise ImportError('No module named wandb')\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(blocked), os.environ.get("PYTHONPATH")]))}
    run_dir = tmp_path / "run"
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--set",
                     "report_to=tensorboard,wandb", "--run-dir", str(run_dir), env=env)
    assert result.returncode == 2 and "report_to asks for wandb, which is not installed" in result.stdout
    assert 'pip install -e ".[trackers]"' in result.stdout and "Traceback" not in result.stdout + result.stderr
    assert not run_dir.exists()
    result = run_cli("--profile", "cpu", "--set", "report_to=comet", "--run-dir", str(run_dir))
    assert result.returncode == 2 and "run.report_to lists comet" in result.stdout, result.stdout
