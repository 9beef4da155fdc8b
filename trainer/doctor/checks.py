"""`trainer doctor`: check the install (Python, torch/CUDA, driver, GPU, bitsandbytes, triton, xformers, unsloth,
disk, Hub) line by line, each with the fix, and name the profile `auto` would choose.

Imports that can crash or hang (torch on a broken CUDA install, bitsandbytes, triton, xformers, unsloth) run in child
processes with a timeout (the probe_*.py modules beside this one), so doctor itself always finishes and reports them.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.markup import escape

from trainer import profiles
from trainer.console import console
from trainer.export.hub import NOTEBOOK_TOKEN_FILES
from trainer.system import Gpu, nvidia_driver, version_of
from trainer.train import trackers

PASS, WARN, FAIL = "pass", "warn", "fail"
STYLES = {PASS: "green", WARN: "yellow", FAIL: "bold red"}
PYTHON_SUPPORTED = ((3, 11), (3, 14))  # pyproject's requires-python; unsloth 2026.10.7 wants < 3.15
MIN_COMPUTE_CAPABILITY = 7.0  # unsloth and bitsandbytes' 4-bit kernels
# Disk a profile needs: the model download, two checkpoints, and one merged 16-bit export.
NEEDED_GB = {"3B": 10.0, "1B": 5.0}
CPU_DEMO_GB = 1.0
IS_WINDOWS = sys.platform == "win32"
# From this version, NVIDIA's Windows drivers place CUDA memory the card cannot hold in system memory instead of
# failing ("CUDA - Sysmem Fallback Policy", on by default): a run that does not fit crawls over PCIe for hours.
SYSMEM_FALLBACK_SINCE = (536, 40)
TORCH_INSTALL = ('pip install --force-reinstall torch==2.11.0 --index-url https://download.pytorch.org/whl/cu128'
                 + (' (or run scripts\\setup_windows.ps1)' if IS_WINDOWS else ''))


@dataclass(frozen=True)
class Check:
    name: str
    level: str  # pass | warn | fail
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Probe:
    ok: bool
    data: dict[str, Any]
    error: str  # the exception line, "crashed", or "did not finish in N s"
    output: str  # the child's stderr, for warnings printed on import


def main(cache_dir: str, timeout_s: float = 180) -> int:
    """Print every check and the profile `auto` picks; 1 if any check is a blocker, else 0."""
    checks, gpu = run_checks(cache_dir, timeout_s)
    width = max(len(c.name) for c in checks)
    for c in checks:
        # soft_wrap: one line per check, whole, for grep and for pasting into a bug report
        line = f"[{STYLES[c.level]}]{c.level.upper()}[/]  {c.name:<{width}}  {escape(c.detail)}"
        console.print(line, soft_wrap=True)
        if c.fix:
            console.print(f"{'':<{width + 8}}[yellow]fix:[/] {escape(c.fix)}", soft_wrap=True)
    if gpu is not False:
        choice = profiles.pick(gpu)
        console.print(f"Profile: auto → [bold]{choice.name}[/] ({escape(choice.reason)})")
    else:
        console.print("Profile: auto cannot tell until torch imports (it would run the CPU demo)")
    failed = [c.name for c in checks if c.level == FAIL]
    warned = [c.name for c in checks if c.level == WARN]
    if failed:
        console.print(f"[bold red]{len(failed)} blocker(s)[/]: {', '.join(failed)}. Fix those, then run "
                      f"`python -m trainer doctor` again.")
        return 1
    summary = "ready to train" if gpu else "the offline CPU demo works here"
    console.print(f"[green]No blockers[/] ({len(warned)} warning(s)): {summary}.")
    return 0


def run_checks(cache_dir: str, timeout_s: float) -> tuple[list[Check], Gpu | None | bool]:
    """All checks in order, and the detected GPU (None: no CUDA GPU; False: torch does not import)."""
    checks = [check_python()]
    driver = nvidia_driver()
    torch_probe = probe("torch", timeout_s)
    torch_checks, gpu = check_torch(torch_probe, driver)
    checks += torch_checks
    if driver is not None and "version" in driver:
        checks.append(check_sysmem_fallback(system_name(), driver["version"]))
    on_gpu = isinstance(gpu, Gpu)
    checks.append(check_bitsandbytes(on_gpu, timeout_s))
    checks.append(check_triton(on_gpu, timeout_s))
    checks.append(check_xformers(on_gpu, timeout_s))
    checks.append(check_unsloth(on_gpu, timeout_s))
    checks += check_packages(on_gpu)
    choice = profiles.pick(gpu if on_gpu else None)
    checks += check_disk(choice, cache_dir)
    checks.append(check_hub())
    checks.append(check_token())
    checks.append(check_trackers())
    return checks, gpu


def probe(name: str, timeout_s: float, *args: str) -> Probe:
    """Run the probe module trainer/doctor/probe_<name>.py in a fresh interpreter; it prints one JSON object as its
    last line of output."""
    try:
        result = subprocess.run([sys.executable, "-m", f"trainer.doctor.probe_{name}", *args], capture_output=True,
                                text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        return Probe(False, {}, f"did not finish in {timeout_s:g} s (hangs on import?)", str(e.stderr or ""))
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode == 0 and lines:
        try:
            return Probe(True, json.loads(lines[-1]), "", result.stderr)
        except ValueError:
            pass
    errors = [line.strip() for line in result.stderr.splitlines() if line.strip()]
    if result.returncode < 0 or (result.returncode > 1 and not errors):
        return Probe(False, {}, f"crashed (exit code {result.returncode})", result.stderr)
    return Probe(False, {}, errors[-1] if errors else f"exit code {result.returncode}", result.stderr)


def installed(module: str) -> bool:
    """Whether a module can be found, without importing (and so without running) it."""
    return importlib.util.find_spec(module) is not None


def check_python() -> Check:
    version = platform.python_version()
    low, high = PYTHON_SUPPORTED
    if low <= sys.version_info[:2] <= high:
        return Check("python", PASS, f"{version} ({sys.executable})")
    return Check("python", FAIL, f"{version}: this project needs Python 3.11 to 3.14",
                 "Create an environment with Python 3.12: conda create --name trainer --file spec-file.txt "
                 "(Windows) or python3.12 -m venv .venv")



def check_torch(result: Probe, driver: dict[str, str] | None) -> tuple[list[Check], Gpu | None | bool]:
    """torch (build, CUDA), the driver, the GPU (name, VRAM, compute capability) and bf16."""
    has_driver = driver is not None and "version" in driver
    if driver is None:
        driver_check = Check("driver", WARN, "no NVIDIA driver (nvidia-smi not found)",
                             "Only needed to train on an NVIDIA GPU: install the current driver from nvidia.com.")
    elif not has_driver:
        driver_check = Check("driver", FAIL if not result.data.get("available") else WARN,
                             f"nvidia-smi fails: {driver['error']}", "Reinstall the NVIDIA driver, then reboot.")
    else:
        driver_check = Check("driver", PASS, f"NVIDIA {driver['version']}")
    if not result.ok:
        fix = TORCH_INSTALL if has_driver else "pip install torch (CPU) or see the README's setup section"
        if "DLL" in result.error:
            fix += "; on Windows also install the Microsoft Visual C++ Redistributable (x64)"
        return [Check("torch", FAIL, f"does not import: {result.error}", fix), driver_check], False
    t = result.data
    checks = []
    if t["cuda"] is None:
        level = FAIL if has_driver else WARN
        fix = (f"This machine has an NVIDIA driver: install the CUDA build: {TORCH_INSTALL}" if has_driver else
               "Fine for the CPU demo; on a GPU machine install the CUDA build of torch.")
        checks.append(Check("torch", level, f"{t['version']}, a CPU-only build (no CUDA)", fix))
    else:
        checks.append(Check("torch", PASS, f"{t['version']}, built for CUDA {t['cuda']}"))
    checks.append(driver_check)
    if not t["available"]:
        if t["cuda"] is not None:
            fix = ("Update the NVIDIA driver to one that runs CUDA " + t["cuda"] + " (nvidia-smi shows the newest "
                   "CUDA version it supports), or install a torch built for an older CUDA.") if has_driver else \
                "Install the NVIDIA driver, or use the CPU demo (--profile cpu)."
            checks.append(Check("cuda", FAIL if has_driver else WARN, "CUDA is not available to torch", fix))
        elif has_driver and driver.get("name"):
            checks.append(Check("gpu", WARN, f"{driver['name']} unused: `auto` runs the offline CPU demo until torch's "
                                "CUDA build is installed (the torch line's fix)"))
        else:
            checks.append(Check("gpu", WARN, "no CUDA GPU: `auto` runs the offline CPU demo",
                                "To train on a GPU, use a machine with an NVIDIA GPU (8 GB or more)."))
        checks.append(Check("bf16", WARN, "no GPU: the CPU demo trains in float32"))
        return checks, None
    gpu = Gpu(t["name"], t["vram_gb"], t["capability"])
    driver_cuda = t.get("driver_cuda")
    checks.append(Check("cuda", PASS, f"available, {t['devices']} device(s)"
                        + (f"; the driver runs CUDA up to {driver_cuda}" if driver_cuda else "")))
    checks.append(Check("gpu", PASS, t["name"]))
    smallest = min(profiles.hardware(n)["vram_gb"] for n in profiles.names() if profiles.hardware(n)["vram_gb"])
    # what others hold now: the desktop, a browser, another training; the run fits what is free, not the label
    free = (f", {t['free_gb']:.1f} GB free now ({t['total_gb'] - t['free_gb']:.1f} GB in use by other programs and "
            "this check's CUDA context)") if "free_gb" in t else f", free memory unreadable: {t['memory_error']}"
    if gpu.vram_gb >= smallest * profiles.VRAM_SLACK:
        checks.append(Check("vram", PASS, f"{gpu.vram_gb:.1f} GB{free}"))
    else:
        checks.append(Check("vram", WARN, f"{gpu.vram_gb:.1f} GB{free}, less than the smallest profile's "
                                          f"{smallest:.0f} GB",
                            "Lower --set max_seq_length=1024 and micro_batch_size=1 if it runs out of memory."))
    capability = float(gpu.compute_capability)
    if capability >= MIN_COMPUTE_CAPABILITY:
        checks.append(Check("compute capability", PASS, f"sm_{gpu.compute_capability.replace('.', '')}"))
    else:
        checks.append(Check("compute capability", FAIL,
                            f"sm_{gpu.compute_capability.replace('.', '')}: unsloth and 4-bit training need 7.0+",
                            "Use a Turing (RTX 20xx) or newer card, or the CPU demo."))
    if t["bf16"]:
        checks.append(Check("bf16", PASS, "supported: profiles train in bfloat16"))
    else:
        checks.append(Check("bf16", PASS, "not on this card (before Ampere): profiles train in float16"))
    return checks, gpu



def system_name() -> str:
    """sys.platform, or "wsl" for Linux under Windows' WSL 2, whose CUDA goes through the Windows driver."""
    return "wsl" if sys.platform == "linux" and "microsoft" in platform.release().lower() else sys.platform


