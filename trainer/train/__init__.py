"""Training: the recipe (recipe.main) and resuming (resume); the methods (methods/: SFT, DPO, ORPO, KTO), each with
its TRL config and trainer (sft_trainer.SFTRunTrainer with its micro-batch passes and sampler, preference_trainer,
kto_trainer), the Trainer's fields they share (common_args), callbacks, checkpoints and trackers.

Nothing is imported here: the recipe imports trl only after the engine (unsloth patches it on import)."""
