"""Each process's part in a job of several (DDP): joining the process group, rank 0 speaking and writing for all,
waiting for each other with a timeout that names who is missing, and the decisions all ranks must take together.

A job is started by `--gpus` / `--nnodes` (trainer/distributed/launch.py), by `torchrun` or by `accelerate launch`;
they describe it in the environment, which the CLI reads once (config.world); `start` turns that World into the Job
every stage is handed. A plain `python -m trainer` is rank 0 of 1: nothing here waits.
Only the LoRA gradients are all-reduced, by the Trainer's DDP; these waits and decisions go through a gloo group on
the CPU, so none of them waits for the GPU.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from trainer.config import Config, World
from trainer.console import console
from trainer.errors import UserError


@dataclass(frozen=True)
class Job:
    """This process's part in a training job, handed to each stage: its place (world), the gloo group its waits and
    decisions go through (None for one process), and the backend that all-reduces the gradients (None alone)."""

    world: World = field(default_factory=World)
    control: Any = None
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.world.is_main

    @property
    def size(self) -> int:
        return self.world.size


def start(world: World, timeout_s: float) -> Job:
    """Join the job: this rank's GPU (made current before anything else touches one, so that no rank opens a context
    on GPU 0), the process group and the gloo group for waits, each rank connected to every other within
    `timeout_s`. One process joins nothing."""
    if world.size == 1:
        return Job(world)
    import torch
    import torch.distributed as dist

    on_gpu = torch.cuda.is_available()
    if on_gpu:
        use_own_gpu(world)
    backend = backend_for(on_gpu, world)
    timeout = timedelta(seconds=timeout_s)
    try:
        if not dist.is_initialized():  # accelerate launch may have done it
            # gloo connects every pair of ranks here; NCCL connects at the first all-reduce, with its own timeout.
            dist.init_process_group(backend, timeout=timeout if backend == "gloo" else None)
        control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else dist.group.WORLD
    except RuntimeError as e:  # torch's DistError is one
        # gloo waits for the address each rank publishes under a key ending in its rank number
        keys = re.search(r"keys: (.*)", str(e))
        missing = sorted({int(k) for k in re.findall(r"/(\d+)(?:,|$)", keys.group(1))}) if keys else []
        who = f"rank {', '.join(map(str, missing))} of {world.size} did not connect" if missing else \
            f"the {world.size} processes did not all connect"
        raise UserError(f"{who} within {timeout_s:g} s (rendezvous {world.rendezvous}; this is rank {world.rank}): "
                        f"{str(e).splitlines()[0]}",
                        "Its output says what holds it (a process that never started, or hangs while starting); "
                        "raise the wait with --set rank_timeout_s=1800.") from None
    return Job(world, control, backend)


def backend_for(on_gpu: bool, world: World) -> str:
    """nccl between GPUs where torch has it; gloo on the CPU, and on Windows, whose torch builds have no NCCL."""
    import torch.distributed as dist

    if not on_gpu:
        return "gloo"
    if dist.is_nccl_available():
        return "nccl"
    why = "Windows builds of torch have no NCCL" if sys.platform == "win32" else "this torch build has no NCCL"
    if world.is_main:
        console.print(f"[yellow]Gradients are all-reduced with gloo: {why}. gloo copies them through the CPU "
                      "each step, slower than NCCL between GPUs (on Linux, NCCL comes with torch's CUDA wheels).[/]")
    return "gloo"


def use_own_gpu(world: World) -> None:
    """Make the GPU of this rank's local rank current (engines load the model there), and fail clearly where it is
    missing or taken."""
    import torch

    count = torch.cuda.device_count()
    if world.local_rank >= count:
        raise UserError(f"rank {world.rank} needs GPU {world.local_rank} of this machine, which shows {count}",
                        f"Start at most {count} processes per machine (--gpus {count}, or --gpus all), or make "
                        "more GPUs visible (CUDA_VISIBLE_DEVICES).")
    torch.cuda.set_device(world.local_rank)
    try:
        torch.zeros(1, device="cuda")  # creates this process's context on the GPU
    except RuntimeError as e:
        if "busy or unavailable" not in str(e):
            raise
        raise UserError(f"GPU {world.local_rank} is busy: another program holds it, and its compute mode lets only "
                        "one process use it", "Stop that program (nvidia-smi lists it), choose other GPUs with "
                        "CUDA_VISIBLE_DEVICES, or set the GPU's compute mode to DEFAULT (nvidia-smi -c 0).") from None


def speak_only_on_main(world: World) -> None:
    """Ranks other than 0 print nothing but errors: no console output, no warnings, no library logging. The CLI
    decides this once, for the whole process, where it reads the World."""
    if world.is_main:
        return
    import logging
    import warnings

    console.quiet = True
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def wait(job: Job, what: str) -> None:
    """Wait until every rank has done `what` (a step of the run that all ranks take at once: a checkpoint)."""
    if job.control is not None:
        import torch.distributed as dist

        dist.barrier(group=job.control)


@contextlib.contextmanager
def main_first(what: str, job: Job, timeout_s: float) -> Iterator[None]:
    """Rank 0 does `what` first (a download, the tokenization, their caches) while the others wait as long as it
    takes; then they do it and find the caches warm (correct without a cache too: each does the work itself). Rank 0
    waits for the others only `timeout_s`, then names those that never came (see meet)."""
    if not job.is_main:
        meet(what, job, max(timeout_s, WAIT_FOR_RANK_0_S))
    yield
    if job.is_main:
        meet(what, job, timeout_s)


WAIT_FOR_RANK_0_S = 1800.0  # torch's own default for a collective: rank 0 may be downloading a large dataset


def meet(what: str, job: Job, timeout_s: float) -> None:
    """Every rank has done `what`, or the job stops after `timeout_s` naming the ranks that have not (a rank that
    hangs while loading would otherwise hold the others for the process group's 30 minutes). gloo's monitored
    barrier: rank 0 waits for each of the others, each of them for rank 0, each with its own timeout."""
    if job.control is None:
        return
    import torch.distributed as dist

    world = job.world
    try:
        dist.monitored_barrier(group=job.control, timeout=timedelta(seconds=timeout_s), wait_all_ranks=True)
    except RuntimeError as e:
        found = re.search(r"Ranks? ([\d, ]+) failed to pass", str(e))
        who = f"rank {found.group(1)}" if found and world.is_main else "rank 0" if not world.is_main else "a rank"
        raise UserError(
            f"{who} of {world.size} did not finish {what} within {timeout_s:g} s (rendezvous {world.rendezvous}; "
            f"this is rank {world.rank})",
            "See that rank's output (on its machine) for what it waits on: a GPU taken by another program, a model "
            "still downloading, a machine that did not start. Raise the wait with --set rank_timeout_s=1800.",
        ) from None


def share(job: Job, value: Any) -> Any:
    """Rank 0's `value`, on every rank."""
    if job.control is None:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0, group=job.control)
    return box[0]


