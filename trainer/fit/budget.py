"""How much GPU memory training may take: what is free on the card at start (others hold the rest), a cap the user
set, or, planning without the card, its label less what the desktop and the CUDA context take."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.config import Config

# Outside torch's allocator and not yet loaded when free memory is read (reading it creates this process's CUDA
# context, so the context itself is already counted as used): the kernels and workspaces cuBLAS, Triton and Unsloth
# load once training starts.
CONTEXT_GB = 0.5
# A card named by its label (planning with no GPU here): an idle desktop and the context take about 1 GB of 8 or 16
# (the emulated cards' 7 and 15 GB, trainer/bench/cards.py).
LABEL_RESERVE_GB = 1.0


@dataclass(frozen=True)
class Budget:
    gb: float
    why: str  # what it is: "6.8 GB free of 7.8 (other programs and this process's CUDA context use 0.5, ...)"


def budget(config: Config, free_gb: float | None = None, total_gb: float | None = None) -> Budget:
    """The budget of `config`'s card: its run.vram_cap_gb, else what is free on the GPU here (`free_gb` of
    `total_gb`), else its profile's vram_gb less LABEL_RESERVE_GB."""
    if config.run.vram_cap_gb:
        return Budget(config.run.vram_cap_gb, f"{config.run.vram_cap_gb:g} GB (run.vram_cap_gb)")
    if free_gb is not None and total_gb is not None:
        others = max(0.0, total_gb - free_gb)
        return Budget(round(max(0.0, free_gb - CONTEXT_GB), 1),
                      f"{free_gb - CONTEXT_GB:.1f} GB free of {total_gb:.1f} (other programs and this process's CUDA "
                      f"context use {others:.1f}; {CONTEXT_GB} GB kept for the kernels loaded later)")
    label = config.hardware.vram_gb
    return Budget(max(0.0, label - LABEL_RESERVE_GB), f"{label - LABEL_RESERVE_GB:g} GB of the card's {label:g} (the "
                  "desktop and the CUDA context take the rest)")
