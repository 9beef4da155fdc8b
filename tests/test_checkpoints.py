from dataclasses import replace

from trainer.profiles import resolve
from trainer.runs import checkpoints


def make_checkpoint(folder, step, *, drop=None):
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    for name in (*checkpoints.REQUIRED, "rng_state.pth"):
        (path / name).write_bytes(b"x")
    (path / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, path / "adapter_model.safetensors")
    if drop:
        (path / drop).unlink()
    return path


def test_latest_valid_skips_incomplete_and_damaged_checkpoints_with_a_warning(tmp_path):
    make_checkpoint(tmp_path, 5)
    make_checkpoint(tmp_path, 10)
    make_checkpoint(tmp_path, 15, drop="optimizer.pt")
    damaged = make_checkpoint(tmp_path, 20)
    (damaged / "adapter_model.safetensors").write_bytes(b"\x00" * 3)
    (tmp_path / "checkpoint-x").mkdir()  # not a checkpoint at all
    warnings = []
    assert checkpoints.latest_valid(tmp_path, warnings.append) == tmp_path / "checkpoint-10"
    assert warnings[0].startswith(f"skipping {tmp_path / 'checkpoint-20'}: adapter_model.safetensors is damaged")
    assert warnings[1] == f"skipping {tmp_path / 'checkpoint-15'}: optimizer.pt is missing"


def test_state_must_match_the_folder_step(tmp_path):
    path = make_checkpoint(tmp_path, 5)
    (path / "trainer_state.json").write_text('{"global_step": 4}')
    assert checkpoints.problem(path) == "trainer_state.json says step 4"
    (path / "trainer_state.json").write_text("{")
    assert checkpoints.problem(path) == "trainer_state.json is unreadable"


def test_differences_name_what_changes_the_run():
    saved, _ = resolve("rtx3070")
    assert checkpoints.differences(saved, replace(saved, engine="transformers")) == []
    now = replace(saved, train=replace(saved.train, micro_batch_size=4, learning_rate=1e-4),
                  data=replace(saved.data, dataset="other.jsonl"))
    assert checkpoints.differences(saved, now) == [
        "data.dataset: 'mlabonne/FineTome-100k' -> 'other.jsonl'",
        "effective batch (micro_batch_size x grad_accum_steps): "
        f"{saved.train.micro_batch_size * saved.train.grad_accum_steps} -> {4 * saved.train.grad_accum_steps}",
    ]


def test_a_checkpoint_of_several_processes_has_each_rank_rng_and_its_world_size(tmp_path):
    path = make_checkpoint(tmp_path, 5, drop="rng_state.pth")
    assert checkpoints.problem(path) == "rng_state.pth is missing"
    assert checkpoints.world_size_of(path) == 1  # written before there were several, or by one process
    for rank in range(2):
        (path / f"rng_state_{rank}.pth").write_bytes(b"x")
    checkpoints.write_world(path, 2, 1)
    assert checkpoints.problem(path) is None and checkpoints.world_size_of(path) == 2