def agree(job: Job, values: list[int]) -> list[int]:
    """The largest of each value over the ranks: a flag any rank raised is raised on all."""
    if job.control is None:
        return values
    import torch
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=job.control)
    return tensor.tolist()


def peer_lost(error: BaseException) -> bool:
    """Whether a collective failed because another process of the job is gone (killed, crashed, stopped)."""
    signs = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted")
    return isinstance(error, RuntimeError) and any(sign in str(error) for sign in signs)


@contextlib.contextmanager
def peers_watched(job: Job, resume_command: str) -> Iterator[None]:
    """A collective that failed because another process of the job is gone becomes a UserError saying so (the other
    process's output says why)."""
    try:
        yield
    except RuntimeError as e:
        if not peer_lost(e):
            raise
        raise UserError(f"another process of this job stopped, so this one (rank {job.world.rank}) stops too: "
                        f"{str(e).splitlines()[0]}", "Its output says why. Continue from the last checkpoint "
                        f"with: {resume_command}{same_processes(job.world)}") from None


def same_processes(world: World) -> str:
    """What a resume command needs besides --resume: the job's processes."""
    if world.size == 1:
        return ""
    return (f", started as before with {world.size} processes (the same --gpus and --nnodes, or torchrun "
            f"--nproc-per-node {world.local_size})")


def grad_accum_per_rank(config: Config, world_size: int) -> int:
    """Each rank's accumulation: the profile's, divided by the number of processes where it divides, so an
    optimizer step still trains micro_batch_size x grad_accum_steps rows."""
    steps = config.train.grad_accum_steps
    return steps // world_size if steps % world_size == 0 else steps


def job_config(config: Config, world_size: int) -> Config:
    """`config` with the accumulation of the whole job: micro x that = the rows of one optimizer step (as the data
    stage counts them), which is the profile's unless its accumulation does not divide by the processes."""
    import dataclasses

    steps = grad_accum_per_rank(config, world_size) * world_size
    return dataclasses.replace(config, train=dataclasses.replace(config.train, grad_accum_steps=steps))


def describe(config: Config, world: World, backend: str | None) -> str:
    """One line: the processes, and how the rows of an optimizer step are shared out."""
    micro, steps = config.train.micro_batch_size, config.train.grad_accum_steps
    per_rank = grad_accum_per_rank(config, world.size)
    machines = world.size // world.local_size
    line = (f"{world.size} processes on {machines} machine{'s' if machines > 1 else ''} ({backend}): each optimizer "
            f"step trains {micro} rows x {per_rank} accumulation x {world.size} processes = "
            f"{micro * per_rank * world.size} rows")
    if per_rank * world.size == steps:
        return line + f", as the profile's {micro} x {steps}"
    return (f"[yellow]{line}, {world.size}x the profile's {micro} x {steps}: its grad_accum_steps {steps} does not "
            f"divide by {world.size} processes[/] (--set grad_accum_steps=N with N a multiple of {world.size} keeps "
            "the step's rows; learning rate and steps are as set)")


def check_resume(checkpoint: Path, written_by: int, world: World, force: bool) -> None:
    """A checkpoint continues with the number of processes that wrote it: each process's data position, RNG and
    share of the step are in it."""
    if written_by == world.size:
        return
    if force:
        console.print(f"[yellow]Resuming {checkpoint.name} of {written_by} process(es) with {world.size} "
                      "(resume_force): the data order and the RNG differ from the run's from here.[/]")
        return
    raise UserError(
        f"{checkpoint} was written by {written_by} process(es); this resume runs {world.size}: the rows each "
        "process trains, the data position and the random state would not continue the run",
        f"Resume with {written_by} process(es)" + (f" (--gpus {written_by}, or torchrun --nproc-per-node "
                                                   f"{written_by})" if written_by > 1 else " (without --gpus)")
        + ", or --set resume_force=true to continue anyway.",
    )
