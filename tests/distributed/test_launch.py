"""What a job of several processes refuses before it starts, through the real CLI, and how a step's rows are shared
out (the runs themselves: test_ddp.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli
from trainer.config import World
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.profiles import resolve

NO_GPU = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="what a machine without a GPU is told")


@pytest.mark.parametrize("args, fragments", [
    pytest.param(["--gpus", "2"], ["--gpus 2: no NVIDIA GPU was detected", "torchrun --nproc-per-node 2 -m trainer"],
                 marks=NO_GPU),
    (["--gpus", "two"], ["--gpus two: expected a number of GPUs or 'all'"]),
    (["--nnodes", "2"], ["--nnodes 2 needs --rdzv-endpoint HOST:PORT (got none)"]),
    (["--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:29500"], ["--node-rank 2 is outside 0..1"]),
    (["--nnodes", "2", "--rdzv-endpoint", "127.0.0.1:29500", "--set", "lora.r=zero"], ["lora.r = 'zero'"]),
])
def test_launch_options_are_checked_before_any_process_starts(args, fragments, tmp_path):
    result = run_cli("--profile", "cpu", "--dataset", "sample", "--set", f"runs_root={tmp_path / 'runs'}", *args)
    assert_user_error(result, *fragments)
    assert "Starting" not in result.stdout and not (tmp_path / "runs").exists()


def cpu_config(grad_accum_steps: int):
    return resolve("cpu", [f"grad_accum_steps={grad_accum_steps}"])[0]


def test_accumulation_is_divided_by_the_processes_where_it_divides():
    world = World(True, 0, 0, 2, 2, "127.0.0.1:1")
    config = cpu_config(4)
    assert ranks.grad_accum_per_rank(config, 2) == 2 and ranks.job_config(config, 2).train.grad_accum_steps == 4
    assert "4 rows x 2 accumulation x 2 processes = 16 rows, as the profile's 4 x 4" in ranks.describe(config, world,
                                                                                                        "gloo")
    odd = cpu_config(3)  # does not divide: each process keeps 3, and a step trains twice the profile's rows
    assert ranks.grad_accum_per_rank(odd, 2) == 3 and ranks.job_config(odd, 2).train.grad_accum_steps == 6
    line = ranks.describe(odd, world, "gloo")
    assert "= 24 rows, 2x the profile's 4 x 3" in line and "does not divide by 2 processes" in line


def test_a_checkpoint_resumes_with_the_processes_that_wrote_it():
    checkpoint = Path("runs/x/checkpoints/checkpoint-5")
    ranks.check_resume(checkpoint, 2, World(True, 0, 0, 2, 2, ""), force=False)
    with pytest.raises(UserError) as refused:
        ranks.check_resume(checkpoint, 2, World(), force=False)
    assert "was written by 2 process(es); this resume runs 1" in refused.value.message
    assert "--gpus 2, or torchrun --nproc-per-node 2" in refused.value.hint
    with pytest.raises(UserError) as refused:
        ranks.check_resume(checkpoint, 1, World(True, 0, 0, 4, 4, ""), force=False)
    assert "(without --gpus)" in refused.value.hint
    ranks.check_resume(checkpoint, 1, World(True, 0, 0, 4, 4, ""), force=True)  # resume_force: said, not refused
