"""Where a training step's time goes on the GPU: host waits (syncs), GPU idle gaps and what the CPU ran meanwhile.

    python benchmarks/profile_steps.py OUT.txt FIRST LAST -- [trainer arguments: --profile P --model M ...]

Trains as `python -m trainer` would, with torch.profiler recording steps FIRST..LAST, then writes OUT.txt: the GPU's
busy fraction over those steps, every wait of the host on the GPU (`.item()`, synchronize) with the Python line that
caused it, the longest idle gaps with the CPU work running during them, and the top kernels.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from trainer import cli  # noqa: E402
from trainer.train import recipe  # noqa: E402

WAITS = ("aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def report(prof, out: Path, steps: int) -> None:
    from torch.autograd import DeviceType

    events = list(prof.events())
    kernels = sorted((e.time_range.start, e.time_range.end) for e in events if e.device_type == DeviceType.CUDA)
    cpu = [e for e in events if e.device_type == DeviceType.CPU]
    start, end = min(e.time_range.start for e in cpu), max(e.time_range.end for e in cpu)
    busy, gaps, reach = 0, [], start
    for a, b in kernels:
        if a > reach:
            gaps.append((a - reach, reach, a))
        busy += max(0, b - max(a, reach))
        reach = max(reach, b)
    lines = [f"{steps} steps in {(end - start) / 1e3:.1f} ms; GPU busy {busy / (end - start):.1%}; "
             f"{len(kernels)} kernels; idle gaps over 0.2 ms: {sum(g[0] for g in gaps if g[0] > 200) / 1e3:.1f} ms", ""]
    lines.append("Host waits on the GPU (per profiled step), by the Python lines that caused them:")
    waits: dict[tuple[str, str], list[float]] = {}
    for e in cpu:
        if e.name in WAITS:
            waits.setdefault((e.name, where(e)), []).append(e.time_range.end - e.time_range.start)
    for (name, line), times in sorted(waits.items(), key=lambda item: -sum(item[1])):
        lines.append(f"  {name} x{len(times) / steps:.1f}/step, {sum(times) / 1e3 / steps:.2f} ms/step: {line}")
    lines += ["", "Longest GPU idle gaps and the CPU ops running during them:"]
    for length, a, b in sorted(gaps, reverse=True)[:15]:
        during = sorted(((min(b, e.time_range.end) - max(a, e.time_range.start), e) for e in cpu
                         if e.time_range.start < b and e.time_range.end > a and e.cpu_parent is None),
                        key=lambda x: -x[0])[:4]
        lines.append(f"  {length / 1e3:.2f} ms: " + "; ".join(f"{e.name} ({d / 1e3:.2f} ms)" for d, e in during))
    lines += ["", prof.key_averages().table(sort_by="self_device_time_total", row_limit=25, max_name_column_width=60),
              "", prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60)]
    out.write_text("\n".join(lines) + "\n")


def where(event) -> str:
    """The innermost Python frames above a profiler event (with_stack records them as its parents)."""
    frames = []
    parent = event.cpu_parent
    while parent is not None and len(frames) < 4:
        if ".py(" in parent.name:
            frames.append(parent.name)
        parent = parent.cpu_parent
    return " <- ".join(frames) or "?"


def profiled(make_trainer, out: Path, first: int, last: int):
    def make(*args, **kwargs):
        import torch
        from transformers import TrainerCallback

        cuda = torch.cuda.is_available()  # on the CPU it profiles too: a check of this script
        activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if cuda else [])
        sync = torch.cuda.synchronize if cuda else lambda: None

        class Profile(TrainerCallback):
            prof = None

            def on_step_begin(self, args, state, control, **kw):
                if state.global_step + 1 == first:
                    sync()
                    self.prof = torch.profiler.profile(activities=activities, with_stack=True)
                    self.prof.__enter__()

            def on_step_end(self, args, state, control, **kw):
                if state.global_step == last and self.prof is not None:
                    sync()
                    self.prof.__exit__(None, None, None)
                    report(self.prof, out, last - first + 1)

        trainer = make_trainer(*args, **kwargs)
        trainer.add_callback(Profile())
        return trainer

    return make


if __name__ == "__main__":
    out, first, last = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    recipe.make_trainer = profiled(recipe.make_trainer, out, first, last)
    raise SystemExit(cli.main(sys.argv[sys.argv.index("--") + 1:]))
