"""Doctor's bitsandbytes probe, run as a child process: its version and, with `cuda`, an NF4 round trip on the GPU
(which runs its native CUDA library), as one JSON line."""

import json
import sys

import bitsandbytes as bnb


def facts(cuda: bool) -> dict:
    info = {"version": bnb.__version__}
    if cuda:
        import torch
        from bitsandbytes import functional as F

        x = torch.randn(256, 256, device="cuda", dtype=torch.float16)
        packed, state = F.quantize_4bit(x, quant_type="nf4")
        info["nf4_error"] = (F.dequantize_4bit(packed, state) - x).abs().mean().item()
    return info


if __name__ == "__main__":
    print(json.dumps(facts("cuda" in sys.argv[1:])))
