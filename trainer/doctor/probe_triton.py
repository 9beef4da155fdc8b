"""Doctor's triton probe, run as a child process: its version and, with `cuda`, a test kernel compiled and run (it
needs a working compiler toolchain), as one JSON line. A module file, not `python -c`: triton's JIT reads the kernel's
source."""

import json
import sys

import triton


def facts(cuda: bool) -> dict:
    info = {"version": triton.__version__}
    if cuda:
        import torch
        import triton.language as tl

        @triton.jit
        def add(x, y, out, n, BLOCK: tl.constexpr):
            i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
            tl.store(out + i, tl.load(x + i, mask=i < n) + tl.load(y + i, mask=i < n), mask=i < n)

        x = torch.arange(100, device="cuda", dtype=torch.float32)
        out = torch.empty_like(x)
        add[(1,)](x, x, out, 100, BLOCK=128)
        info["kernel_ok"] = bool(torch.equal(out, 2 * x))
    return info


if __name__ == "__main__":
    print(json.dumps(facts("cuda" in sys.argv[1:])))
