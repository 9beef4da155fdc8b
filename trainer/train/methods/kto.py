"""KTO (train.method kto): unpaired answers marked good or bad (data.unpaired) as TRL's standard unpaired rows, which
TRL tokenizes; TRL's KTOConfig, the Trainer's fields as for every method (common_args), then its own, one field per
line, each with its reason; our KTORunTrainer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer import data, system
from trainer.config import Config
from trainer.console import console
from trainer.data import unpaired
from trainer.data.unpaired import Unpaired
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir
from trainer.train.common_args import common_args, eval_cadence
from trainer.train.methods.preference import refuse_sft_settings

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# KTO's KL term scores each answer against another prompt of its micro-batch: one answer a pass has none.
MIN_MICRO_BATCH = 2


class KTO:
    name = "kto"
    samples = "labelled answers"
    from_run_note = " (KTO's reference: that adapter, frozen)"
    # TRL's metrics of the training answers (the last logged steps' mean), under our names in metrics.jsonl; the margin
    # is logged for steps that trained answers of both labels.
    metrics = {"rewards/chosen": "reward_chosen", "rewards/rejected": "reward_rejected",
               "rewards/margins": "reward_margin", "kl": "kl"}

    def load(self, config: Config) -> Unpaired:
        """The labelled answers of data.dataset ("sample": the bundled pairs, unpaired). Refuses a format of
        conversations, packing and one answer per pass."""
        refuse_sft_settings(config, "labelled answers", "each answer")
        train = config.train
        if train.micro_batch_size < MIN_MICRO_BATCH:
            per_step = train.micro_batch_size * train.grad_accum_steps
            accum = max(1, per_step // MIN_MICRO_BATCH)
            raise UserError(f"micro_batch_size = {train.micro_batch_size}, and KTO's KL term scores each answer "
                            "against another prompt of its pass: it needs at least "
                            f"{MIN_MICRO_BATCH} answers a pass",
                            f"Use --set micro_batch_size={MIN_MICRO_BATCH} --set grad_accum_steps={accum} "
                            f"({MIN_MICRO_BATCH * accum} answers a step).")
        data = config.data
        return unpaired.load(data.dataset, data.split, data.skip_invalid_rows, data.columns)

    def build(self, config: Config, answers: Unpaired, tokenizer: PreTrainedTokenizerBase,
              check: bool = True) -> data.Prepared:
        return data.build_unpaired(config, answers, tokenizer, check)

    def describe(self, config: Config, job: ranks.Job, stats: dict[str, Any]) -> None:
        console.print(
            f"KTO on {stats['train_rows']} train ({stats['desirable']} marked true, {stats['undesirable']} false) / "
            f"{stats['eval_rows']} eval answers; tokens of prompt + answer min {stats['tokens_min']}, median "
            f"{stats['tokens_median']:.0f}, max {stats['tokens_max']}; {stats['rows_over_max_length']} over "
            f"max_seq_length={config.model.max_seq_length} (cut to it, keeping the start), {stats['rows_dropped']} "
            "dropped (the prompt alone fills it)"
        )
        if stats["eval_rows"] and config.train.eval_every_steps:
            console.print(f"Eval loss on {stats['eval_rows']} held-out answers {eval_cadence(config)[0]}")

    def trainer_args(self, config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir,
                     has_eval: bool) -> Any:
        from trl import KTOConfig

        train = config.train
        return KTOConfig(
            **common_args(config, job, gpu, run, has_eval),
            beta=train.beta,
            desirable_weight=train.desirable_weight,
            undesirable_weight=train.undesirable_weight,
            # Longer answers are cut to it, keeping the start; unpaired.build counted those whose prompt fills it, which
            # TRL drops.
            max_length=config.model.max_seq_length,
            pad_to_multiple_of=train.pad_to_multiple_of or None,
            # No ref_model: TRL scores the reference with a frozen copy ("ref") of the adapter, as for DPO
            # (train/from_run.py): the base model's outputs for a fresh adapter, RUN's with --from RUN.
            precompute_ref_log_probs=False,
            # TRL's default, said here because the KL term needs it: each answer's mismatched prompt is its neighbour
            # in the (seeded, shuffled: data.split) order of the rows.
            train_sampling_strategy="sequential",
        )

    def trainer_class(self) -> type:
        from trainer.train.kto_trainer import KTORunTrainer

        return KTORunTrainer

    def preview(self, config: Config, n: int) -> None:
        from trainer import weights
        from trainer.data import preview

        answers = self.load(config)
        tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
        preview.show_unpaired(config, n, answers, tokenizer, self.build(config, answers, tokenizer, check=False))
