"""Data-parallel training through the real CLI on the CPU: two processes on gloo (torchrun), against one process with
the same global batch; kill -9 of one rank and --resume; two "machines" on one host; a rank that never connects.

Why the losses are equal to the last bit, not within a tolerance: both runs train the same micro-batches of 4 rows in
the same order (one global order, grouped by length over the rows of a whole step; under DDP micro-batch i goes to
rank i mod 2, so rank 0 and rank 1 together train the 2 micro-batches that one process accumulates). Each loss is
summed over the step's tokens and divided once by their count (gathered over the ranks); each rank multiplies its
loss by 2 and DDP divides the summed gradients by 2, both exact in binary floating point, and the sum of two
gradients is the same addition as accumulating them. With 3 or more ranks, or NCCL's ring order on GPUs, the sums
would be ordered differently and agree to float rounding (about 1e-7 relative), not bit for bit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import ROOT, assert_user_error, cli_command, free_port
from trainer.runs import RunDir, checkpoints

STEPS = 12
pytestmark = pytest.mark.slow


def train_args(model: Path, *extra: str) -> list[str]:
    # The cpu profile trains 4 rows per micro-batch; accumulation 2 gives 8 rows per step, which two processes
    # share out as 4 x 1 each. Rows grouped by length, as the GPU profiles train.
    return ["--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", str(STEPS),
            "--set", "grad_accum_steps=2", "--set", "save_every_steps=5", "--set", "learning_rate=3e-2",
            "--set", "eval_every_steps=6", "--set", "group_by_length=true", "--set", "pad_to_multiple_of=64", *extra]


def environment() -> dict[str, str]:
    env = cli_command()[1]
    # One thread per process (torchrun's default for several), the same for the single process; NVLink multicast
    # off, as the GPU host requires of every environment we make (a no-op here).
    return {**env, "OMP_NUM_THREADS": "1", "NCCL_NVLS_ENABLE": "0"}


def torchrun(*args: str, processes: int = 2) -> list[str]:
    """`torchrun --standalone` (a free port: other jobs on this machine may use torchrun's default 29500)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "trainer", *args]


def run(command: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout)


def start(command: list[str]) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def steps_of(run_dir: Path) -> list[dict]:
    return [m for m in RunDir(run_dir).read_metrics() if "loss" in m]


def evals_of(run_dir: Path) -> list[dict]:
    return [m for m in RunDir(run_dir).read_metrics() if "eval_loss" in m]


def rank_process(launcher: subprocess.Popen, rank: int, timeout: float = 120) -> psutil.Process:
    """The training process of `rank` among the launcher's descendants (torchrun sets RANK in its environment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(launcher.pid).children(recursive=True):
            try:
                if child.environ().get("RANK") == str(rank):
                    return child
            except psutil.Error:
                continue
        assert launcher.poll() is None, launcher.stdout.read()
        time.sleep(0.02)
    raise AssertionError(f"rank {rank} never started")


@pytest.fixture(scope="module")
def single(shared_tiny_llama, tmp_path_factory) -> Path:
    """One process, the same 8 rows per step."""
    run_dir = tmp_path_factory.mktemp("single") / "run"
    result = run([sys.executable, "-m", "trainer", *train_args(shared_tiny_llama, "--run-dir", str(run_dir))])
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


def test_two_processes_train_like_one_process_with_the_same_global_batch(shared_tiny_llama, single, tmp_path):
    runs_root = tmp_path / "runs"
    result = run(torchrun(*train_args(shared_tiny_llama, "--set", f"runs_root={runs_root}")))
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    (run_dir,) = runs_root.iterdir()  # rank 0 alone made the run directory
    assert RunDir(run_dir).read_status()["state"] == "completed"
    ours, reference = steps_of(run_dir), steps_of(single)
    assert [m["step"] for m in ours] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in ours] == [m["loss"] for m in reference]
    assert [m["grad_norm"] for m in ours] == [m["grad_norm"] for m in reference]
    assert [m["tokens"] for m in ours] == [m["tokens"] for m in reference]  # real tokens summed over the ranks
    # Evaluation is shared out too, over the same batches, but weighed differently: the Trainer divides each rank's
    # loss by the tokens of the batches evaluated at once on all ranks (one process: its own batch's), so the two
    # ranks' batches count by their tokens instead of equally. The same model, so close, not equal (0.2% here).
    assert [m["step"] for m in evals_of(run_dir)] == [m["step"] for m in evals_of(single)] == [0, 6, 12]
    assert [m["eval_loss"] for m in evals_of(run_dir)] == pytest.approx([m["eval_loss"] for m in evals_of(single)],
                                                                         rel=1e-2)
    benchmark = json.loads(RunDir(run_dir).benchmark.read_text())
    assert benchmark["world_size"] == 2 and benchmark["numbers"]["steps"] == STEPS
    last = run_dir / "checkpoints" / f"checkpoint-{STEPS}"
    assert checkpoints.problem(last) is None and checkpoints.world_size_of(last) == 2
    assert (last / "rng_state_0.pth").is_file() and (last / "rng_state_1.pth").is_file()
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    # Rank 0 speaks for both: each line once, and the share of a step said.
    assert out.count("Profile cpu:") == 1 and out.count("Done.") == 1
    assert out.count(f"step {STEPS}/{STEPS} 100%  loss") == 1
    assert "2 processes on 1 machine (gloo): each optimizer step trains 4 rows x 1 accumulation x 2 processes = 8 " \
           "rows, as the profile's 4 x 2" in " ".join(out.split())


def test_kill_9_of_one_rank_stops_the_job_and_resume_continues_it_exactly(shared_tiny_llama, single, tmp_path):
    run_dir = tmp_path / "run"
    launcher = start(torchrun(*train_args(shared_tiny_llama, "--run-dir", str(run_dir))))
    victim = rank_process(launcher, 1)
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "checkpoint-5").is_dir():
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.stdout.read()
        time.sleep(0.02)
    victim.kill()
    out = launcher.communicate(timeout=120)[0]
    assert launcher.returncode != 0
    # Rank 0 learns it from gloo at once and says so, without a traceback of ours.
    assert "error: another process of this job stopped, so this one (rank 0) stops too" in out, out
    assert RunDir(run_dir).read_status()["state"] == "failed"
    assert not (run_dir / "adapter").exists()

    alone = run([sys.executable, "-m", "trainer", "--resume", "--run-dir", str(run_dir)])
    assert_user_error(alone, "was written by 2 process(es); this resume runs 1", "--set resume_force=true")

    resumed = run(torchrun("--resume", "--run-dir", str(run_dir)))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming from checkpoint-" in resumed.stdout
    assert [m["step"] for m in steps_of(run_dir)] == list(range(1, STEPS + 1))
    assert [m["loss"] for m in steps_of(run_dir)] == [m["loss"] for m in steps_of(single)]
    assert RunDir(run_dir).read_status()["state"] == "completed"


def test_two_machines_on_one_host_train_together(shared_tiny_llama, single, tmp_path):
    run_dir, port = tmp_path / "run", free_port()

    def machine(rank: int) -> subprocess.Popen:
        command, _ = cli_command(*train_args(shared_tiny_llama, "--run-dir", str(run_dir), "--nnodes", "2",
                                             "--node-rank", str(rank), "--rdzv-endpoint", f"127.0.0.1:{port}"))
        return start(command)

    second, first = machine(1), machine(0)
    outputs = [first.communicate(timeout=600)[0], second.communicate(timeout=600)[0]]
    assert first.returncode == 0 and second.returncode == 0, "\n---\n".join(outputs)
    assert [m["loss"] for m in steps_of(run_dir)] == [m["loss"] for m in steps_of(single)]
    assert "2 processes on 2 machines (gloo)" in " ".join(outputs[0].split())
    # The second machine's process is rank 1: it prints nothing but errors (there were none).
    assert " ".join(outputs[1].split()) == (f"Starting 1 training process(es) on machine 1 of 2 (rendezvous "
                                            f"127.0.0.1:{port}) with torchrun")


def test_a_rank_that_never_connects_is_named(shared_tiny_llama, tmp_path):
    launcher = start(torchrun(*train_args(shared_tiny_llama, "--run-dir", str(tmp_path / "run"),
                                          "--set", "rank_timeout_s=5")))
    stuck, waiting = rank_process(launcher, 1), rank_process(launcher, 0)
    stuck.suspend()  # SIGSTOP before it joins: a rank that hangs while starting
    try:
        waiting.wait(timeout=120)  # rank 0 gives up after rank_timeout_s
    finally:
        stuck.kill()  # torchrun's agent would wait 30 s for a stopped process to take its SIGTERM
    out = launcher.communicate(timeout=120)[0]
    assert launcher.returncode != 0
    assert "error: rank 1 of 2 did not connect within 5 s (rendezvous " in " ".join(out.split()), out


@pytest.mark.parametrize("method", ["dpo", "orpo"])
def test_preference_tuning_on_two_processes_trains_like_one_process(method, shared_tiny_llama, tmp_path):
    """DPO and ORPO as SFT above: 8 pairs per step as 4 x 2 accumulated, or 4 x 1 on each of two processes; TRL's own
    sampler (no length grouping), its losses (a mean per micro-batch) and its reward metrics (gathered over ranks)."""
    args = ["--profile", "cpu", "--model", str(shared_tiny_llama), "--method", method, "--dataset", "sample",
            "--max-steps", "6", "--set", "grad_accum_steps=2", "--set", "save_every_steps=3", "--set",
            "learning_rate=3e-2", "--set", "eval_size=0"]
    one, two = tmp_path / "one", tmp_path / "two"
    single = run([sys.executable, "-m", "trainer", *args, "--run-dir", str(one)])
    assert single.returncode == 0, single.stdout + single.stderr
    result = run(torchrun(*args, "--run-dir", str(two)))
    assert result.returncode == 0, result.stdout + result.stderr
    ours, reference = steps_of(two), steps_of(one)
    assert [m["step"] for m in ours] == list(range(1, 7))
    for key in ("loss", "grad_norm", "tokens"):  # what is trained: the same to the last bit
        assert [m[key] for m in ours] == [m[key] for m in reference], key
    # TRL averages a step's rewards in float64 over the micro-batches of one process, and in float32 over the ranks
    # (gathered tensors) of several: the same numbers, rounded differently (seen: 1 part in 1e8).
    rewards = ("reward_chosen", "reward_rejected", "reward_margin", "reward_accuracy", *(
        ("log_odds_ratio",) if method == "orpo" else ()))
    for key in rewards:
        assert [m[key] for m in ours] == pytest.approx([m[key] for m in reference], rel=1e-6, abs=1e-7), key
    assert checkpoints.world_size_of(two / "checkpoints" / "checkpoint-6") == 2
    assert (two / "adapter" / "adapter_model.safetensors").is_file()
