"""The training recipe: data → engine → TRL SFTTrainer → run directory, with progress and metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from trainer import data, engines, profiles
from trainer.config import Config
from trainer.console import config_table, console
from trainer.runs import RunDir

if TYPE_CHECKING:
    from trl import SFTConfig


def main(config: Config, profile_reason: str) -> RunDir:
    """Train with `config` and return the finished run directory."""
    gpu = profiles.detect_gpu()
    console.print(f"Profile [bold]{config.profile}[/]: {profile_reason}")
    console.print(config_table(config))
    engines.check_hardware(config, gpu)
    if config.run.vram_cap_gb and gpu is not None:
        cap_vram(config.run.vram_cap_gb, gpu)
    examples = data.load(config)  # every data problem surfaces here, before the slow model load
    console.print(f"Data: {len(examples)} {examples.format} rows from {config.data.dataset}")
    engine, why = engines.choose(config, gpu)
    console.print(f"Engine [bold]{engine}[/]: {why}")
    model, tokenizer = engines.get(engine).load(config, gpu)
    prepared = data.build(config, examples, tokenizer)
    stats = prepared.stats
    console.print(
        f"Tokenized {stats['train_rows']} train / {stats['eval_rows']} eval rows; tokens per row "
        f"min {stats['tokens_min']}, median {stats['tokens_median']:.0f}, max {stats['tokens_max']}; "
        f"{stats['trained_token_fraction']:.0%} of tokens trained"
    )
    run = RunDir.create(config)
    console.print(f"Run directory: {run.path}")
    run.set_status("running", engine=engine)
    try:
        trainer = make_trainer(config, gpu, model, tokenizer, prepared, run)
        trainer.train()
        if prepared.eval is not None and not evaluated_at(trainer.state.log_history, trainer.state.global_step):
            trainer.evaluate()
        run.save_adapter(trainer.save_model)
        run.plot_loss()
    except KeyboardInterrupt:
        run.set_status("interrupted", engine=engine)
        raise
    except BaseException as e:
        run.set_status("failed", engine=engine, error=f"{type(e).__name__}: {e}")
        raise
    run.set_status("completed", engine=engine, steps=trainer.state.global_step)
    console.print(f"[green]Done.[/] LoRA adapter: {run.adapter}  loss plot: {run.plot}")
    return run


def cap_vram(cap_gb: float, gpu: profiles.Gpu) -> None:
    """Let torch's allocator use at most `cap_gb`, as on a card with that much memory."""
    import torch

    fraction = min(1.0, cap_gb / gpu.vram_gb)
    torch.cuda.set_per_process_memory_fraction(fraction)
    console.print(f"GPU memory capped at {cap_gb:g} GB of {gpu.vram_gb:.1f} GB")


def sft_config(config: Config, gpu: profiles.Gpu | None, run: RunDir, has_eval: bool) -> SFTConfig:
    from trl import SFTConfig

    train = config.train
    dtype = engines.torch_dtype(config, gpu)
    eval_steps = (train.eval_every_steps or None) if has_eval else None
    return SFTConfig(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=train.grad_accum_steps,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        optim=train.optimizer,
        seed=train.seed,
        max_steps=train.max_steps or -1,
        num_train_epochs=train.epochs,
        bf16=gpu is not None and str(dtype) == "torch.bfloat16",
        fp16=gpu is not None and str(dtype) == "torch.float16",
        max_length=config.model.max_seq_length,
        packing=train.packing,
        # Engines enable checkpointing on the model themselves (Unsloth's own variant, or PEFT's).
        gradient_checkpointing=False,
        logging_steps=1,
        eval_strategy="steps" if eval_steps else "no",
        eval_steps=eval_steps,
        eval_on_start=bool(eval_steps),  # the baseline the eval loss falls from
        save_strategy="steps",
        save_steps=train.save_every_steps,
        save_total_limit=2,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=gpu is not None,
    )


def make_trainer(config: Config, gpu: profiles.Gpu | None, model: Any, tokenizer: Any, prepared: data.Prepared,
                 run: RunDir) -> Any:
    import datasets
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from trainer.progress import MetricsCallback

    datasets.disable_progress_bars()
    metrics = MetricsCallback(run, gpu is not None)
    trainer = SFTTrainer(
        model=model,
        args=sft_config(config, gpu, run, has_eval=prepared.eval is not None),
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        processing_class=tokenizer,
        callbacks=[metrics],
    )
    trainer.remove_callback(PrinterCallback)  # MetricsCallback is the one display
    metrics.scaler = trainer.accelerator.scaler  # fp16 only: the GradScaler, whose loss scale is logged
    return trainer


def evaluated_at(log_history: list[dict[str, Any]], step: int) -> bool:
    return any("eval_loss" in entry and entry.get("step") == step for entry in log_history)
