"""What a training method (train.method) implements, as TRL gives each method its own Config and Trainer: the recipe
asks the run's method (methods.of) and never branches on its name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from trainer import system
    from trainer.config import Config
    from trainer.data import Prepared
    from trainer.distributed import ranks
    from trainer.runs import RunDir


class Method(Protocol):
    name: str  # its train.method
    samples: str  # what one training sample is called on the console: "rows", "preference pairs"
    from_run_note: str  # said after "Starting from the adapter of RUN" (model.from_run): what that adapter is to it
    metrics: dict[str, str]  # its own metrics that TRL logs, under our names in metrics.jsonl

    def load(self, config: Config) -> Any:
        """The configured dataset read and checked ("sample": the method's bundled sample), and the settings the
        method cannot train with refused: every problem is a UserError here, before the model loads. Leaves
        transformers, peft and trl unimported."""

    def build(self, config: Config, data: Any, tokenizer: Any, check: bool = True) -> Prepared:
        """Split `data` (from load) and make the rows its trainer takes. With check=False, too few to train on are no
        error (Prepared.problem says so): `trainer data` shows any file."""

    def describe(self, config: Config, job: ranks.Job, stats: dict[str, Any]) -> None:
        """The console lines on the built data (Prepared.stats) as the training starts."""

    def trainer_args(self, config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir,
                     has_eval: bool) -> Any:
        """Its TRL config (SFTConfig, DPOConfig, ...) from `config` settled for its engine, for this process of
        `job`: the Trainer's fields every method shares (common_args), then its own."""

    def trainer_class(self) -> type:
        """Its TRL trainer with what every run's trainer does (run_trainer.RunTrainerMixin), called with the model,
        trainer_args, the built datasets, the tokenizer, callbacks, run, config and job. Imports trl: only once the
        engine is loaded (unsloth patches trl on import)."""

    def preview(self, config: Config, n: int) -> None:
        """`trainer data`: the first `n` training samples as its trainer gets them, statistics, and what is wrong."""
