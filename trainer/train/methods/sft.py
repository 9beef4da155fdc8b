"""SFT (train.method sft): conversations or text tokenized into rows with assistant masks (data.build_rows), TRL's
SFTConfig, one field per line with its reason, and our SFTRunTrainer (micro-batch passes, the seeded length-grouped
order)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer import data, system
from trainer.config import Config
from trainer.console import console
from trainer.data.formats import Examples
from trainer.distributed import ranks
from trainer.runs import RunDir, speed
from trainer.train.common_args import common_args, eval_cadence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase
    from trl import SFTConfig


class SFT:
    name = "sft"
    samples = "rows"
    from_run_note = ""
    metrics: dict[str, str] = {}  # loss and the Trainer's own: nothing of its own

    def load(self, config: Config) -> Examples:
        """Conversations or text in any of data.formats; "sample" is the bundled conversations."""
        return data.load_rows(config)

    def build(self, config: Config, examples: Examples, tokenizer: PreTrainedTokenizerBase,
              check: bool = True) -> data.Prepared:
        return data.build_rows(config, examples, tokenizer, check)

    def describe(self, config: Config, job: ranks.Job, stats: dict[str, Any]) -> None:
        console.print(
            f"Tokenized {stats['train_rows']} train / {stats['eval_rows']} eval rows; tokens per row "
            f"min {stats['tokens_min']}, median {stats['tokens_median']:.0f}, max {stats['tokens_max']}; "
            f"{stats['trained_token_fraction']:.0%} of tokens trained"
        )
        if job.size > 1:
            console.print(ranks.describe(config, job.world, job.backend))
        if stats["eval_rows"] and config.train.eval_every_steps:
            share = eval_share(ranks.job_config(config, job.size), stats["eval_rows"], stats["tokens_mean"])
            line = (f"Eval loss on {stats['eval_rows']} held-out rows {eval_cadence(config)[0]}: "
                    f"about {share:.0%} of the training's GPU work")
            console.print(f"[yellow]{line}[/] (lower eval_max_examples or raise eval_every_steps)"
                          if share > 0.1 else line)

    def trainer_args(self, config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir,
                     has_eval: bool) -> SFTConfig:
        from trl import SFTConfig

        train = config.train
        return SFTConfig(
            **common_args(config, job, gpu, run, has_eval),
            # Rows come truncated (data.build_rows); TRL refuses a max_length it would not enforce (padding-free).
            max_length=None if train.padding_free == "on" and not train.packing else config.model.max_seq_length,
            # Rows come tokenized with labels (data.build_rows, from the token cache): TRL's preparation would read
            # every row again in Python, minutes for an epoch of FineTome. Packing is its step, so packed runs still
            # go through it.
            dataset_kwargs={"skip_prepare_dataset": not train.packing},
            remove_unused_columns=False,  # keeps `length` for group_by_length; the collator reads only its own columns
            packing=train.packing,
            padding_free={"auto": None, "on": True, "off": False}[train.padding_free],
            pad_to_multiple_of=train.pad_to_multiple_of or None,
            train_sampling_strategy="group_by_length" if train.group_by_length else "random",
            loss_type=train.loss_type,
        )

    def trainer_class(self) -> type:
        from trainer.train.sft_trainer import SFTRunTrainer

        return SFTRunTrainer

    def preview(self, config: Config, n: int) -> None:
        from trainer import weights
        from trainer.data import preview

        examples = self.load(config)
        tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
        preview.show_rows(config, n, examples, tokenizer, self.build(config, examples, tokenizer, check=False))


def eval_share(config: Config, eval_rows: int, tokens_per_row: float) -> float:
    """Evaluation's GPU work against training's: every eval_every_steps (eval_cadence), one forward pass over the eval
    rows; every step, speed.passes_per_token passes over its rows. A packed training row holds max_seq_length tokens of
    conversations, not one conversation."""
    train = config.train
    packed = config.model.max_seq_length / tokens_per_row if train.packing else 1.0  # conversations per row
    passes = speed.passes_per_token(train.gradient_checkpointing)
    return eval_rows / (eval_cadence(config)[1] * train.micro_batch_size * train.grad_accum_steps * packed * passes)
