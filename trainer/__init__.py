"""trainer: QLoRA fine-tuning of small instruct models on consumer NVIDIA cards (and a CPU demo)."""

__version__ = "0.1.0"
