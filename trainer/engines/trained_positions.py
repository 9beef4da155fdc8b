"""The LM head and loss over the trained positions only (train.trained_positions_only), around Unsloth's fused loss.

A 1B token's 128k-vocabulary head is about a fifth of its FLOPs, and on FineTome-like data only 57% of the positions
are trained (prompts, system turns and headers are not). Unsloth's fused loss takes hidden states and labels; given
only the positions whose next token is trained, it computes the same sum (or mean) over fewer rows of the head.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

IGNORE = -100
PAD_TO = 256  # kept positions are padded (labels IGNORE) to a multiple of this: few shapes for the compiled loss


def trained_positions_only(fused_loss: Callable[..., Any]) -> Callable[..., Any]:
    """`fused_loss` (Unsloth's unsloth_fused_ce_loss, called with keywords) over the positions whose label is
    trained. Finding them waits for the GPU once per pass (the count decides the shape)."""

    @functools.wraps(fused_loss)
    def loss(*, hidden_states: Any, labels: Any, shift_labels: bool = True, mask: Any = None, **kwargs: Any) -> Any:
        if mask is not None:  # a mask of its own: leave the call as it was
            return fused_loss(hidden_states=hidden_states, labels=labels, shift_labels=shift_labels, mask=mask,
                              **kwargs)
        import torch

        if shift_labels:  # position t predicts token t + 1
            hidden_states, labels = hidden_states[..., :-1, :], labels[..., 1:]
        hidden_states = hidden_states.reshape(-1, hidden_states.shape[-1])
        labels = labels.reshape(-1)
        kept = (labels != IGNORE).nonzero().squeeze(1)
        padded = -(-max(kept.numel(), 1) // PAD_TO) * PAD_TO
        index = torch.cat([kept, kept.new_zeros(padded - kept.numel())])
        chosen = labels[index]
        chosen[kept.numel():] = IGNORE
        return fused_loss(hidden_states=hidden_states[index].unsqueeze(0), labels=chosen.unsqueeze(0),
                          shift_labels=False, **kwargs)

    loss.trained_positions_only = True  # type: ignore[attr-defined]
    return loss


def patch_unsloth() -> None:
    """Unsloth's Llama forward calls the fused loss by its module-level name; wrap it there (once per process)."""
    from unsloth.models import llama

    if not getattr(llama.unsloth_fused_ce_loss, "trained_positions_only", False):
        llama.unsloth_fused_ce_loss = trained_positions_only(llama.unsloth_fused_ce_loss)
