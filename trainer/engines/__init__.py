"""Engines load (model, tokenizer) ready for LoRA training; the run's method (train/methods/) trains them with its
TRL trainer."""

from __future__ import annotations

from typing import Any, Protocol

from trainer.config import Config
from trainer.errors import UserError
from trainer.system import Gpu


class Engine(Protocol):
    def load(self, config: Config, gpu: Gpu | None) -> tuple[Any, Any]:
        """The PEFT-wrapped model and its tokenizer."""


def choose(config: Config, gpu: Gpu | None) -> tuple[str, str]:
    """The engine to run and why. Importing unsloth here, before anything imports transformers, lets it patch them."""
    if config.engine == "transformers":
        return "transformers", "asked for with engine=transformers"
    if gpu is None:
        if config.engine == "unsloth":
            raise UserError("engine=unsloth needs an NVIDIA GPU, and none was detected",
                            "Use --set engine=transformers.")
        return "transformers", "no CUDA GPU, and unsloth needs one"
    problem = unsloth_import_problem()
    if problem is None:
        return "unsloth", "CUDA GPU found and unsloth imports" if config.engine == "auto" else "asked for"
    if config.engine == "unsloth":
        raise UserError(f"engine=unsloth was asked for, but unsloth does not import: {problem}",
                        "Install the GPU extra (pip install -e \".[gpu]\") or use --set engine=transformers.")
    return "transformers", f"unsloth does not import ({problem})"


def unsloth_import_problem() -> str | None:
    try:
        import unsloth  # noqa: F401
    except Exception as e:  # any failure (no triton, wrong torch, no GPU) means: use the other engine
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def get(name: str) -> Engine:
    if name == "unsloth":
        from trainer.engines import unsloth_engine

        return unsloth_engine
    from trainer.engines import transformers_engine

    return transformers_engine
