"""The training recipe: data → engine → TRL SFTTrainer → run directory, with progress and metrics."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer import checkpoints, data, engines, system, trackers
from trainer.config import Config, tracker_environment
from trainer.config import world as current_world
from trainer.console import config_table, console
from trainer.distributed import ranks
from trainer.engines import attention, policy
from trainer.errors import Stopped, UserError
from trainer.runs import RunDir, listing, speed, write_atomic

if TYPE_CHECKING:
    from trl import SFTConfig


def main(config: Config, profile_reason: str, resume_from: Path | None = None) -> RunDir:
    """Train with `config` (continuing from a checkpoint when given) and return the finished run directory. In a job
    of several processes (trainer/distributed/), every rank runs this; rank 0 alone prints and writes the run."""
    world = current_world()
    backend = ranks.start(world, config.run.rank_timeout_s)
    gpu = system.detect_gpu()
    console.print(f"Profile [bold]{config.profile}[/]: {profile_reason}")
    console.print(config_table(config))
    policy.check_hardware(config, gpu)
    trackers.check_installed(config.run.report_to)
    if config.run.vram_cap_gb and gpu is not None:
        cap_vram(config.run.vram_cap_gb, gpu)
    # Every data problem surfaces here, before the slow model load.
    with ranks.main_first("reading the data", world, config.run.rank_timeout_s):
        examples = data.load(config)
    console.print(f"Data: {len(examples)} {examples.format} rows from {config.data.dataset}")
    startup = {"data_read": system.since_process_start()}
    if gpu is not None:
        attention.restrict(config)  # before the engine is imported: unsloth reads them when it picks its kernels
    engine, why = engines.choose(config, gpu)
    startup["engine_imported"] = system.since_process_start()
    config, settled = policy.settle(config, engine)
    console.print(f"Engine [bold]{engine}[/]: {why}" + (f"; for it, {settled}" if settled else ""))
    model, tokenizer = engines.get(engine).load(config, gpu)
    startup["model_loaded"] = system.since_process_start()
    ranks.meet("loading the model", world, config.run.rank_timeout_s)
    if gpu is not None:
        console.print(f"Attention kernels (torch SDPA): {', '.join(attention.current())}")
    with ranks.main_first("tokenizing the data", world, config.run.rank_timeout_s):
        prepared = data.build(ranks.job_config(config, world.size), examples, tokenizer)
    startup["data_tokenized"] = system.since_process_start()
    stats = prepared.stats
    console.print(
        f"Tokenized {stats['train_rows']} train / {stats['eval_rows']} eval rows; tokens per row "
        f"min {stats['tokens_min']}, median {stats['tokens_median']:.0f}, max {stats['tokens_max']}; "
        f"{stats['trained_token_fraction']:.0%} of tokens trained"
    )
    if world.size > 1:
        console.print(ranks.describe(config, world, backend))
    if stats["eval_rows"] and config.train.eval_every_steps:
        share = eval_share(ranks.job_config(config, world.size), stats["eval_rows"], stats["tokens_mean"])
        line = (f"Eval loss on {stats['eval_rows']} held-out rows every {config.train.eval_every_steps} steps: "
                f"about {share:.0%} of the training's GPU work")
        console.print(f"[yellow]{line}[/] (lower eval_max_examples or raise eval_every_steps)" if share > 0.1 else line)
    run = open_run(config, resume_from, stats, engine)
    from trainer.sft import GracefulStop  # imports trl: only now, after the engine (and unsloth) is loaded

    try:
        with GracefulStop() as stop:
            trainer = make_trainer(config, gpu, model, tokenizer, prepared, run, stop, startup=startup)
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        signal = ranks.agree([stop.signal or 0])[0]  # the signal may have reached another machine only
        if signal:
            raise Stopped(signal)
        if prepared.eval is not None and not evaluated_at(trainer.state.log_history, trainer.state.global_step):
            trainer.evaluate()
        if world.is_main:
            run.save_adapter(trainer.save_model)
            run.plot_loss()
    except Stopped:
        if world.is_main:
            run.set_status("interrupted", profile=config.profile, engine=engine, step=trainer.state.global_step)
        console.print(f"[yellow]Stopped at step {trainer.state.global_step}; checkpoint saved.[/] Continue with:\n"
                      f"  {run.resume_command}{ranks.same_processes(world)}")
        raise
    except KeyboardInterrupt:
        if world.is_main:
            run.set_status("interrupted", profile=config.profile, engine=engine)
        console.print(f"Aborted. Continue from the last checkpoint with:\n  {run.resume_command}")
        raise
    except BaseException as e:
        if world.is_main:
            run.set_status("failed", profile=config.profile, engine=engine, error=f"{type(e).__name__}: {e}")
        if ranks.peer_lost(e):
            raise UserError(f"another process of this job stopped, so this one (rank {world.rank}) stops too: "
                            f"{str(e).splitlines()[0]}", "Its output says why. Continue from the last checkpoint "
                            f"with: {run.resume_command}{ranks.same_processes(world)}") from None
        raise
    if not world.is_main:
        return run
    run.set_status("completed", profile=config.profile, engine=engine, steps=trainer.state.global_step)
    numbers = speed.write_run_benchmark(run, config, engine, world.size)
    console.print(f"[green]Done.[/] LoRA adapter: {run.adapter}  loss plot: {run.plot}")
    if numbers.get("tokens_per_s"):
        console.print(f"Speed: {numbers['steps_per_min']} steps/min, {numbers['tokens_per_s']:,.0f} real tokens/s, "
                      f"peak {numbers['peak_memory_gb']} GB; details in {run.benchmark}")
    return run


def open_run(config: Config, resume_from: Path | None, stats: dict[str, Any], engine: str) -> RunDir:
    """The run directory, made (or reopened to resume) by rank 0 alone; every rank gets its path."""
    import os

    world = current_world()
    run = None
    if world.is_main:
        if resume_from is None:
            run = RunDir.create(config)
        else:
            run = RunDir(resume_from.parent.parent)
            run.keep_metrics_through(checkpoints.step_of(resume_from) or 0)
        console.print(f"Run directory: {run.path}" + (f", resuming from {resume_from.name}" if resume_from else ""))
        write_atomic(run.data_stats, json.dumps(stats, indent=2) + "\n")
        # A detached job's launch.json names the launcher, the parent of the ranks (runs.RunDir.state).
        run.set_status("running", profile=config.profile, engine=engine,
                       **({"launcher_pid": os.getppid()} if world.launched else {}))
    run = RunDir(ranks.share(run.path if run else None))
    if ranks.agree([0 if run.config.is_file() else 1])[0]:
        console.print(f"[yellow]{run.path} is on a disk the other machines of this job do not see: its checkpoints "
                      "will lack their processes' RNG states, and every process reads the checkpoint to resume. Keep "
                      "runs/ on a folder all machines share, or copy the run directory to each before --resume.[/]")
    return run


def run_to_resume(profile: str, settings: list[str], flags: dict[str, Any], checkpoint: str | None) -> RunDir:
    """The run a resume continues: the one of --resume-from's checkpoint, of --run-dir, or the latest run of the
    profile."""
    from trainer.profiles import resolve

    if checkpoint:
        path = Path(checkpoint)
        reason = checkpoints.problem(path) if path.is_dir() else "it is not a folder"
        if reason:
            raise UserError(f"cannot resume from {path}: {reason}", "Name a checkpoint-<step> folder of a run.")
        run = RunDir(path.parent.parent)
    elif flags.get("run.run_dir"):
        run = RunDir.open(Path(flags["run.run_dir"]))
    else:
        base, _ = resolve(profile, settings)
        run = listing.latest(Path(base.run.runs_root), base.profile)
    return run


def finished(run: RunDir, checkpoint: str | None) -> bool:
    """Whether there is nothing to resume (the run completed, and no checkpoint was named); says so."""
    status = run.read_status()
    if status.get("state") == "completed" and not checkpoint:
        console.print(f"Run {run.path} already finished ({status.get('steps')} steps); nothing to resume.")
        return True
    return False


def resume(profile: str, settings: list[str], flags: dict[str, Any], checkpoint: str | None) -> RunDir | None:
    """Continue a run (see run_to_resume) from its newest valid checkpoint, or from the one named by --resume-from.
    The run's own config.toml is the base; flags that change what is trained are refused."""
    from trainer.profiles import resolve

    run = run_to_resume(profile, settings, flags, checkpoint)
    saved, _ = resolve(str(run.config))
    name = run.read_status().get("profile") or saved.profile
    config, _ = resolve(str(run.config), settings, flags)
    config = dataclasses.replace(config, profile=name)
    changed = checkpoints.differences(saved, config)
    if changed and not config.run.resume_force:
        raise UserError(
            f"resuming {run.path} with settings that change what is trained:\n  " + "\n  ".join(changed),
            "Resume with the run's own settings (drop those flags), start a new run, or --set resume_force=true.",
        )
    if finished(run, checkpoint):
        return None
    if checkpoint:
        path: Path | None = Path(checkpoint)
    else:
        path = checkpoints.latest_valid(run.checkpoints, warn=lambda text: console.print(f"[yellow]{text}[/]"))
        if path is None:
            raise UserError(f"{run.path} has no complete checkpoint to resume from",
                            "Start it again without --resume (and a new --run-dir).")
    ranks.check_resume(path, checkpoints.world_size_of(path), current_world(), config.run.resume_force)
    return main(config, f"resuming {run.path}", resume_from=path)


