"""The Trainer callbacks of a run: metrics.jsonl and the one rich progress display, and the graceful stop on Ctrl+C or
SIGTERM that checkpoints first.

Imported only once training starts, after the engine is chosen: unsloth must be imported before transformers.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn
from transformers import TrainerCallback

from trainer.console import console, duration
from trainer.runs import RunDir
from trainer.system import since_process_start
from trainer.train.trackers import LOGGED


def memory(on_gpu: bool) -> dict[str, float]:
    """Peak GPU memory allocated and reserved by torch, or this process's resident memory on the CPU."""
    if on_gpu:
        import torch

        return {"memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                "memory_reserved_gb": round(torch.cuda.max_memory_reserved() / 2**30, 3)}
    import psutil

    return {"memory_gb": round(psutil.Process().memory_info().rss / 2**30, 3)}


class GpuBusy:
    """The fraction of time the GPU was running a kernel, sampled from NVML every 0.1 s (nvidia-ml-py).

    Low values with a fast GPU mean the step is CPU/launch-bound; `read()` averages the samples since the last read.
    Absent (None) where NVML is not installed or not working.
    """

    def __init__(self) -> None:
        self.samples: list[int] = []
        self.stopped = threading.Event()
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(_device_index())
            self.sample = lambda: pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            self.sample()
        except Exception:  # no NVML: report nothing rather than a guess
            self.sample = None
            return
        threading.Thread(target=self.loop, daemon=True, name="gpu-busy").start()

    def loop(self) -> None:
        while not self.stopped.wait(0.1):
            self.samples.append(self.sample())

    def read(self) -> float | None:
        samples, self.samples = self.samples, []
        return round(sum(samples) / len(samples) / 100, 3) if samples else None

    def stop(self) -> None:
        self.stopped.set()


def _device_index() -> int:
    """NVML's index of torch's current device (CUDA_VISIBLE_DEVICES renumbers torch's view, not NVML's)."""
    import os

    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
    current = torch.cuda.current_device()
    return int(visible[current]) if len(visible) > current and visible[current].strip().isdigit() else current


class MetricsCallback(TrainerCallback):
    """Writes metrics.jsonl and drives the one progress display (a live bar on a terminal, lines otherwise); `logged`
    maps the method's own metrics that TRL logs (Method.metrics) to our names in metrics.jsonl."""

    def __init__(self, run: RunDir, on_gpu: bool, startup: dict[str, float] | None = None,
                 log_every_s: float = 0.0, logged: dict[str, str] | None = None,
                 watch: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.run = run
        self.watch = watch  # sees every record written (the spill watch, train/spill_watch.py)
        self.logged = logged or {}
        self.log_every_s = log_every_s
        self.startup = startup or {}  # seconds since process start when each start-up stage ended
        self.on_gpu = on_gpu
        self.scaler: Any = None  # set by the recipe when training in fp16
        self.progress: Progress | None = None
        self.task = 0
        self.last_time = 0.0
        self.last_tokens = 0
        self.start = 0.0
        self.busy: GpuBusy | None = None
        self.at_start: dict[str, float] = {}  # GPU memory allocated when training begins (first step's record)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        previous = self.run.read_metrics()  # a resumed run continues the clock of the steps it keeps
        self.start = time.perf_counter() - (previous[-1]["elapsed_s"] if previous else 0.0)
        self.last_time = time.perf_counter()
        self.last_tokens = state.num_input_tokens_seen
        self.first_step = state.global_step + 1
        if not state.is_world_process_zero:  # of several processes, rank 0 alone writes and shows progress
            return
        self.busy = GpuBusy() if self.on_gpu else None
        if self.on_gpu:  # the model, its quantization state and the adapter, before any activation or optimizer state
            import torch

            self.at_start = {"memory_at_start_gb": round(torch.cuda.memory_allocated() / 2**30, 3)}
        if console.is_terminal:
            self.progress = Progress(
                TextColumn("step {task.completed}/{task.total}"), BarColumn(), TextColumn("{task.fields[info]}"),
                console=console,
            )
            self.task = self.progress.add_task("train", total=state.max_steps, completed=state.global_step, info="")
            self.progress.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Log the first step, checkpoints, the end, and otherwise every `log_every_s`: each log waits for the GPU,
        which then idles until the CPU has prepared the next step."""
        if (state.global_step == self.first_step or control.should_save or control.should_training_stop
                or time.perf_counter() - self.last_time >= self.log_every_s):
            control.should_log = True

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        logs = logs or {}
        now = time.perf_counter()
        if not state.is_world_process_zero:
            if "loss" in logs:
                self.last_time = now  # the clock that decides when to log (on_step_end) runs on every rank
            return
        record: dict[str, Any] = {"step": state.global_step, "max_steps": state.max_steps,  # a resume may change it
                                  "elapsed_s": round(now - self.start, 3)}
        if "eval_loss" in logs:
            record["eval_loss"] = logs["eval_loss"]
            self.write(record)
            self.say(f"step {state.global_step}/{state.max_steps}  eval loss {logs['eval_loss']:.4f}")
            return
        if "loss" not in logs:
            return
        tokens = state.num_input_tokens_seen
        tokens_per_s = (tokens - self.last_tokens) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_tokens = now, tokens
        record.update(
            loss=logs["loss"], lr=logs.get("learning_rate"), grad_norm=logs.get("grad_norm"), tokens=tokens,
            tokens_per_s=round(tokens_per_s, 1), **memory(self.on_gpu),
            **{ours: logs[theirs] for theirs, ours in self.logged.items() if theirs in logs},
        )
        if self.scaler is not None:
            record["loss_scale"] = self.scaler.get_scale()
        busy = self.busy.read() if self.busy else None
        if busy is not None:
            record["gpu_busy"] = busy
        if state.global_step == self.first_step:  # load + quantize + data + first step (and compilation)
            record["since_process_start_s"] = since_process_start()
            record["startup_s"] = self.startup
            record.update(self.at_start)
        self.write(record)
        logs.update({key: record[key] for key in LOGGED if key in record})  # for the trackers, which log after us
        used = f"{'VRAM' if self.on_gpu else 'RAM'} {record['memory_gb']:.2f} GB"
        elapsed = now - self.start
        eta = elapsed / max(state.global_step, 1) * (state.max_steps - state.global_step)
        info = f"loss {logs['loss']:.4f}  {tokens_per_s:,.0f} tok/s  {used}"
        if "reward_margin" in record:
            info += f"  margin {record['reward_margin']:.3f}"
        info += f"  elapsed {duration(elapsed)}  ETA {duration(eta)}"
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step, info=info)
        else:  # a log file or a pipe: one line per logged step, never wrapped (durations with units are long)
            done = state.global_step / max(state.max_steps, 1)
            console.print(f"step {state.global_step}/{state.max_steps} {done:4.0%}  {info}", soft_wrap=True)

    def write(self, record: dict[str, Any]) -> None:
        self.run.log(record)
        if self.watch is not None:
            self.watch(record)

    def say(self, text: str) -> None:
        (self.progress.console if self.progress else console).print(text)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.busy is not None:
            self.busy.stop()
        if self.progress is not None:
            self.progress.stop()


class GracefulStop(TrainerCallback):
    """First Ctrl+C or SIGTERM, or the run's stop request (RunDir.stop_request): finish the step, checkpoint, stop.
    A second Ctrl+C aborts at once."""

    def __init__(self, request: Path) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}
        self.request = request

    def __enter__(self) -> GracefulStop:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)
        started = time.time() - since_process_start()
        if self.request.is_file() and self.request.stat().st_mtime < started:  # left by a run that ended first
            self.request.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        # kept until the training ends: the run reads `stopping` (RunDir.state) through the checkpoint's save
        self.request.unlink(missing_ok=True)

    def handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        console.print(f"[yellow]{signal.Signals(signum).name}: finishing this step and saving a checkpoint "
                      "(Ctrl+C again aborts at once)[/]")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.signal is None and self.request.is_file():
            self.signal = signal.SIGINT  # as Ctrl+C
            console.print("[yellow]Stop requested: saving a checkpoint of this step[/]")
        if self.signal is not None:
            control.should_save = True
            control.should_training_stop = True
        elif state.global_step >= state.max_steps:
            control.should_save = True  # the last step is always checkpointed
