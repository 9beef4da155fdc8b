"""The head and loss over trained positions only give the loss and gradients of the head over every position."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trainer.engines.trained_positions import IGNORE, PAD_TO, trained_positions_only

calls: list[tuple[int, ...]] = []


def fused_loss(*, hidden_states, lm_head_weight, labels, n_items=None, shift_labels=True, mask=None, **kwargs):
    """What Unsloth's fused loss computes (unsloth_zoo compute_fused_ce_loss): the head, then sum / n_items, or the
    mean over trained labels."""
    calls.append(tuple(hidden_states.shape))
    if shift_labels:
        labels = torch.cat([labels[..., 1:], torch.full_like(labels[..., :1], IGNORE)], dim=-1)
    logits = hidden_states.float() @ lm_head_weight.float().T
    total = F.cross_entropy(logits.flatten(0, -2), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    return total / (n_items if n_items is not None else (labels != IGNORE).sum())


def loss_and_grads(loss_fn, hidden, weight, labels, n_items):
    hidden = hidden.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(True)
    loss = loss_fn(trainer=None, hidden_states=hidden, lm_head_weight=weight, lm_head_bias=None, labels=labels,
                   mask=None, n_items=n_items, scaling=None, shift_labels=True)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


def test_same_loss_and_gradients_as_every_position():
    torch.manual_seed(0)
    hidden, weight = torch.randn(1, 700, 32, dtype=torch.float64), torch.randn(50, 32, dtype=torch.float64)
    labels = torch.randint(0, 50, (1, 700))
    labels[0, :100] = IGNORE  # a prompt
    labels[0, 300:420] = IGNORE  # another conversation's prompt
    for n_items in (None, torch.tensor(1234.0, dtype=torch.float64)):
        calls.clear()
        expected = loss_and_grads(fused_loss, hidden, weight, labels, n_items)
        got = loss_and_grads(trained_positions_only(fused_loss), hidden, weight, labels, n_items)
        for a, b in zip(got, expected, strict=True):
            torch.testing.assert_close(a, b)
        trained = int((labels[0, 1:] != IGNORE).sum())
        assert calls == [(1, 700, 32), (1, -(-trained // PAD_TO) * PAD_TO, 32)]  # fewer rows of the head


def test_a_pass_without_trained_positions_gives_zero():
    hidden, weight = torch.randn(1, 10, 8), torch.randn(5, 8)
    labels = torch.full((1, 10), IGNORE)
    loss, hidden_grad, _ = loss_and_grads(trained_positions_only(fused_loss), hidden, weight, labels,
                                          torch.tensor(4.0))
    assert loss.item() == 0.0 and hidden_grad.abs().sum().item() == 0.0
