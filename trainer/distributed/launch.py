"""`--gpus N|all` and `--nnodes`: the same command again, one process per GPU, under torch.distributed.run (torchrun).

On one machine torchrun's standalone rendezvous picks a free port. On several, its static rendezvous: every machine
runs the same command with its own `--node-rank`, and `--rdzv-endpoint HOST:PORT` names the machine of node rank 0,
which holds rank 0 (it writes the run directory). Without a GPU, `--nnodes` runs one CPU process per machine (gloo).
The exit code is the first failed process's, so a rank's UserError still exits 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from trainer.config import Launch
from trainer.console import console
from trainer.errors import UserError


def main(argv: list[str], launch: Launch, timeout_s: float) -> int:
    """Run `python -m trainer <argv>` as one process per GPU of this machine (and of the others, with --nnodes);
    returns the exit code. The CLI has resolved the settings first (after import_torch_quietly): a bad one fails
    once; `timeout_s` is their rank_timeout_s."""
    gpus, nnodes, node_rank, endpoint = launch.gpus, launch.nnodes, launch.node_rank, launch.rdzv_endpoint
    per_machine = processes_per_machine(gpus)
    options = ["--nproc-per-node", str(per_machine)]
    if nnodes == 1:
        options.append("--standalone")
    else:
        check_machines(nnodes, node_rank, endpoint)
        options += ["--nnodes", str(nnodes), "--node-rank", str(node_rank), "--rdzv-endpoint", str(endpoint),
                    "--rdzv-conf", f"timeout={int(timeout_s)}"]
    where = f"machine {node_rank} of {nnodes} (rendezvous {endpoint})" if nnodes > 1 else "this machine"
    console.print(f"Starting {per_machine} training process(es) on {where} with torchrun")
    return torchrun([*options, "--module", "trainer", *argv], timeout_s, endpoint)


def processes_per_machine(gpus: str | None) -> int:
    """One per GPU asked for (all of them by default); one CPU process where there is no GPU and --gpus was not
    given (machines that train together on their CPUs)."""
    import torch

    count = torch.cuda.device_count()
    if gpus is not None and gpus != "all" and not (gpus.isdigit() and int(gpus) > 0):
        raise UserError(f"--gpus {gpus}: expected a number of GPUs or 'all'", "e.g. --gpus 2, or --gpus all")
    if count == 0:
        if gpus is None:
            return 1
        raise UserError(
            f"--gpus {gpus}: no NVIDIA GPU was detected (torch {torch.__version__}, CUDA "
            f"{torch.version.cuda or 'none'})",
            "On the CPU, start several processes with torchrun (gloo): torchrun --nproc-per-node 2 -m trainer ...; "
            "on a GPU machine, install torch with CUDA (python -m trainer doctor says what is missing).",
        )
    asked = count if gpus in (None, "all") else int(gpus)
    if asked > count:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise UserError(f"--gpus {gpus}: this machine has {count} GPU(s)"
                        + (f" visible (CUDA_VISIBLE_DEVICES={visible})" if visible is not None else ""),
                        f"Use --gpus {count} (or --gpus all).")
    check_free(asked)
    return asked


BUSY_MB = 1024  # MB that other programs may hold on a GPU this job takes; more, and the GPU is refused


def check_free(count: int) -> None:
    """Refuse GPUs where other programs already hold more than BUSY_MB: it is missing from what the profile plans
    for, and the run would stop out of memory later, on one rank, after minutes of loading. Less (an idle notebook's
    CUDA context) is only said."""
    import psutil
    import torch

    held: dict[int, list[str]] = {}
    total: dict[int, float] = {}
    for index in range(count):
        try:
            listing = torch.cuda.list_gpu_processes(index)  # NVML: no CUDA context in this process
        except Exception:  # NVML unusable (no nvidia-ml-py, Windows drivers without per-process memory): unknown
            continue
        for pid, mb in re.findall(r"process\s+(\d+) uses\s+([\d.]+) MB", listing):
            try:
                name = psutil.Process(int(pid)).name()
            except psutil.Error:
                name = "?"
            held.setdefault(index, []).append(f"GPU {index}: process {pid} ({name}) uses {float(mb):,.0f} MB")
            total[index] = total.get(index, 0.0) + float(mb)
    lines = [line for index in held for line in held[index]]
    if any(mb > BUSY_MB for mb in total.values()):
        raise UserError("a GPU this job needs is busy:\n  " + "\n  ".join(lines),
                        "Stop that program, or train on the free GPUs only: CUDA_VISIBLE_DEVICES=<their numbers> "
                        "python -m trainer ... --gpus all.")
    if lines:
        console.print("[yellow]Other programs use these GPUs a little:[/] " + "; ".join(lines))



def check_machines(nnodes: int, node_rank: int, endpoint: str | None) -> None:
    if not endpoint or not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", endpoint):
        raise UserError(f"--nnodes {nnodes} needs --rdzv-endpoint HOST:PORT (got {endpoint or 'none'}): the address "
                        "of the machine started with --node-rank 0, and a free port there",
                        "e.g. --rdzv-endpoint 192.168.1.10:29500 on every machine.")
    if not 0 <= node_rank < nnodes:
        raise UserError(f"--node-rank {node_rank} is outside 0..{nnodes - 1} (--nnodes {nnodes})",
                        "Give each machine its own number: 0 on the one named by --rdzv-endpoint, then 1, 2, ...")


def torchrun(arguments: list[str], timeout_s: float, endpoint: str | None) -> int:
    """torch.distributed.run with these arguments, in this process: its agent starts and watches the workers, and
    stops them all when one fails. Returns the first failure's exit code (128 + N for signal N)."""
    from torch.distributed import DistError
    from torch.distributed import run as torch_run
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous import RendezvousError

    quiet_launcher_logs()
    if sys.platform == "win32":
        os.environ.setdefault("USE_LIBUV", "0")  # Windows builds of torch have no libuv for the rendezvous store
    try:
        torch_run.run(torch_run.parse_args(arguments))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        code = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode
        if code in (130, 143):  # Ctrl+C or SIGTERM on another machine: every rank checkpointed and stopped
            console.print(f"[yellow]Stopped[/] (rank {rank} exited with {code}).")
        else:
            console.print(f"[red]Rank {rank} failed (exit code {failure.exitcode})[/], and the job stopped.")
        return code
    except SignalException as e:  # Ctrl+C or SIGTERM: the workers got it too, and checkpointed
        return 128 + int(e.sigval)
    except (RendezvousError, DistError) as e:
        raise UserError(f"the machines did not meet at the rendezvous {endpoint} within {timeout_s:g} s: "
                        f"{str(e).splitlines()[0]}",
                        "Start the same command on every machine, each with its own --node-rank; check that "
                        "HOST:PORT is the address of --node-rank 0 and that this port is open in its firewall; "
                        "--set rank_timeout_s=N waits longer.") from None
    return 0


def import_torch_quietly() -> None:
    """torch's C++ logs in this process off: a rendezvous that cannot reach the other machine logs each try with a
    stack trace, before the error we turn into a message. Read once, when torch loads; the workers keep the user's."""
    if "torch" in sys.modules:
        return
    before = os.environ.get("TORCH_CPP_LOG_LEVEL")
    os.environ["TORCH_CPP_LOG_LEVEL"] = "FATAL"
    import torch  # noqa: F401

    if before is None:
        del os.environ["TORCH_CPP_LOG_LEVEL"]
    else:
        os.environ["TORCH_CPP_LOG_LEVEL"] = before


def quiet_launcher_logs() -> None:
    """torchrun's agent logs each start and stop, and each failure with its own summary; the ranks' output and ours
    say what matters."""
    for name in [*logging.root.manager.loggerDict, "torch.distributed"]:
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
