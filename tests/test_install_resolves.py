"""The setup scripts' GPU install resolves: scripts/constraints-<target>.txt is what `uv pip compile` makes today of
pyproject.toml's gpu extra under scripts/constraints.in, for Windows and Linux with their markers, from wheels only.
These tests read PyPI (CI reaches it): without it they fail and say so."""

from __future__ import annotations

import difflib
import importlib.util
import os
import re
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
REGENERATE = "python scripts/resolve_constraints.py"


def run_resolver(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/resolve_constraints.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env=env)


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


@pytest.mark.parametrize("target", list(resolver.TARGETS))
def test_shipped_constraints_are_what_the_gpu_install_resolves_to(target, tmp_path):
    result = run_resolver("--target", target, "--out", str(tmp_path))
    assert result.returncode == 0, f"the GPU install does not resolve for {target} (needs PyPI):\n{result.stderr}"
    name = f"constraints-{target}.txt"
    fresh, shipped = (tmp_path / name).read_text(), (ROOT / "scripts" / name).read_text()
    if fresh != shipped:
        diff = "".join(difflib.unified_diff(shipped.splitlines(True), fresh.splitlines(True), f"shipped {name}",
                                            f"resolved now {name}"))
        pytest.fail(f"scripts/{name} is stale (pyproject.toml, scripts/constraints.in or the resolver changed): "
                    f"regenerate it with `{REGENERATE}` and commit it.\n{diff}")
    resolved = pins(fresh)
    project = PYPROJECT["project"]
    wanted = requirements(project["dependencies"] + project["optional-dependencies"]["gpu"])
    wanted += requirements((ROOT / resolver.PINS).read_text().splitlines())
    for requirement in wanted:
        name = canonicalize_name(requirement.name)
        if name == "triton-windows" and not target.startswith("windows"):
            continue  # required on Windows only (by unsloth)
        assert name in resolved and resolved[name] in requirement.specifier, (requirement, resolved.get(name))
    assert not set(map(canonicalize_name, resolver.EXCLUDED)) & set(resolved)
    # The markers were evaluated for the target: unsloth's triton is Linux's, triton-windows Windows'.
    windows = target.startswith("windows")
    assert ("triton-windows" in resolved, "triton" in resolved) == (windows, not windows)
    assert not [n for n in resolved if re.match(r"nvidia-|cuda-", n) and n != "nvidia-ml-py"]


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
