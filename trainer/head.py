"""The loss with the LM head run only where a token is trained (`train.lm_head_positions = "trained"`).

A Llama 3.2 LM head is a 128,256-wide matmul: about a fifth of the 1B model's FLOPs per token, plus a log-softmax over
the vocabulary. Prompts, chat-template headers and the first token of every packed conversation are never trained,
yet the model's own forward runs the head on them too. Here the engine returns the final hidden states, and the head
and cross-entropy run on the trained positions alone, in chunks: the gradient with respect to the hidden states is
computed in the forward pass, so no [positions x vocabulary] logits are kept for the backward pass. The loss is the
same sum over trained tokens divided by the same count; the LM head must be frozen (LoRA leaves it so).
"""

from __future__ import annotations

from typing import Any

import torch

CHUNK_ROWS = 512  # positions per chunk: 512 x 128,256 fp32 logits are 250 MB


class ChunkedHeadLoss(torch.autograd.Function):
    """Summed cross-entropy of `hidden @ weight.T` against `targets`, chunk by chunk."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        exact = torch.promote_types(hidden.dtype, torch.float32)  # the softmax in fp32 at least
        total = torch.zeros((), dtype=exact, device=hidden.device)
        grad = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        for start in range(0, hidden.shape[0], CHUNK_ROWS):
            rows = slice(start, start + CHUNK_ROWS)
            logits = (hidden[rows] @ weight.T).to(exact)
            target = targets[rows]
            normalizer = torch.logsumexp(logits, dim=-1)
            total += (normalizer - logits.gather(1, target[:, None]).squeeze(1)).sum()
            if grad is not None:  # d(sum of losses)/d(logits) = softmax - one-hot
                probabilities = logits.sub_(normalizer[:, None]).exp_()
                probabilities[torch.arange(target.shape[0], device=target.device), target] -= 1
                grad[rows] = probabilities.to(weight.dtype) @ weight
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        (grad,) = ctx.saved_tensors
        return (None if grad is None else grad * grad_output.to(grad.dtype)), None, None


def trained_positions_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                           num_items_in_batch: Any = None) -> torch.Tensor:
    """The causal LM loss of the model's final hidden states [rows, tokens, width] against `labels` (-100: not
    trained): summed over trained tokens, divided by `num_items_in_batch` (the step's count), else by their count."""
    if weight.requires_grad:
        raise ValueError("lm_head_positions = \"trained\" computes no gradient for the LM head, which is trained here")
    targets = labels[:, 1:]
    trained = targets != -100
    total = ChunkedHeadLoss.apply(hidden[:, :-1][trained], weight, targets[trained])
    count = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    return total / count
