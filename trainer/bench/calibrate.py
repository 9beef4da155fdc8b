"""Measure the GPU share this process runs on: SMs, matmul TFLOPS and device copy GB/s (run by bench --emulate).

    python -m trainer.bench.calibrate float16|bfloat16     # prints one JSON line
"""

from __future__ import annotations

import json
import sys

import torch

from trainer.system import environment


def timed_ms(work, repeats: int) -> float:
    """Milliseconds per call of `work`, after a warm-up, timed with CUDA events."""
    for _ in range(3):
        work()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        work()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def measure(dtype: torch.dtype) -> dict[str, float]:
    n = 4096  # square matmuls of the size the 1B/3B projections reach per micro-batch
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    matmul_ms = timed_ms(lambda: a @ b, 50)
    source = torch.empty(2**28, device="cuda", dtype=torch.uint8)  # 256 MiB, far past the L2 cache
    target = torch.empty_like(source)
    copy_ms = timed_ms(lambda: target.copy_(source), 20)
    return {"matmul_tflops": round(2 * n**3 / matmul_ms / 1e9, 1),
            "copy_gbs": round(2 * source.numel() / copy_ms / 1e6, 1)}  # read + write


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU"}))
        sys.exit(1)
    print(json.dumps({**measure(getattr(torch, sys.argv[1])), "environment": environment()}))