def check_sysmem_fallback(system: str, driver_version: str, python: str = sys.executable) -> Check:
    """Whether this driver can spill GPU memory into system memory when the card is full (Windows drivers 536.40 or
    newer), and the policy that stops it. `system` is sys.platform ("win32", "linux") or "wsl"; doctor cannot read the
    policy's setting, so a driver that can spill warns with the fix."""
    program = "Global Settings" if system == "wsl" else f"Program Settings > add {python}"  # WSL's python: no .exe
    fix = (f"NVIDIA Control Panel > Manage 3D settings > {program} > CUDA - Sysmem Fallback Policy: Prefer No Sysmem "
           "Fallback (a batch that does not fit then runs out of memory, which training splits into smaller passes); "
           "training also watches for the slowdown and says so")
    if system not in ("win32", "wsl"):
        return Check("sysmem fallback", PASS, f"driver {driver_version}: drivers outside Windows never spill GPU "
                                              "memory into system memory; a full card runs out of memory")
    found = re.fullmatch(r"(\d+)\.(\d+)", driver_version.strip())
    if found is None:
        return Check("sysmem fallback", WARN, f"cannot read the driver version {driver_version!r}: a Windows driver "
                                              "536.40 or newer spills GPU memory into system memory when the card is "
                                              "full, and training then crawls", fix)
    version = (int(found[1]), int(found[2]))
    if version < SYSMEM_FALLBACK_SINCE:
        return Check("sysmem fallback", PASS, f"driver {driver_version} predates the sysmem fallback (536.40): a full "
                                              "card runs out of memory instead of spilling into system memory")
    detail = (f"driver {driver_version} can spill GPU memory into system memory when the card is full (CUDA - Sysmem "
              "Fallback Policy, on by default; doctor cannot read it): training then crawls over PCIe instead of "
              "running out of memory")
    if system == "wsl":
        detail += "; WSL 2 runs on this Windows driver (never tested under WSL)"
    return Check("sysmem fallback", WARN, detail, fix)


