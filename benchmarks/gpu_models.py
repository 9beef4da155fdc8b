"""Random-init Llama 3.2 1B/3B shapes for benchmarks on a CUDA host without the Hub.

    python benchmarks/gpu_models.py OUT_DIR 1B [3B]

Random weights are right for speed and memory (quality is measured on the CPU with SmolLM2). The tokenizer is
SmolLM2's vocabulary with Llama 3's special tokens and Meta's Llama 3.2 template, from files carried in
.gpu/smol-tokenizer (or $TRAINER_GPU_TOKENIZER).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import models  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    source = Path(os.environ.get("TRAINER_GPU_TOKENIZER", ".gpu/smol-tokenizer"))
    tokenizer = models.llama32_tokenizer(source, out / "tokenizer")
    for size in sys.argv[2:]:
        print(models.random_llama(tokenizer, out / f"llama-3.2-{size}-random", **models.llama32_shape(size)))
