"""Runs: the run directory (run_dir), its checkpoints (checkpoints), its loss plot (loss_plot), finding and listing
runs (listing), runs in the background (background), and the speed of a run (speed)."""

from trainer.runs.run_dir import RunDir, write_atomic

__all__ = ["RunDir", "write_atomic"]
