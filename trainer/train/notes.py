"""What a run says of itself before it trains, true of this run: why its profile (with the user's own model or
data), a busy CPU and what helps, a warmup longer than the run cut to fit it."""

from __future__ import annotations

import dataclasses

from trainer import weights
from trainer.config import Config
from trainer.console import console


def true_of_this_run(profile_reason: str, config: Config) -> str:
    """Why the profile was picked, said of this run: auto's reason for the cpu profile (trainer/profiles.py) speaks of
    the offline demo, which is SmolLM2 on the bundled sample; with the user's own model or data it is a training of
    those on the CPU."""
    demo = "running the offline CPU demo"
    if demo not in profile_reason or is_demo(config):
        return profile_reason
    model = "" if config.model.name == weights.SMOLLM2 else f" {config.model.name}"
    data = "" if config.data.dataset == "sample" else f", on {config.data.dataset}"
    return profile_reason.replace(demo, f"training{model} on the CPU{data}")


def is_demo(config: Config) -> bool:
    return config.model.name == weights.SMOLLM2 and config.data.dataset == "sample"


def busy_cores_note(cores: int, load: float, threads: int) -> str | None:
    """On the CPU, what a machine already busy (its `load` before this run trains, on `cores`) does to a run of
    several torch `threads` and what helps: the threads wait for each other when another program holds a core
    (docs/development.md: 4 to 9 tokens/s on 2 busy cores, 100 with OMP_NUM_THREADS=1)."""
    if load < 1 or threads < 2:
        return None
    return (f"[yellow]CPU: other programs already keep about {min(load, cores):.1f} of this machine's {cores} cores "
            f"busy (load {load:.1f}): torch's {threads} threads wait for them, so this run may take several times "
            "as long as on free cores (the demo: about 2 min on 2 free cores).[/] Stop those programs, or run with "
            "OMP_NUM_THREADS=1 (one thread: nothing to wait for).")


def clip_warmup(config: Config) -> Config:
    """A warmup that would take more than half of the run's steps, cut to a fifth of them (said): the learning rate
    would otherwise barely reach its value before the run ends. Runs counted in epochs (max_steps 0) keep theirs."""
    train = config.train
    if not train.max_steps or train.warmup_steps <= train.max_steps // 2:
        return config
    clipped = train.max_steps // 5
    console.print(f"Warmup clipped to {clipped} steps (a fifth of this run's {train.max_steps}): warmup_steps="
                  f"{train.warmup_steps} would leave the learning rate below {train.learning_rate:g} for "
                  f"{'all' if train.warmup_steps >= train.max_steps else 'most'} of the run")
    return dataclasses.replace(config, train=dataclasses.replace(train, warmup_steps=clipped))
