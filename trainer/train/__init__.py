"""Training: the recipe (recipe.main) and resuming (resume), TRL's SFTConfig (sft_config) and SFTTrainer
(sft_trainer.RunTrainer) with its micro-batch passes, callbacks and sampler, checkpoints and trackers.

Nothing is imported here: the recipe imports trl only after the engine (unsloth patches it on import)."""
