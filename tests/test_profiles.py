import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_cli
from trainer import profiles
from trainer.profiles import resolve
from trainer.system import Gpu


def test_every_profile_resolves_with_its_card():
    assert profiles.names() == ["a4000", "a5000", "cpu", "quadro-rtx5000", "rtx2060s", "rtx3070", "t4"]
    expected = {
        "rtx2060s": (8, "float16", "Llama-3.2-1B"),
        "rtx3070": (8, "bfloat16", "Llama-3.2-1B"),
        "quadro-rtx5000": (16, "float16", "Llama-3.2-3B"),
    }
    for name, (vram, dtype, model) in expected.items():
        config, _ = resolve(name)
        assert config.hardware.vram_gb == vram and config.model.dtype == dtype
        assert model in config.model.name and config.model.load_in_4bit
        assert config.train.micro_batch_size >= 1 and config.train.grad_accum_steps >= 1
    cpu, _ = resolve("cpu")
    assert not cpu.model.load_in_4bit and cpu.model.dtype == "float32" and cpu.data.dataset == "sample"


@pytest.mark.parametrize("gpu, name, dtype", [
    (None, "cpu", None),
    (Gpu("NVIDIA GeForce RTX 3070", 7.8, "8.6"), "rtx3070", None),
    (Gpu("NVIDIA GeForce RTX 2060 SUPER", 7.8, "7.5"), "rtx2060s", None),
    (Gpu("Quadro RTX 5000", 15.7, "7.5"), "quadro-rtx5000", None),
    (Gpu("Tesla T4", 14.6, "7.5"), "t4", None),
    # Not a profiled card: the model of the largest profile that fits, in the dtype the card runs natively.
    (Gpu("NVIDIA GeForce RTX 4090", 23.6, "8.9"), "a5000", None),
    (Gpu("NVIDIA GeForce RTX 3060", 11.7, "8.6"), "rtx3070", None),
    (Gpu("NVIDIA A100-SXM4-80GB", 79.2, "8.0"), "a5000", None),
    (Gpu("NVIDIA GeForce GTX 1660", 5.8, "7.5"), "rtx2060s", None),
])
def test_auto_picks_the_closest_profile_and_says_why(gpu, name, dtype):
    choice = profiles.pick(gpu)
    assert choice.name == name
    assert choice.overrides.get("model.dtype") == dtype
    if gpu is not None:
        assert gpu.name in choice.reason


def test_a_too_small_card_is_told_to_lower_memory_use():
    assert "smaller than every profile" in profiles.pick(Gpu("GTX 1660", 5.8, "7.5")).reason


def test_a_card_without_a_profile_gets_settings_fitted_to_it_and_is_named():
    """auto on an RTX 3060 12 GB: the RTX 3070's model, but the card's own memory, capability and TFLOPS (its 28
    SMs), and settings fitted to 11 of its 12 GB (no GPU here: its free memory is not read)."""
    choice = profiles.pick(Gpu("NVIDIA GeForce RTX 3060", 12.0, "8.6", 28))
    assert choice.detected and "no profile is written for" in choice.reason
    own = profiles.read(choice.path)
    config = profiles.build([(str(choice.path), own), ("auto-detection", choice.overrides)], choice.name)
    assert config.hardware.vram_gb == 12.0 and config.hardware.tflops == 24.6
    assert "RTX 3060" in config.description
    fitted, said = profiles.fit_settings(config, own, choice, set())
    assert "budget 11 GB of the card's 12" in said and "fitted: 2 row(s) of 2048 tokens" in said
    assert fitted == {}  # the 3070's settings are the fastest on this card too: nothing changes


def test_auto_without_gpu_is_the_cpu_demo():
    config, reason = resolve("auto")
    assert config.profile == "cpu" and "no CUDA GPU" in reason


@pytest.mark.parametrize("columns", [60, 80, 120])
def test_profiles_table_never_wraps_names_or_model_ids(columns):
    result = run_cli("profiles", env={"COLUMNS": str(columns)})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(len(line) <= columns for line in lines)
    for name in profiles.names():
        config, _ = resolve(name)
        # the name and its model id whole, on one line, so they can be copied from the table
        assert any(line.split()[:2] == [name, config.model.name] for line in lines if line.strip()), result.stdout
    header = next(line for line in lines if line.split()[:2] == ["name", "model"])
    assert ("card" in header, "dtype" in header) == (columns >= 120, columns >= 80)  # the others go first


@pytest.mark.slow
def test_a_wheel_install_carries_the_profiles(tmp_path):
    """pip install . (not editable) has the profiles: the wheel carries them as data files, and a trainer installed
    from it, run outside the checkout, lists and resolves them."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)], check=True, timeout=300)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    wheel = next((tmp_path / "dist").glob("trainer-*.whl"))
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # --python installs into that venv and looks only there (--prefix would uninstall this environment's trainer)
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", str(wheel)], check=True, timeout=300)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # trainer from the wheel; its dependencies from this environment, appended after it on sys.path
    (Path(site) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(python), "-c", "import trainer; print(trainer.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where
    result = subprocess.run([str(python), "-m", "trainer", "profiles", "rtx3070"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rtx3070" in result.stdout and "unsloth/Llama-3.2-1B-Instruct" in result.stdout
    listing = subprocess.run([str(python), "-m", "trainer", "profiles"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=300)
    assert all(name in listing.stdout for name in ("cpu", "rtx2060s", "rtx3070", "quadro-rtx5000")), listing.stdout
    # the CPU demo's plan and a card's, from outside the checkout (the bundled sample data; a model's config alone)
    for profile in ("cpu", "rtx3070"):
        plan = subprocess.run([str(python), "-m", "trainer", "--profile", profile, "--dataset", "sample", "--dry-run"],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert plan.returncode == 0 and "Dry run: stopped before loading the model" in plan.stdout, plan.stdout
    assert "Plan: fits: about" in plan.stdout
    # and this environment's own install is untouched
    here = subprocess.run([sys.executable, "-c", "import trainer; print(trainer.__file__)"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert here.returncode == 0 and here.stdout.startswith(str(ROOT)), here.stdout + here.stderr
