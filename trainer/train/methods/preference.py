"""DPO and ORPO (train.method dpo, orpo): preference pairs (data.preferences) as TRL's standard preference rows, which
TRL tokenizes; TRL's DPOConfig and ORPOConfig, the Trainer's fields as for every method (common_args), then the
method's own, one field per line, each with its reason; our DPORunTrainer and ORPORunTrainer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer import data, system
from trainer.config import Config
from trainer.console import console
from trainer.data import preferences
from trainer.data.preferences import Pairs
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir
from trainer.train.common_args import common_args, eval_cadence

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# TRL's metrics of the training pairs (the last logged steps' mean), under our names in metrics.jsonl
REWARDS = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
           "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy"}


class Preference:
    """What DPO and ORPO share: the data, its description and preview; each adds its TRL config and trainer."""

    name = ""
    samples = "preference pairs"
    from_run_note = ""
    metrics = REWARDS

    def load(self, config: Config) -> Pairs:
        """The pairs of data.dataset; "sample" is the bundled pairs. Refuses a format of conversations and packing."""
        refuse_sft_settings(config, "preference pairs", "each pair")
        data = config.data
        return preferences.load(data.dataset, data.split, data.skip_invalid_rows, data.columns)

    def build(self, config: Config, pairs: Pairs, tokenizer: PreTrainedTokenizerBase,
              check: bool = True) -> data.Prepared:
        return data.build_pairs(config, pairs, tokenizer, check)

    def describe(self, config: Config, job: ranks.Job, stats: dict[str, Any]) -> None:
        max_length = config.model.max_seq_length
        console.print(
            f"{self.name.upper()} on {stats['train_rows']} train / {stats['eval_rows']} eval preference pairs; "
            f"tokens of prompt + the longer answer min {stats['tokens_min']}, median {stats['tokens_median']:.0f}, "
            f"max {stats['tokens_max']}; {stats['rows_over_max_length']} pairs over max_seq_length={max_length} "
            f"(each sequence cut to it, keeping its start), {stats['rows_dropped']} dropped (the prompt alone fills it)"
        )
        if stats["eval_rows"] and config.train.eval_every_steps:
            console.print(f"Eval loss and rewards on {stats['eval_rows']} held-out pairs {eval_cadence(config)[0]}")

    def preview(self, config: Config, n: int) -> None:
        from trainer import weights
        from trainer.data import preview

        pairs = self.load(config)
        tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
        preview.show_pairs(config, n, pairs, tokenizer, self.build(config, pairs, tokenizer, check=False))


def refuse_sft_settings(config: Config, samples: str, each: str) -> None:
    """A format of conversations and packing are SFT's: a method that trains `samples` refuses them."""
    if config.data.format != "auto":
        raise UserError(f"data.format = {config.data.format} is a format of conversations, and "
                        f"train.method = {config.train.method} trains on {samples}",
                        f"Leave the format out (auto): {samples} are detected by their fields.")
    if config.train.packing:
        raise UserError(f"train.packing packs conversations for SFT; train.method = {config.train.method} trains "
                        f"{each} as its own rows", "Leave packing off (--set packing=false).")


class DPO(Preference):
    name = "dpo"
    from_run_note = " (DPO's reference: that adapter, frozen)"

    def trainer_args(self, config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir,
                     has_eval: bool) -> Any:
        from trl import DPOConfig

        return DPOConfig(
            **common_args(config, job, gpu, run, has_eval),
            beta=config.train.beta,
            # Longer pairs are cut to it, keeping the start; data.build_pairs dropped those whose prompt alone fills it.
            max_length=config.model.max_seq_length,
            truncation_mode="keep_start",
            pad_to_multiple_of=config.train.pad_to_multiple_of or None,
            # No ref_model: TRL scores the reference with a frozen copy ("ref") of the adapter as training starts, each
            # step, with no second copy of the base weights. A fresh adapter's copy gives the base model's outputs;
            # with --from RUN (model.from_run) the copy is RUN's adapter: the reference is the SFT model, as users
            # of SFT -> DPO expect (train/from_run.py).
            precompute_ref_log_probs=False,
        )

    def trainer_class(self) -> type:
        from trainer.train.preference_trainer import DPORunTrainer

        return DPORunTrainer


class ORPO(Preference):
    name = "orpo"
    metrics = {**REWARDS, "log_odds_ratio": "log_odds_ratio"}

    def trainer_args(self, config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir,
                     has_eval: bool) -> Any:
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(
            **common_args(config, job, gpu, run, has_eval),
            beta=config.train.beta,
            max_length=config.model.max_seq_length,  # TRL cuts the answers of a longer pair to fit
            remove_unused_columns=False,  # ORPO's collator takes the tokenized columns TRL adds, not the model's inputs
        )

    def trainer_class(self) -> type:
        from trainer.train.preference_trainer import ORPORunTrainer

        return ORPORunTrainer
