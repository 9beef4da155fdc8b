"""TRL's SFTTrainer for a run: checkpoints written aside and renamed into place, micro-batches run as passes (and
again in smaller ones after running out of GPU memory), the seeded length-grouped order, real tokens counted on the GPU.

Imported only once training starts, after the engine is chosen: unsloth must be imported before trl.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import rotate_checkpoints
from trl import SFTTrainer

from trainer.config import Config
from trainer.console import console
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir
from trainer.train import checkpoints, micro_batches
from trainer.train.sampler import length_grouped_sampler


class ExactPacking(logging.Filter):
    """Drops TRL's warning that packed or padding-free rows need a FlashAttention implementation, or conversations may
    attend to each other. Ours do not: transformers builds a block-diagonal mask from the restarting position ids, and
    Unsloth attends within the conversation lengths its collator adds (tests/test_passes.py and
    tests/gpu/test_packing_gpu.py compare each conversation with itself alone)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "attention implementation is not set to a supported Flash Attention" not in record.getMessage()


EXACT_PACKING = ExactPacking()


class RunTrainer(SFTTrainer):
    def __init__(self, *args: Any, run: RunDir, config: Config, job: ranks.Job, **kwargs: Any) -> None:
        logging.getLogger("trl.trainer.sft_trainer").addFilter(EXACT_PACKING)
        super().__init__(*args, **kwargs)
        self.run = run
        self.config = config
        self.job = job
        self.max_tokens_per_pass = config.train.max_tokens_per_pass  # lowered for good after running out of memory
        self.pending_tokens: Any = 0  # real tokens of the batches since the last log, a GPU tensor while training
        if self.args.fp16:
            # TRL casts a 4-bit model's LoRA weights to bf16, whose gradients fp16's GradScaler cannot unscale (seen
            # on the CUDA host: quadro-rtx5000 with the transformers engine). fp16 training keeps fp32 weights.
            for param in self.model.parameters():
                if param.requires_grad and param.dtype == torch.bfloat16:
                    param.data = param.data.float()

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> Any:
        """The micro-batch as passes of at most `max_tokens_per_pass` tokens (micro_batches.py), so only one pass's
        activations are alive at a time. When a pass runs out of GPU memory (another program took some), the
        gradients are put back as they were, and the micro-batch runs again as passes of half the tokens; the smaller
        budget is kept. Only when one row or conversation alone does not fit does training stop, with a checkpoint."""
        saved = [p.grad.clone() if p.grad is not None else None for p in self.trainable]
        while True:
            parts = micro_batches.split(inputs, self.max_tokens_per_pass)
            if len(parts) > 1:
                self.check_split_is_exact(num_items_in_batch)
            try:
                loss = 0
                for number, part in enumerate(parts, 1):
                    # Under DDP only the last pass's backward all-reduces the micro-batch's gradients, once.
                    last = number == len(parts)
                    with contextlib.nullcontext() if last else self.accelerator.no_sync(model):
                        loss = loss + super().training_step(model, part, num_items_in_batch)
                return loss
            except torch.OutOfMemoryError:
                pass  # handled below, outside this block: its traceback holds the failed pass's tensors
            if self.args.world_size > 1:
                self.stop_out_of_memory_in_job(inputs)
            for param, grad in zip(self.trainable, saved, strict=True):
                param.grad = grad
            free_gpu_memory()
            budget = max(micro_batches.tokens(part) for part in parts) // 2
            if budget < micro_batches.smallest_pass(inputs) or num_items_in_batch is None:
                self.stop_out_of_memory(model, inputs)
            self.max_tokens_per_pass = budget
            console.print(f"[yellow]Out of GPU memory on a micro-batch of {micro_batches.tokens(inputs)} tokens: "
                          f"running it again, and from now on, as passes of at most {budget} tokens[/]")

    @functools.cached_property
    def trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def check_split_is_exact(self, num_items_in_batch: Any) -> None:
        if num_items_in_batch is None or not (self.model_accepts_loss_kwargs or self.compute_loss_func):
            raise UserError("train.max_tokens_per_pass needs a loss summed over the step's tokens; this model's loss "
                            "is a mean per micro-batch, which split passes would weigh wrongly",
                            "Set max_tokens_per_pass = 0 (and gradient checkpointing on, if memory runs out).")

    def stop_out_of_memory(self, model: Any, inputs: dict[str, Any]) -> None:
        """A checkpoint of the last completed step, then a UserError with the fixes not already in force."""
        self._save_checkpoint(model, trial=None)
        piece = "conversation" if micro_batches.is_flattened(inputs) else "row"
        fixes = ["close other programs that use the GPU"]
        if self.config.train.gradient_checkpointing == "off":
            fixes.append("turn gradient checkpointing on (--set gradient_checkpointing=unsloth)")
        if self.config.model.max_seq_length > 256:
            fixes.append(f"train shorter rows (--set max_seq_length={self.config.model.max_seq_length // 2})")
        hint = ", ".join(fixes[:-1]) + (" or " if len(fixes) > 1 else "") + fixes[-1]
        raise UserError(f"out of GPU memory: one {piece} of {micro_batches.smallest_pass(inputs)} tokens does not fit "
                        f"in what is free on the GPU (checkpoint-{self.state.global_step} saved)",
                        f"{hint[0].upper()}{hint[1:]}; then continue with: {self.run.resume_command}")

    def stop_out_of_memory_in_job(self, inputs: dict[str, Any]) -> None:
        """Several processes cannot run a step again in smaller passes: the others may already be all-reducing its
        gradients. The job stops; its last checkpoint stays."""
        raise UserError(f"out of GPU memory on rank {self.args.process_index}, on a micro-batch of "
                        f"{micro_batches.tokens(inputs)} tokens",
                        f"Close other programs that use the GPU, or --set max_tokens_per_pass="
                        f"{max(micro_batches.tokens(inputs) // 2, 1)} (passes of fewer tokens); then continue with: "
                        f"{self.run.resume_command} and the same number of processes.")

    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == "group_by_length":
            # The rows of an optimizer step of the whole job: several processes train the order one process would,
            # each step's micro-batches of similar lengths on every rank.
            rows = self.args.train_batch_size * self.args.gradient_accumulation_steps * self.args.world_size
            return length_grouped_sampler(dataset, rows, self.args.seed)
        return super()._get_train_sampler(train_dataset)

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        """Real (non-padding) tokens, summed on the GPU and read when logging or saving: the Trainer's own count
        waits for the GPU to finish the step after every batch."""
        mask = inputs.get("attention_mask")
        tokens = mask.sum() if mask is not None else inputs["input_ids"].numel()  # padding-free rows have no pads
        self.pending_tokens = self.pending_tokens + tokens

    def count_tokens(self) -> None:
        """Every rank's real tokens since the last count: the metrics give the job's speed."""
        tokens = self.pending_tokens
        if self.args.world_size > 1:
            tokens = self.accelerator.reduce(torch.as_tensor(tokens, device=self.args.device), reduction="sum")
        self.state.num_input_tokens_seen += int(tokens)
        self.pending_tokens = 0

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        self.count_tokens()
        super().log(logs, *args, **kwargs)

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """The Trainer's checkpoint, written into checkpoints/.staging/ and renamed: complete, or absent. With several
        processes, rank 0 writes the adapter, optimizer and state, each rank its RNG state; rank 0 renames."""
        self.count_tokens()
        final = Path(self.args.output_dir)
        staging = final / ".staging"
        name = f"checkpoint-{self.state.global_step}"
        main, needed = self.is_world_process_zero(), 0.0
        if main:
            previous = checkpoints.latest_valid(final, warn=lambda _: None)
            needed = checkpoints.size_mb(previous) if previous else 0.0
            shutil.rmtree(staging, ignore_errors=True)
            final.mkdir(parents=True, exist_ok=True)
            if needed > shutil.disk_usage(final).free / 2**20:  # refuse before writing anything
                raise checkpoints.no_space_error(name, final, needed)
        ranks.wait(self.job, "clearing the staging folder")
        self.args.output_dir = str(staging)
        try:
            super()._save_checkpoint(model, trial)
            ranks.wait(self.job, f"writing {name}")
            if main:
                shutil.copy(self.run.config, staging / name / "config.toml")
                checkpoints.write_world(staging / name, self.args.world_size, self.args.gradient_accumulation_steps)
                if (final / name).exists():  # saved again at the same step (the end of a run that just checkpointed)
                    shutil.rmtree(final / name)
                os.replace(staging / name, final / name)
        except Exception as e:
            if checkpoints.is_no_space(e):
                written = checkpoints.size_mb(staging)
                raise checkpoints.no_space_error(name, final, max(needed, written)) from None
            if isinstance(e, OSError) and e.errno in checkpoints.UNWRITABLE:
                raise UserError(f"cannot write {name} in {final}: {e.strerror}",
                                "Make the run directory writable, then continue with --resume.") from None
            raise
        finally:
            self.args.output_dir = str(final)
            if main:
                shutil.rmtree(staging, ignore_errors=True)
        if main:
            rotate_checkpoints(output_dir=str(final), save_total_limit=self.args.save_total_limit, use_mtime=False,
                               best_model_checkpoint=self.state.best_model_checkpoint)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Several processes on the CPU: the Trainer maps the optimizer state to each process's device, which
        accelerate names cpu:<rank>, a device torch.load cannot map to; loaded as one process loads it."""
        if checkpoint is None or self.args.world_size == 1 or self.args.device.type != "cpu":
            return super()._load_optimizer_and_scheduler(checkpoint)
        folder = Path(checkpoint)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        return None


def free_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
