"""The setup scripts' GPU install: scripts/constraints-<target>.txt pins every requirement of pyproject.toml's
dependencies and gpu extra under scripts/constraints.in, was made from today's inputs (the digest in its header), and
resolves as shipped, for Windows and Linux with their markers, from wheels only. What PyPI would resolve today is not
tested: a newer resolution is a choice made by regenerating. The install-resolve tests read PyPI (CI reaches it):
without it they fail and say so."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import ROOT, free_port

spec = importlib.util.spec_from_file_location("resolve_constraints", ROOT / "scripts" / "resolve_constraints.py")
resolver = importlib.util.module_from_spec(spec)
spec.loader.exec_module(resolver)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run_resolver(*args: str, env: dict[str, str] | None = None, script: os.PathLike = ROOT / "scripts" /
                 "resolve_constraints.py") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)


def pins(text: str) -> dict[str, Version]:
    """{canonical name: version} from a constraints file; every line but comments must be name==version."""
    found = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s#]+)(\s+#.*)?", line)
        assert match, f"not an exact pin: {line!r}"
        found[canonicalize_name(match.group(1))] = Version(match.group(2))
    return found


def requirements(lines: list[str]) -> list[Requirement]:
    return [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]


def shipped(target: str) -> str:
    return (ROOT / "scripts" / f"constraints-{target}.txt").read_text()


@pytest.mark.parametrize("target", list(resolver.TARGETS))
def test_shipped_constraints_were_made_from_todays_inputs(target):
    assert resolver.recorded_digest(shipped(target)), f"constraints-{target}.txt has no inputs digest in its header"
    reason = resolver.stale(target, ROOT / "scripts")
    assert reason is None, f"{reason}: regenerate with `python scripts/resolve_constraints.py` and commit the files"


def test_check_names_a_file_whose_inputs_changed(tmp_path):
    """--check is offline: it passes on the shipped tree and names the stale file after a pin is edited."""
    for name in ("pyproject.toml", "scripts/constraints.in", "scripts/resolve_constraints.py",
                 *(f"scripts/constraints-{target}.txt" for target in resolver.TARGETS)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    script = tmp_path / "scripts" / "resolve_constraints.py"
    result = run_resolver("--check", "--out", str(tmp_path / "scripts"), script=script)
    assert result.returncode == 0 and "up to date" in result.stdout, result.stderr
    pins_file = tmp_path / "scripts" / "constraints.in"
    pins_file.write_text(pins_file.read_text().replace("torchvision==0.26.0", "torchvision==0.26.1"))
    result = run_resolver("--check", "--out", str(tmp_path / "scripts"), script=script)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    for target in resolver.TARGETS:
        assert f"constraints-{target}.txt was made from other inputs" in result.stderr
    assert "regenerate with `python scripts/resolve_constraints.py`" in result.stderr


@pytest.mark.parametrize("target", list(resolver.TARGETS))
def test_shipped_constraints_pin_every_requirement(target):
    resolved = pins(shipped(target))
    project = PYPROJECT["project"]
    for requirement in requirements(project["dependencies"] + project["optional-dependencies"]["gpu"]):
        name = canonicalize_name(requirement.name)
        assert name in resolved and resolved[name] in requirement.specifier, (requirement, resolved.get(name))
    # constraints.in constrains what is required; the setup scripts read torch's and torchvision's pins from the file.
    for requirement in requirements((ROOT / resolver.PINS).read_text().splitlines()):
        name = canonicalize_name(requirement.name)
        assert name in resolved or name == "triton-windows", requirement
        assert name not in resolved or resolved[name] in requirement.specifier, (requirement, resolved[name])
    assert not set(map(canonicalize_name, resolver.EXCLUDED)) & set(resolved)
    # The markers were evaluated for the target: unsloth's triton is Linux's, triton-windows Windows'.
    windows = target.startswith("windows")
    assert ("triton-windows" in resolved, "triton" in resolved) == (windows, not windows)
    assert not [n for n in resolved if re.match(r"nvidia-|cuda-", n) and n != "nvidia-ml-py"]


@pytest.mark.slow
@pytest.mark.parametrize("target", list(resolver.TARGETS))
def test_shipped_constraints_install_resolve_as_shipped(target, tmp_path):
    """The install, resolved with the shipped file as constraints, succeeds from wheels only and takes exactly the
    packages the file pins (besides the torch CUDA libraries it leaves to the CUDA index): nothing is missing from it,
    nothing in it is unused. Pinned releases stay on PyPI, so this does not move with the registry."""
    (tmp_path / "excludes.txt").write_text("".join(f"{name}\n" for name in resolver.EXCLUDED))
    shipped_file = ROOT / "scripts" / f"constraints-{target}.txt"
    command = resolver.compile_command(target, tmp_path / "out.txt", resolver.INDEX_URL, tmp_path / "excludes.txt",
                                       constraints=(shipped_file,))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"the shipped {shipped_file.name} does not resolve (needs PyPI):\n{result.stderr}"
    lines = (tmp_path / "out.txt").read_text().splitlines()
    resolved = pins("\n".join(line for line in lines if not resolver.TORCH_CUDA_LIBRARIES.match(line)))
    pinned = pins(shipped_file.read_text())
    assert set(resolved) - set(pinned) == set(), f"the install needs packages {shipped_file.name} does not pin"
    assert set(pinned) - set(resolved) == set(), f"{shipped_file.name} pins packages the install does not take"
    assert resolved == pinned


@pytest.mark.slow
def test_resolution_takes_wheels_only(tmp_path):
    """The resolver's uv command refuses a package that PyPI has only as source: the gguf extra's llama-cpp-python."""
    source_only = PYPROJECT["project"]["optional-dependencies"]["gguf"][0]
    (tmp_path / "requirements.txt").write_text(source_only + "\n")
    (tmp_path / "excludes.txt").write_text("")
    command = resolver.compile_command("windows-py312", tmp_path / "out.txt", resolver.INDEX_URL,
                                       tmp_path / "excludes.txt", sources=(str(tmp_path / "requirements.txt"),))
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "has no usable wheels" in result.stderr, result.stderr
    assert Requirement(source_only).name in result.stderr


def test_unreachable_index_is_a_clear_error(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/simple"  # nothing listens there
    result = run_resolver("--target", "linux-py311", "--out", str(tmp_path), "--index-url", url,
                          env={**os.environ, "UV_HTTP_RETRIES": "0"})
    assert result.returncode == 2, result.stderr
    assert f"could not reach the package index {url} to resolve linux-py311" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.iterdir())


def test_missing_output_folder_is_a_clear_error(tmp_path):
    result = run_resolver("--out", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and f"--out {tmp_path / 'nowhere'} is not a folder" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_setup_scripts_install_with_the_resolved_constraints():
    windows = (ROOT / "scripts" / "setup_windows.ps1").read_text()
    paperspace = (ROOT / "scripts" / "setup_paperspace.sh").read_text()
    spec_python = re.search(r"^python=(\d+)\.(\d+)", (ROOT / "spec-file.txt").read_text(), re.M).groups()
    assert f"windows-py{''.join(spec_python)}" in resolver.TARGETS  # the file setup_windows.ps1 picks exists
    assert 'Join-Path $PSScriptRoot "constraints-windows-$pythonTag.txt"' in windows
    assert '"$ROOT/scripts/constraints-linux-$python_tag.txt"' in paperspace
    assert '-e "$Root[gpu]" --constraint $Constraints' in windows
    assert '-e "${ROOT}[gpu]" --constraint "$constraints"' in paperspace
    for name in resolver.EXCLUDED:  # pip pulls it in (unsloth requires it); the scripts take it out again
        assert f"pip uninstall --yes {name}" in windows and f"pip uninstall --quiet --yes {name}" in paperspace
    # Both take torch's and torchvision's versions from the constraints, not from a copy of them.
    assert 'Get-Pin "torch"' in windows and 'Get-Pin "torchvision"' in windows
    assert 'torch_pin="$(pin torch)"' in paperspace and 'torchvision_pin="$(pin torchvision)"' in paperspace
    assert not re.search(r"torch(vision)?==\d", windows + paperspace)


def test_paperspace_script_refuses_a_python_without_constraints(tmp_path):
    """A Python with no resolved file stops the script before it changes anything, with exit code 2."""
    fake = tmp_path / "python3"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "-c" ]; then echo py399; else exec {sys.executable} "$@"; fi\n')
    fake.chmod(0o755)
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHON": str(fake), "PERSISTENT": str(tmp_path / "s")}
    result = subprocess.run(["bash", str(ROOT / "scripts" / "setup_paperspace.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "constraints-linux-py399.txt is missing): set PYTHON=python3.11 or python3.12" in result.stderr
    assert not (tmp_path / "s").exists()