def check_bitsandbytes(on_gpu: bool, timeout_s: float) -> Check:
    fix = 'pip install "bitsandbytes>=0.45.5,<0.51" (part of pip install -e ".[gpu]")'
    if not installed("bitsandbytes"):
        if on_gpu:
            return Check("bitsandbytes", FAIL, "not installed: the GPU profiles load the model in 4-bit", fix)
        return Check("bitsandbytes", WARN, "not installed (only needed on a GPU)", 'On a GPU: pip install -e ".[gpu]"')
    result = probe("bitsandbytes", timeout_s, *(["cuda"] if on_gpu else []))
    if not result.ok:
        return Check("bitsandbytes", FAIL if on_gpu else WARN, f"fails: {result.error}",
                     fix + "; its native library must match torch's CUDA (reinstall it after changing torch)")
    b = result.data
    if not on_gpu:
        return Check("bitsandbytes", PASS, f"{b['version']} imports (its CUDA kernels are not tested without a GPU)")
    if not b["nf4_error"] < 0.2:  # NF4 of a unit normal is off by about 0.07 on average; NaN also fails here
        return Check("bitsandbytes", FAIL, f"{b['version']}: 4-bit round trip is wrong (error {b['nf4_error']})", fix)
    return Check("bitsandbytes", PASS, f"{b['version']}, native CUDA library works (NF4 quantize round trip)")



