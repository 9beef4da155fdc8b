"""The LM head on trained positions only: the same loss and gradients as the model's own head and loss."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from tests.test_passes import assert_same, packed_batch, step, trainer_for
from tests.test_train import tiny_config
from trainer import head, train


def test_chunked_head_loss_equals_cross_entropy_over_the_full_logits():
    torch.manual_seed(0)
    rows = 2 * head.CHUNK_ROWS + 37  # three chunks, the last one short
    hidden = torch.randn(rows, 16, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(50, 16, dtype=torch.float64)
    targets = torch.randint(0, 50, (rows,))
    ours = head.ChunkedHeadLoss.apply(hidden, weight, targets)
    (3 * ours).backward()
    grad = hidden.grad.clone()
    hidden.grad = None
    reference = torch.nn.functional.cross_entropy(hidden @ weight.T, targets, reduction="sum")
    (3 * reference).backward()
    assert ours.item() == pytest.approx(reference.item(), rel=1e-12)
    assert torch.allclose(grad, hidden.grad, rtol=1e-10, atol=1e-12)


def test_a_trained_lm_head_is_refused():
    weight = torch.randn(5, 4, requires_grad=True)
    with pytest.raises(ValueError, match="computes no gradient for the LM head"):
        head.trained_positions_loss(torch.randn(1, 3, 4), weight, torch.tensor([[1, 2, 3]]))


@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_trained_positions_give_the_models_own_loss_and_gradients(layout, tiny_llama, tmp_path):
    settings = ["padding_free=off", "micro_batch_size=4"] if layout == "padded" else ["packing=true",
                                                                                      "micro_batch_size=1"]
    trainer = trainer_for(tiny_llama, tmp_path, *settings)
    batch = packed_batch(trainer)[0] if layout == "packed" else next(iter(trainer.get_train_dataloader()))
    count = (batch["labels"] != -100).sum()
    trained = (batch["labels"][:, 1:] != -100).sum().item()
    assert 0 < trained < 0.9 * batch["labels"][:, 1:].numel()  # prompts and headers are left out
    every = step(trainer, batch, count)
    trainer.config = dataclasses.replace(trainer.config, train=dataclasses.replace(trainer.config.train,
                                                                                   lm_head_positions="trained"))
    assert_same(step(trainer, batch, count), every)


def test_a_run_with_the_head_on_trained_positions_follows_the_usual_run(tiny_llama, tmp_path):
    """Step by step, train and eval losses of a short run are those of the model's own loss."""
    runs = {}
    for positions in ("all", "trained"):
        config, reason = tiny_config(tiny_llama, tmp_path / positions, "eval_every_steps=3", "dropout=0",
                                     f"lm_head_positions={positions}", max_steps=6)
        runs[positions] = [m.get("loss", m.get("eval_loss")) for m in train.main(config, reason).read_metrics()]
    assert len(runs["all"]) == len(runs["trained"]) == 9  # 6 steps, eval at 0, 3, 6
    assert runs["trained"] == pytest.approx(runs["all"], rel=1e-4)
