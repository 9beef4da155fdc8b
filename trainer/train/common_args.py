"""The Trainer's own fields (transformers' TrainingArguments) of a run, whatever it trains: every method's TRL config
(SFTConfig, DPOConfig, ORPOConfig, KTOConfig: train/methods/) starts from them. One field per line, each with its
reason."""

from __future__ import annotations

from typing import Any

from trainer import system
from trainer.config import Config
from trainer.distributed import ranks
from trainer.engines import policy
from trainer.runs import RunDir


def common_args(config: Config, job: ranks.Job, gpu: system.Gpu | None, run: RunDir, has_eval: bool) -> dict[str, Any]:
    """The Trainer's fields (TrainingArguments) of a run, whatever it trains: `config` settled for its engine
    (policy.settle), for this process of `job`."""
    import torch

    policy.check_settled(config)
    train = config.train
    dtype = policy.torch_dtype(config, gpu)
    eval_steps = (train.eval_every_steps or None) if has_eval else None
    return dict(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=ranks.grad_accum_per_rank(config, job.size),
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        optim=train.optimizer,
        seed=train.seed,
        max_steps=train.max_steps or -1,
        num_train_epochs=train.epochs,
        bf16=gpu is not None and dtype == torch.bfloat16,
        fp16=gpu is not None and dtype == torch.float16,
        # Engines enable checkpointing on the model themselves (Unsloth's own variant, or PEFT's).
        gradient_checkpointing=False,
        # MetricsCallback decides when to log (train.log_every_s): reading the loss waits for the GPU to finish.
        logging_strategy="no",
        logging_nan_inf_filter=False,  # its isnan check waits for the GPU after every micro-batch
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        eval_on_start=bool(eval_steps),  # the baseline the eval loss falls from
        save_strategy="steps",
        save_steps=train.save_every_steps,
        save_total_limit=train.keep_checkpoints,
        include_num_input_tokens_seen="non_padding",  # counted on the GPU by our Trainer, read when logging
        report_to=list(config.run.report_to) or "none",  # the Hugging Face integrations log; trackers.attach
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=gpu is not None,
        # Several processes (trainer/distributed/): gloo between CPU processes; every LoRA weight gets a gradient
        # each step, so DDP need not search for unused ones (that search also breaks Unsloth's checkpointing).
        use_cpu=gpu is None,
        ddp_backend=job.backend,
        ddp_find_unused_parameters=False,
        log_level_replica="error",
    )


def eval_cadence(config: Config) -> tuple[str, float]:
    """When the eval loss is measured (as set up above, and the recipe's last evaluation), in words, and the training
    steps per evaluation: at the start, every eval_every_steps and at the end; a run no longer than that, at the
    start and at the end only. A run counted in epochs (max_steps 0) is said by its cadence alone."""
    train = config.train
    if train.max_steps and train.max_steps <= train.eval_every_steps:
        return "at the start and at the end", train.max_steps / 2
    return f"every {train.eval_every_steps} steps", train.eval_every_steps