def check_triton(on_gpu: bool, timeout_s: float) -> Check:
    fix = ('pip install "triton-windows>=3.6,<3.7" (the series torch 2.11 expects)' if IS_WINDOWS else
           "pip install triton (it comes with torch's CUDA builds on Linux)")
    if not installed("triton"):
        if on_gpu:
            return Check("triton", FAIL, "not installed: unsloth's kernels need it", fix)
        return Check("triton", PASS, "not installed, as it should be on a CPU-only machine (it makes TRL pick "
                                     "GPU kernels)")
    result = probe("triton", timeout_s, *(["cuda"] if on_gpu else []))
    if not result.ok:
        return Check("triton", FAIL if on_gpu else WARN, f"fails: {result.error}", fix)
    t = result.data
    if on_gpu and not t.get("kernel_ok"):
        return Check("triton", FAIL, f"{t['version']}: a test kernel computed wrong values", fix)
    detail = f"{t['version']}" + (", compiled and ran a test kernel" if on_gpu else " imports")
    if not on_gpu:
        return Check("triton", WARN, detail + ": on a CPU-only machine TRL may pick GPU kernels",
                     "Uninstall it from CPU-only environments: pip uninstall triton")
    return Check("triton", PASS, detail)



def check_xformers(on_gpu: bool, timeout_s: float) -> Check:
    if not installed("xformers"):
        return Check("xformers", PASS, "not installed (optional: unsloth uses PyTorch's own attention)")
    result = probe("xformers", timeout_s)
    mismatch = [line.strip() for line in result.output.splitlines() if "built for" in line or "can't load" in line]
    fix = ("pip uninstall xformers (optional), or install the xformers build made for your torch "
           "(each xformers release pins one torch version)")
    if not result.ok:
        return Check("xformers", FAIL if on_gpu else WARN, f"fails: {result.error}", fix)
    if mismatch:
        return Check("xformers", WARN, f"{result.data['version']}: {' '.join(mismatch)[:300]}", fix)
    return Check("xformers", PASS, f"{result.data['version']} imports")



def check_unsloth(on_gpu: bool, timeout_s: float) -> Check:
    fix = 'pip install -e ".[gpu]" (unsloth==2026.10.7, unsloth_zoo==2026.10.7)'
    version = version_of("unsloth")
    if not on_gpu:  # unsloth refuses to import without a GPU: not even tried here
        detail = (f"{version} installed; it imports only with a GPU" if version else
                  "not installed (only needed on a GPU; the CPU demo uses the transformers engine)")
        return Check("unsloth", WARN, detail, "" if version else 'On a GPU: pip install -e ".[gpu]"')
    if not installed("unsloth"):
        return Check("unsloth", FAIL, "not installed: training would fall back to the slower transformers engine, "
                                      "which needs more memory than the profiles plan for", fix)
    result = probe("unsloth", timeout_s)
    if not result.ok:
        return Check("unsloth", FAIL, f"does not import: {result.error}",
                     fix + "; it must match torch, triton and xformers (see their lines above)")
    return Check("unsloth", PASS, f"{result.data['version']} imports")


