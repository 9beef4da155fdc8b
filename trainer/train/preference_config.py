"""TRL's DPOConfig and ORPOConfig from our Config: the Trainer's fields as for SFT (sft_config.training_arguments),
then the method's own, one field per line, each with its reason."""

from __future__ import annotations

from typing import Any

from trainer import system
from trainer.config import Config
from trainer.distributed import ranks
from trainer.runs import RunDir
from trainer.train.sft_config import training_arguments


def preference_config(config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir, has_eval: bool) -> Any:
    """The DPOConfig or ORPOConfig (train.method) of `config` settled for its engine, for this process of `job`."""
    train = config.train
    common = training_arguments(config, job, gpu, run, has_eval)
    if train.method == "dpo":
        from trl import DPOConfig

        return DPOConfig(
            **common,
            beta=train.beta,
            # Longer pairs are cut to it, keeping the start; data.build dropped those whose prompt alone fills it.
            max_length=config.model.max_seq_length,
            truncation_mode="keep_start",
            pad_to_multiple_of=train.pad_to_multiple_of or None,
            # No ref_model: TRL scores the reference with a frozen copy ("ref") of the adapter as training starts, each
            # step, with no second copy of the base weights. A fresh adapter's copy gives the base model's outputs;
            # with --from RUN (model.from_run) the copy is RUN's adapter: the reference is the SFT model, as users
            # of SFT -> DPO expect (train/from_run.py).
            precompute_ref_log_probs=False,
        )
    from trl.experimental.orpo import ORPOConfig

    return ORPOConfig(
        **common,
        beta=train.beta,
        max_length=config.model.max_seq_length,  # TRL cuts the answers of a longer pair to fit
        remove_unused_columns=False,  # ORPO's collator takes the tokenized columns TRL adds, not the model's inputs
    )
