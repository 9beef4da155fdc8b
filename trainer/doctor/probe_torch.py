"""Doctor's torch probe, run as a child process: torch's build, CUDA and the GPU, as one JSON line."""

import json

import torch

from trainer.system import gpu_of


def facts() -> dict:
    info = {"version": torch.__version__, "cuda": torch.version.cuda, "available": torch.cuda.is_available()}
    if info["available"]:
        gpu = gpu_of(torch.cuda.get_device_properties(0))
        info.update(name=gpu.name, vram_gb=gpu.vram_gb, capability=gpu.compute_capability,
                    bf16=torch.cuda.is_bf16_supported(), devices=torch.cuda.device_count())
        try:  # what others (and this probe's CUDA context) leave free now
            free, total = torch.cuda.mem_get_info(0)
            info.update(free_gb=free / 2**30, total_gb=total / 2**30)
        except RuntimeError as e:  # a card so full that this probe's CUDA context does not fit: say so, go on
            info["memory_error"] = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        try:
            driver_cuda = torch._C._cuda_getDriverVersion()  # e.g. 12080: the newest CUDA the driver runs
            info["driver_cuda"] = f"{driver_cuda // 1000}.{driver_cuda % 1000 // 10}"
        except Exception:  # an old torch without it: the driver's CUDA is not shown
            pass
    return info


if __name__ == "__main__":
    print(json.dumps(facts()))