def cap_vram(cap_gb: float, gpu: system.Gpu) -> None:
    """Let torch's allocator use at most `cap_gb`, as on a card with that much memory."""
    import torch

    fraction = min(1.0, cap_gb / gpu.vram_gb)
    torch.cuda.set_per_process_memory_fraction(fraction)
    console.print(f"GPU memory capped at {cap_gb:g} GB of {gpu.vram_gb:.1f} GB")


def sft_config(config: Config, gpu: system.Gpu | None, run: RunDir, has_eval: bool) -> SFTConfig:
    import torch
    from trl import SFTConfig

    policy.check_settled(config)
    train = config.train
    dtype = policy.torch_dtype(config, gpu)
    eval_steps = (train.eval_every_steps or None) if has_eval else None
    return SFTConfig(
        output_dir=str(run.checkpoints),
        per_device_train_batch_size=train.micro_batch_size,
        per_device_eval_batch_size=train.micro_batch_size,
        gradient_accumulation_steps=ranks.grad_accum_per_rank(config, current_world().size),
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
        # Rows come truncated (data.build); TRL refuses a max_length it would not enforce (padding-free).
        max_length=None if train.padding_free == "on" and not train.packing else config.model.max_seq_length,
        # Rows come tokenized with labels (data.build, from the token cache): TRL's preparation would read every row
        # again in Python, minutes for an epoch of FineTome. Packing is its step, so packed runs still go through it.
        dataset_kwargs={"skip_prepare_dataset": not train.packing},
        remove_unused_columns=False,  # keeps `length` for group_by_length; the collator reads only its own columns
        packing=train.packing,
        padding_free={"auto": None, "on": True, "off": False}[train.padding_free],
        pad_to_multiple_of=train.pad_to_multiple_of or None,
        train_sampling_strategy="group_by_length" if train.group_by_length else "random",
        loss_type=train.loss_type,
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
        ddp_backend=ranks.backend(),
        ddp_find_unused_parameters=False,
        log_level_replica="error",
    )


