"""What every TRL trainer of a run does, whatever it trains (SFT, DPO, ORPO, KTO): checkpoints written aside and renamed
into place, optimizer state loaded per process on the CPU, real tokens counted on the GPU and read when logging.

A mixin before the TRL trainer in the bases: `class SFTRunTrainer(RunTrainerMixin, SFTTrainer)`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from transformers.trainer_utils import rotate_checkpoints

from trainer.config import Config
from trainer.distributed import ranks
from trainer.errors import UserError
from trainer.runs import RunDir, checkpoints


class RunTrainerMixin:
    def __init__(self, *args: Any, run: RunDir, config: Config, job: ranks.Job, **kwargs: Any) -> None:
        self.run = run
        self.config = config
        self.job = job
        self.pending_tokens: Any = 0  # real tokens of the batches since the last log, a GPU tensor while training
        super().__init__(*args, **kwargs)
        if self.args.fp16:
            # TRL's SFTTrainer and DPOTrainer cast a 4-bit model's LoRA weights to bf16, whose gradients fp16's
            # GradScaler cannot unscale (seen on the CUDA host for SFT: quadro-rtx5000 with the transformers engine).
            # fp16 training keeps fp32 weights.
            for param in self.model.parameters():
                if param.requires_grad and param.dtype == torch.bfloat16:
                    param.data = param.data.float()

    def real_tokens(self, inputs: dict[str, Any]) -> Any:
        """The batch's non-padding tokens (padding-free rows have no pads)."""
        mask = inputs.get("attention_mask")
        return mask.sum() if mask is not None else inputs["input_ids"].numel()

    def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
        """Real (non-padding) tokens, summed on the GPU and read when logging or saving: the Trainer's own count
        waits for the GPU to finish the step after every batch."""
        self.pending_tokens = self.pending_tokens + self.real_tokens(inputs)

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

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        """The trained adapter too. A checkpoint of DPO holds TRL's frozen reference adapter in ref/ beside the
        trained one at its root; transformers 5.17 then loads only the adapters in subfolders, and the trained one
        would resume from its initial weights (seen: the first resumed step's loss was ln 2, policy = reference)."""
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        model = model if model is not None else self.model
        root = Path(resume_from_checkpoint)
        has_subfolders = any(p.is_dir() and (p / "adapter_model.safetensors").is_file() for p in root.iterdir())
        if has_subfolders and hasattr(model, "load_adapter") and (root / "adapter_model.safetensors").is_file():
            active = model.active_adapters[0]
            model.load_adapter(str(root), active, is_trainable=True)
            model.set_adapter(active)

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        """Several processes on the CPU: the Trainer maps the optimizer state to each process's device, which
        accelerate names cpu:<rank>, a device torch.load cannot map to; loaded as one process loads it."""
        if checkpoint is None or self.args.world_size == 1 or self.args.device.type != "cpu":
            return super()._load_optimizer_and_scheduler(checkpoint)
        folder = Path(checkpoint)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
        self.lr_scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        return None
