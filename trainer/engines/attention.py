"""Which of torch's attention kernels (SDPA backends) training may use: those the card has, less the profile's no."""

from __future__ import annotations

from trainer.config import SDPA_BACKENDS, Config


def enabled(config: Config) -> tuple[str, ...]:
    """The backends left on: the machine's (run.sdpa_backends, all when empty), without cuDNN's when the profile
    turns it off (train.cudnn_attention: it plans again for every new shape, a CPU cost)."""
    allowed = set(config.run.sdpa_backends or SDPA_BACKENDS)
    if not config.train.cudnn_attention:
        allowed.discard("cudnn")
    return tuple(name for name in SDPA_BACKENDS if name in allowed)


def restrict(config: Config) -> tuple[str, ...]:
    """Turn the other backends off in this process, before the model is built; torch picks among the rest."""
    import torch

    on = enabled(config)
    cuda = torch.backends.cuda
    cuda.enable_flash_sdp("flash" in on)
    cuda.enable_mem_efficient_sdp("efficient" in on)
    cuda.enable_cudnn_sdp("cudnn" in on)
    cuda.enable_math_sdp("math" in on)
    return on


def current() -> tuple[str, ...]:
    """The backends torch has on now (after the engine loaded the model: what training runs with)."""
    import torch

    cuda = torch.backends.cuda
    on = {"flash": cuda.flash_sdp_enabled(), "efficient": cuda.mem_efficient_sdp_enabled(),
          "cudnn": cuda.cudnn_sdp_enabled(), "math": cuda.math_sdp_enabled()}
    return tuple(name for name in SDPA_BACKENDS if on[name])