def make_trainer(config: Config, gpu: system.Gpu | None, model: Any, tokenizer: Any, prepared: data.Prepared,
                 run: RunDir, *callbacks: Any, startup: dict[str, float] | None = None) -> Any:
    import datasets
    from transformers.trainer_callback import PrinterCallback

    from trainer.distributed.agree import AgreeEachStep
    from trainer.progress import MetricsCallback
    from trainer.sft import Trainer

    datasets.disable_progress_bars()
    startup = startup if startup is not None else {}
    metrics = MetricsCallback(run, gpu is not None, startup, log_every_s=config.train.log_every_s)
    trainer = Trainer(
        model=model,
        args=sft_config(config, gpu, run, has_eval=prepared.eval is not None),
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        processing_class=tokenizer,
        # metrics after the others: it logs when they decided to save or stop; then all ranks agree on it all
        callbacks=[*callbacks, metrics, *([AgreeEachStep()] if current_world().size > 1 else [])],
        run=run,
        config=config,
    )
    trainer.remove_callback(PrinterCallback)  # MetricsCallback is the one display
    metrics.scaler = trainer.accelerator.scaler  # fp16 only: the GradScaler, whose loss scale is logged
    if config.run.report_to and current_world().is_main:  # the integrations log from rank 0 only
        trackers.attach(trainer, config, run, tracker_environment())
    startup["trainer_built"] = system.since_process_start()
    return trainer


def eval_share(config: Config, eval_rows: int, tokens_per_row: float) -> float:
    """Evaluation's GPU work against training's: every eval_every_steps, one forward pass over the eval rows; every
    step, speed.passes_per_token passes over its rows. A packed training row holds max_seq_length tokens of
    conversations, not one conversation."""
    train = config.train
    packed = config.model.max_seq_length / tokens_per_row if train.packing else 1.0  # conversations per row
    passes = speed.passes_per_token(train.gradient_checkpointing)
    return eval_rows / (train.eval_every_steps * train.micro_batch_size * train.grad_accum_steps * packed * passes)


def evaluated_at(log_history: list[dict[str, Any]], step: int) -> bool:
    return any("eval_loss" in entry and entry.get("step") == step for entry in log_history)
