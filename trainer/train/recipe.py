"""The training recipe, top to bottom: set up (data, engine, model, tokens, run directory), fit, finish; what differs
between methods (SFT, DPO, ORPO, KTO) the run's method says (train/methods/)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import data, engines, system, weights
from trainer.config import Config, tracker_environment
from trainer.console import config_summary, console
from trainer.distributed import ranks
from trainer.engines import attention, policy, unsloth_engine
from trainer.errors import Stopped
from trainer.fit import budget
from trainer.runs import RunDir, checkpoints, loss_plot, speed, write_atomic
from trainer.train import from_run, methods, notes, trackers
from trainer.train.spill_watch import SpillWatch, card_budget_gb


@dataclass
class Setup:
    """What the recipe trains with, once it is set up."""

    config: Config  # settled for the engine: no "auto" left
    engine: str
    gpu: system.Gpu | None
    model: Any
    tokenizer: Any
    prepared: data.Prepared
    run: RunDir
    startup: dict[str, float]  # seconds since process start when each start-up stage ended
    told: dict[str, Any] | None  # the prediction told before the model loaded (trainer/fit/tell.py)


def main(config: Config, job: ranks.Job, profile_reason: str, resume_from: Path | None = None) -> RunDir:
    """Train with `config` (continuing from a checkpoint when given) and return the finished run directory.

    Supports: SFT, DPO, ORPO and KTO (train.method), each a Method of train/methods/ that reads, builds and describes
    its data and makes its TRL trainer; the unsloth engine (NVIDIA GPU) or plain transformers + PEFT (GPU in 4-bit, or
    the CPU); LoRA on a 4-bit or full-precision base; packing, padding-free and length-grouped batches; micro-batches
    run as passes of at most max_tokens_per_pass tokens, again in smaller ones after running out of GPU memory; eval
    loss on a held-out set; checkpoints written aside and renamed, resume from one bit-exact; Ctrl+C/SIGTERM finish the
    step and checkpoint; a memory cap and the card's attention kernels (emulated cards); experiment trackers; a job of
    several processes (`job`, trainer/distributed/), in which every rank runs this and rank 0 alone prints and writes
    the run.

    Raises UserError for what the user can fix (hardware a setting needs, the data, the model, a tracker not
    installed, no disk space, out of memory for one row, another process of the job gone) and Stopped after a signal
    (a checkpoint saved). The run's status says how it ended: completed, interrupted or failed.
    """
    setup = set_up(config, job, profile_reason, resume_from)
    trainer = fit(setup, job, resume_from)
    finish(setup, job, trainer)
    return setup.run


def set_up(config: Config, job: ranks.Job, profile_reason: str, resume_from: Path | None) -> Setup:
    """Check what the hardware refuses, read the data (every data problem surfaces before the slow model load), choose
    the engine and settle the config for it, load the model, tokenize, and open the run directory."""
    timeout_s = config.run.rank_timeout_s
    gpu = system.detect_gpu()
    console.print(f"Profile [bold]{config.profile}[/]: {notes.true_of_this_run(profile_reason, config)}")
    policy.check_hardware(config, gpu)
    method = methods.of(config)
    start = from_run.check(config)  # before the data and the model: the run to start from may have gone
    if start is not None:
        console.print(f"Starting from the adapter of {config.model.from_run}{method.from_run_note}")
    trackers.check_installed(config.run.report_to)
    room = None
    if gpu is not None:  # what is free now, or run.vram_cap_gb: a batch beyond it heals instead of spilling
        room = budget.budget(config, *(system.gpu_memory() or (None, None)))
        cap_vram(room, gpu)
    with ranks.main_first("reading the data", job, timeout_s):
        examples = method.load(config)
    console.print(f"Data: {len(examples)} {examples.format} {method.samples} from {config.data.dataset}")
    told = tell(config, examples, room)
    startup = {"data_read": system.since_process_start()}
    if gpu is not None:
        attention.restrict(config)  # before the engine is imported: unsloth reads them when it picks its kernels
    if gpu is None:
        import torch

        if note := notes.busy_cores_note(*(system.cpu_load() or (0, 0.0)), torch.get_num_threads()):
            console.print(note)
    engine, why = engines.choose(config, gpu)
    startup["engine_imported"] = system.since_process_start()
    if told and told["engine"] != engine:  # planned for unsloth, which is installed but does not import
        console.print(f"[yellow]The settings were fitted for the unsloth engine; {engine} trains instead ({why}). "
                      "To fit them to it: --set engine=transformers[/]")
        told = tell(config, examples, room, engine)
    config, settled = policy.settle(config, engine)
    config = notes.clip_warmup(config)
    console.print(config_summary(config))  # the config that trains
    console.print(f"Engine [bold]{engine}[/]: {why}" + (f"; for it, {settled}" if settled else ""))
    model, tokenizer = engines.get(engine).load(config, gpu)
    startup["model_loaded"] = system.since_process_start()
    ranks.meet("loading the model", job, timeout_s)
    if gpu is not None:
        console.print(f"Attention kernels (torch SDPA): {', '.join(attention.current())}")
    with ranks.main_first("tokenizing the data", job, timeout_s):
        prepared = method.build(ranks.job_config(config, job.size), examples, tokenizer)
    startup["data_tokenized"] = system.since_process_start()
    method.describe(config, job, prepared.stats)
    run = open_run(config, job, resume_from, prepared.stats, engine)
    return Setup(config, engine, gpu, model, tokenizer, prepared, run, startup, told)


def tell(config: Config, data: Any, room: budget.Budget | None = None,
         engine: str | None = None) -> dict[str, Any] | None:
    """Before the model loads, on a card (not the CPU demo): the predicted peak on `engine` (else the one the run is
    expected to pick) against the memory budget (`room`, else the card's label), and the time an epoch of this data
    takes (trainer/fit/)."""
    if not config.hardware.vram_gb:
        return None
    from trainer.fit import tell as fit_tell

    check_family(config)
    told = fit_tell.prediction(config, data, room or budget.budget(config),
                               engine or fit_tell.expected_engine(config, system.gpu_memory() is not None))
    console.print(f"Plan: {fit_tell.line(told)}")
    return told


def check_family(config: Config) -> None:
    """A model of a family we do not train, refused from its config.json before its weights load (the engines check
    the loaded model again)."""
    from trainer.engines import families
    from trainer.fit.shape import shape_of

    families.family_of(config.model.name, shape_of(config.model.name).family)


def dry_run(config: Config, profile_reason: str) -> None:
    """`--dry-run`: what the run would train with and what it would take, then stop before the model loads (no GPU
    needed: a plan for a card from its profile and the model's config.json)."""
    console.print(f"Profile [bold]{config.profile}[/]: {notes.true_of_this_run(profile_reason, config)}")
    config = notes.clip_warmup(config)
    console.print(config_summary(config))
    if config.model.name != weights.SMOLLM2:  # a model path's typo is refused here too (the demo's is fetched later)
        weights.folder_of(config.model.name, str(config.run.cache_dir))
    if config.hardware.vram_gb or Path(config.model.name).is_dir():
        check_family(config)
    examples = methods.of(config).load(config)
    console.print(f"Data: {len(examples)} {examples.format} from {config.data.dataset}")
    if tell(config, examples) is None:
        console.print("Plan: the CPU demo (no card to fit)" if notes.is_demo(config) else "Plan: on the CPU, no card "
                      "to fit; --profile CARD plans for that card without it (python -m trainer profiles lists them)")
    console.print("Dry run: stopped before loading the model.")


def fit(setup: Setup, job: ranks.Job, resume_from: Path | None) -> Any:
    """Train to the end (or to a signal's checkpoint: Stopped), evaluate the last step, and save the adapter and the
    loss plot; how a run that ends early ended goes into its status (RunDir.status_on_failure)."""
    from trainer.train.callbacks import GracefulStop  # imports transformers: only now, after the engine is loaded

    s, trainer = setup, None
    step = lambda: trainer.state.global_step if trainer is not None else None  # noqa: E731
    with (ranks.peers_watched(job, s.run.resume_command),
          s.run.status_on_failure(job.is_main, step, ranks.same_processes(job.world), profile=s.config.profile,
                                  engine=s.engine)):
        with GracefulStop(s.run.stop_request) as stop:
            trainer = make_trainer(s.config, job, s.gpu, s.model, s.tokenizer, s.prepared, s.run, stop,
                                   startup=s.startup)
            trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        signal = ranks.agree(job, [stop.signal or 0])[0]  # the signal may have reached another machine only
        if signal:
            raise Stopped(signal)
        if s.prepared.eval is not None and not evaluated_at(trainer.state.log_history, trainer.state.global_step):
            trainer.evaluate()
        if job.is_main:
            s.run.save_adapter(trainer.save_model)
            loss_plot.write(s.run)
    return trainer


def finish(setup: Setup, job: ranks.Job, trainer: Any) -> None:
    """Rank 0: the run completed; its benchmark.json, and where everything is."""
    if not job.is_main:
        return
    run, config = setup.run, setup.config
    run.set_status("completed", profile=config.profile, engine=setup.engine, steps=trainer.state.global_step)
    calls = unsloth_engine.packed_attention_calls() if setup.engine == "unsloth" else None
    numbers = speed.write_run_benchmark(run, config, setup.engine, attention.enabled(config), job.size, setup.told,
                                        calls)
    console.print(f"[green]Done.[/] LoRA adapter: {run.adapter}  loss plot: {run.plot}")
    if numbers.get("tokens_per_s"):
        console.print(f"Speed: {numbers['steps_per_min']} steps/min, {numbers['tokens_per_s']:,.0f} real tokens/s, "
                      f"peak {numbers['peak_memory_gb']} GB; details in {run.benchmark}")
        if setup.told:  # beside what was told before the start, which benchmark.json keeps too
            said = f"about {setup.told['tokens_per_s']:,} tokens/s, " if "tokens_per_s" in setup.told else ""
            console.print(f"Told before the start: {said}a peak of about {setup.told['peak_gb']} GB on worst-case rows")
    console.print(f"Next: chat with it: python -m trainer chat {run.path}\n"
                  f"      compare it with its base model: python -m trainer eval {run.path}\n"
                  "      or all of it in the browser: python -m trainer ui", soft_wrap=True)


def open_run(config: Config, job: ranks.Job, resume_from: Path | None, stats: dict[str, Any], engine: str) -> RunDir:
    """The run directory, made (or reopened to resume) by rank 0 alone; every rank gets its path."""
    import os

    run = None
    if job.is_main:
        if resume_from is None:
            run = RunDir.create(config)
        else:
            run = RunDir(resume_from.parent.parent)
            run.keep_metrics_through(checkpoints.step_of(resume_from) or 0)
        console.print(f"Run directory: {run.path}" + (f", resuming from {resume_from.name}" if resume_from else ""))
        write_atomic(run.data_stats, json.dumps(stats, indent=2) + "\n")
        # A detached job's launch.json names the launcher, the parent of the ranks (runs.RunDir.state).
        run.set_status("running", profile=config.profile, engine=engine,
                       **({"launcher_pid": os.getppid()} if job.world.launched else {}))
    run = RunDir(ranks.share(job, run.path if run else None))
    if ranks.agree(job, [0 if run.config.is_file() else 1])[0]:
        console.print(f"[yellow]{run.path} is on a disk the other machines of this job do not see: its checkpoints "
                      "will lack their processes' RNG states, and every process reads the checkpoint to resume. Keep "
                      "runs/ on a folder all machines share, or copy the run directory to each before --resume.[/]")
    return run


def cap_vram(room: budget.Budget, gpu: system.Gpu) -> None:
    """Let torch's allocator use at most the budget: a batch beyond it runs out of memory inside torch, where the
    step is split (train/micro_batches.py), instead of spilling into system memory through the Windows driver."""
    import torch

    torch.cuda.set_per_process_memory_fraction(min(1.0, room.gb / gpu.vram_gb))
    console.print(f"GPU memory: this run may take {room.why}")


def make_trainer(config: Config, job: ranks.Job, gpu: system.Gpu | None, model: Any, tokenizer: Any,
                 prepared: data.Prepared, run: RunDir, *callbacks: Any, startup: dict[str, float] | None = None) -> Any:
    """The trainer of `config` (settled for its engine) for this process of `job`, with our callbacks: its method's
    TRL trainer (SFTRunTrainer, DPORunTrainer, ...) with the method's TRL config (trainer_args)."""
    import datasets
    from transformers.trainer_callback import PrinterCallback

    from trainer.distributed.agree import AgreeEachStep
    from trainer.train.callbacks import MetricsCallback

    datasets.disable_progress_bars()
    startup = startup if startup is not None else {}
    method = methods.of(config)
    watch = SpillWatch(run, card_budget_gb()) if gpu is not None and job.is_main else None  # the GPU's, rank 0's
    metrics = MetricsCallback(run, gpu is not None, startup, log_every_s=config.train.log_every_s,
                              logged=method.metrics, watch=watch)
    trainer = method.trainer_class()(
        model=model,
        args=method.trainer_args(config, job, gpu, run, has_eval=prepared.eval is not None),
        train_dataset=prepared.train,
        eval_dataset=prepared.eval,
        processing_class=tokenizer,
        # metrics after the others: it logs when they decided to save or stop; then all ranks agree on it all
        callbacks=[*callbacks, metrics, *([AgreeEachStep(job)] if job.size > 1 else [])],
        run=run,
        config=config,
        job=job,
    )
    trainer.remove_callback(PrinterCallback)  # MetricsCallback is the one display
    metrics.scaler = trainer.accelerator.scaler  # fp16 only: the GradScaler, whose loss scale is logged
    if config.run.report_to and job.is_main:  # the integrations log from rank 0 only
        trackers.attach(trainer, config, run, tracker_environment())
    startup["trainer_built"] = system.since_process_start()
    return trainer


def evaluated_at(log_history: list[dict[str, Any]], step: int) -> bool:
    return any("eval_loss" in entry and entry.get("step") == step for entry in log_history)