def check_packages(on_gpu: bool) -> list[Check]:
    """Installed versions against this project's pins (pyproject.toml), e.g. a later pip upgrade of trl."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    try:
        requirements = metadata.requires("trainer") or []
    except metadata.PackageNotFoundError:
        return [Check("packages", WARN, "the trainer project is not installed", 'pip install -e ".[gpu]" (or ".")')]
    wrong, missing, checked = [], [], 0
    for line in requirements:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": "gpu" if on_gpu else ""}):
            continue
        checked += 1
        have = version_of(req.name)
        if have is None:
            missing.append(req.name)
        elif not req.specifier.contains(Version(have), prereleases=True):
            wrong.append(f"{req.name} {have} (needs {req.specifier})")
    if wrong or missing:
        detail = "; ".join(wrong + [f"{name} missing" for name in missing])
        return [Check("packages", FAIL, detail, 'pip install -e ".[gpu]"' if on_gpu else "pip install -e .")]
    return [Check("packages", PASS, f"the {checked} pinned requirements are satisfied"
                  + ("" if on_gpu else " (GPU extra not checked)"))]


def check_trackers() -> Check:
    """Which experiment trackers `--set report_to=...` can use (optional: none is needed to train)."""
    have = {name: version_of(trackers.PACKAGES[name], name) for name, found in trackers.installed().items() if found}
    detail = ", ".join(f"{name} {version}" for name, version in have.items()) or "none installed"
    missing = [name for name in trackers.PACKAGES if name not in have]
    if missing:
        detail += f"; not installed: {', '.join(missing)} (only for --set report_to; {trackers.INSTALL})"
    return Check("trackers", PASS, detail)


def check_disk(choice: profiles.Choice, cache_dir: str) -> list[Check]:
    """Free space where the model, converted models and runs go, for what the chosen profile needs."""
    from huggingface_hub import constants

    model = str(profiles.read(choice.path).get("model.name", ""))
    needed = CPU_DEMO_GB if choice.name == "cpu" else next(
        (gb for size, gb in NEEDED_GB.items() if size in model), max(NEEDED_GB.values()))
    places = {"Hugging Face cache": Path(constants.HF_HUB_CACHE), "trainer cache": Path(cache_dir),
              "runs": Path("runs").resolve()}
    by_disk: dict[int, list[tuple[str, Path]]] = {}
    for what, path in places.items():
        existing = next(p for p in (path, *path.parents) if p.exists())  # what will hold it once created
        by_disk.setdefault(existing.stat().st_dev, []).append((what, path))
    checks = []
    for entries in by_disk.values():
        existing = next(p for p in (entries[0][1], *entries[0][1].parents) if p.exists())
        free = shutil.disk_usage(existing).free / 2**30
        where = ", ".join(f"{what} ({path})" for what, path in entries)
        detail = f"{free:.1f} GB free for {where}; profile {choice.name} needs about {needed:g} GB"
        if free < needed:
            checks.append(Check("disk", FAIL, detail, "Free space there, or point HF_HOME / TRAINER_CACHE_DIR / "
                                                      "--set runs_root=... at a larger disk."))
        elif free < 2 * needed:
            checks.append(Check("disk", WARN, detail, "Checkpoints and exports add up: keep a few GB more free."))
        else:
            checks.append(Check("disk", PASS, detail))
    return checks


def check_hub(timeout_s: float = 5) -> Check:
    """A HEAD request to the Hub endpoint (HF_ENDPOINT or huggingface.co); any HTTP answer means reachable."""
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return Check("hub", PASS, "offline mode (HF_HUB_OFFLINE=1): local models and datasets only")
    url = constants.ENDPOINT
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code  # the server answered
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        return Check("hub", WARN, f"{url} is not reachable ({reason})",
                     "Check the network or the proxy (HTTPS_PROXY); without the Hub, set HF_HUB_OFFLINE=1 and use "
                     "local models (--model PATH) and datasets (--dataset FILE or sample).")
    return Check("hub", PASS, f"{url} answers (HTTP {status})")


def check_token() -> Check:
    """Whether a Hugging Face token is set, and where from; never the token itself."""
    from huggingface_hub import constants, get_token

    token = get_token()
    if token:
        token_file = Path(constants.HF_TOKEN_PATH)
        from_file = token_file.is_file() and token_file.read_text(encoding="utf-8").strip() == token
        return Check("hf token", PASS, f"set ({'token file ' + str(token_file) if from_file else 'HF_TOKEN'})")
    for name in NOTEBOOK_TOKEN_FILES:
        if Path(name).is_file():
            return Check("hf token", WARN, f"found in ./{name}, which the Hugging Face libraries do not read",
                         f"Run scripts/setup_paperspace.sh, or: hf auth login --token \"$(cat {name})\"")
    return Check("hf token", WARN, "none (public models and datasets work; gated ones and pushes need one)",
                 "hf auth login, or set HF_TOKEN")
