"""The setup files: spec-file.txt and the setup scripts agree with pyproject.toml, the bash scripts pass shellcheck,
the Paperspace script's idempotent steps work, and the PowerShell script parses (tree-sitter's PowerShell grammar: no
pwsh here)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SPEC_FILE = (ROOT / "spec-file.txt").read_text()
WINDOWS = (ROOT / "scripts" / "setup_windows.ps1").read_text()
PAPERSPACE = ROOT / "scripts" / "setup_paperspace.sh"
# From the wheel metadata of unsloth 2026.10.7 and unsloth_zoo 2026.10.7 (Requires-Python, Requires-Dist: torch).
UNSLOTH_PYTHON, UNSLOTH_TORCH = SpecifierSet(">=3.9,<3.15"), SpecifierSet(">=2.4.0,<2.15.0")
# The triton series each torch pins in its metadata (torch 2.10.0 and 2.11.0: triton==3.6.0; 2.13.0: 3.7.1).
TRITON_FOR_TORCH = {"2.10": "3.6", "2.11": "3.6", "2.13": "3.7"}
SECRET = "hf_paperspaceTokenNeverPrinted0123456789"


def dependency(name: str) -> SpecifierSet:
    deps = PYPROJECT["project"]["dependencies"]
    return next(Requirement(d).specifier for d in deps if Requirement(d).name == name)


def spec_lines() -> dict[str, str]:
    """{package: rest of its match spec} from spec-file.txt's non-comment lines."""
    lines = [line.strip() for line in SPEC_FILE.splitlines() if line.strip() and not line.startswith("#")]
    return {re.match(r"[\w-]+", line).group(0): line for line in lines}


def minor_versions(low: int = 0, high: int = 30, major: int = 2) -> list[Version]:
    return [Version(f"{major}.{m}.{p}") for m in range(low, high) for p in (0, 1, 5)]


def test_spec_file_agrees_with_pyproject():
    spec = spec_lines()
    assert set(spec) == {"python", "pip", "pytorch", "torchvision"}
    python = Version(spec["python"].split("=", 1)[1])
    assert python in SpecifierSet(PYPROJECT["project"]["requires-python"]) and python in UNSLOTH_PYTHON
    assert "build='cuda*'" in spec["pytorch"] and "build='cuda*'" in spec["torchvision"]  # never the CPU build
    conda_torch = SpecifierSet(re.search(r"version='([^']+)'", spec["pytorch"]).group(1))
    allowed = [v for v in minor_versions() if v in conda_torch]
    assert allowed, spec["pytorch"]
    # Every torch conda may pick is one pyproject and unsloth accept, pip's xformers won't replace (>= 2.10), and
    # the triton-windows series of the pip step is the one it expects.
    assert all(v in dependency("torch") and v in UNSLOTH_TORCH and v >= Version("2.10") for v in allowed)
    assert {TRITON_FOR_TORCH[f"{v.major}.{v.minor}"] for v in allowed} == {"3.6"}
    # The setup guide gives the same commands as the file's header.
    guide = (ROOT / "docs" / "setup-windows-paperspace.md").read_text()
    for command in ("conda create --name trainer --channel conda-forge --override-channels --file spec-file.txt",
                    'pip install -e ".[gpu]" "triton-windows>=3.6,<3.7"', "pip uninstall --yes xformers"):
        assert command in SPEC_FILE and command in guide


def constraint_pins(target: str) -> dict[str, Version]:
    lines = (ROOT / "scripts" / f"constraints-{target}.txt").read_text().splitlines()
    return {m.group(1): Version(m.group(2)) for m in (re.match(r"([\w.-]+)==([^\s#]+)", line) for line in lines) if m}


@pytest.mark.parametrize("target", ["windows-py311", "windows-py312", "linux-py311", "linux-py312"])
def test_resolved_constraints_pin_what_pyproject_and_the_spec_file_allow(target):
    pins = constraint_pins(target)
    torch, torchvision = pins["torch"], pins["torchvision"]
    conda_torch = SpecifierSet(re.search(r"version='([^']+)'", spec_lines()["pytorch"]).group(1))
    assert torch in dependency("torch") and torch in UNSLOTH_TORCH and torch in conda_torch
    assert torchvision.minor == torch.minor + 15  # torchvision 0.26 is the one built for torch 2.11
    series = TRITON_FOR_TORCH[f"{torch.major}.{torch.minor}"]
    triton = pins["triton-windows" if target.startswith("windows") else "triton"]
    assert f"{triton.major}.{triton.minor}" == series
    # The conda path's pip step asks for the same series.
    assert f'"triton-windows>={series},<{series[:-1]}{int(series[-1]) + 1}"' in SPEC_FILE
    gpu = {Requirement(r).name: Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["gpu"]}
    assert str(gpu["unsloth"].specifier) == "==2026.10.7" and str(gpu["unsloth_zoo"].specifier) == "==2026.10.7"
    paperspace = PAPERSPACE.read_text()
    # Each script installs the project's GPU extra (so pyproject's pins are the ones installed) and verifies.
    assert '-e "$Root[gpu]" --constraint' in WINDOWS and '-e "${ROOT}[gpu]" --constraint' in paperspace
    assert "-m trainer doctor" in WINDOWS and "-m trainer doctor" in paperspace


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="apt-get install shellcheck (.ci/run does)")
@pytest.mark.parametrize("script", [PAPERSPACE, ROOT / "scripts" / "install_llama_cpp.sh", ROOT / ".ci" / "run",
                                    ROOT / "benchmarks" / "gpu_session.sh", ROOT / "benchmarks" / "gpu_setup.sh"],
                         ids=lambda p: p.name)
def test_bash_scripts_pass_shellcheck(script):
    result = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_paperspace_script_cache_and_token_steps_are_idempotent(tmp_path):
    """Runs the real script twice up to its torch step, which fails here on purpose (this CPU torch is not the pinned
    CUDA build, and the index it would install that from is a closed port): the cache, token and ~/.bashrc steps
    before it are checked."""
    home, storage, notebook = tmp_path / "home", tmp_path / "storage", tmp_path / "notebooks"
    for folder in (home, storage, notebook):
        folder.mkdir()
    (notebook / "token.txt").write_text(f"  {SECRET}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PERSISTENT": str(storage), "PYTHON": sys.executable,
           "TORCH_INDEX": f"http://127.0.0.1:{closed_port()}/", "PIP_RETRIES": "0",
           "PIP_TIMEOUT": "2", "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    outputs = []
    for _ in range(2):
        result = subprocess.run(["bash", str(PAPERSPACE)], cwd=notebook, env=env, capture_output=True, text=True,
                                timeout=300)
        outputs.append(result.stdout + result.stderr)
        assert result.returncode != 0, outputs[-1]
        pins = constraint_pins(f"linux-py{sys.version_info[0]}{sys.version_info[1]}")
        assert f"is not {pins['torch']} built with CUDA" in outputs[-1]
        installing = f"installing torch {pins['torch']} and torchvision {pins['torchvision']} from http://127.0.0.1:"
        assert installing in outputs[-1]
    assert all(SECRET not in out for out in outputs)
    assert f"stored the token from {notebook / 'token.txt'}" in outputs[0]
    token = storage / "huggingface" / "token"
    assert token.read_text() == SECRET and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert f'export HF_HOME="{storage}/huggingface"' in (storage / "trainer.env").read_text()
    source_lines = [line for line in (home / ".bashrc").read_text().splitlines() if "trainer.env" in line]
    assert source_lines == [f'[ -f "{storage}/trainer.env" ] && . "{storage}/trainer.env"']  # once, after two runs


def powershell_errors(source: bytes) -> list[str]:
    tree_sitter = pytest.importorskip("tree_sitter", reason="pip install tree-sitter tree-sitter-powershell")
    grammar = pytest.importorskip("tree_sitter_powershell", reason="pip install tree-sitter-powershell")
    tree = tree_sitter.Parser(tree_sitter.Language(grammar.language())).parse(source)
    errors = []

    def walk(node):
        if node.type == "ERROR" or node.is_missing:
            errors.append(f"line {node.start_point[0] + 1}: {source[node.start_byte:node.end_byte][:60]!r}")
        for child in node.children:
            walk(child)

    walk(tree.root_node)
    return errors


def test_windows_script_parses_and_does_each_step():
    source = WINDOWS.encode()
    assert powershell_errors(source) == []
    # The check can fail: the same script with its last closing brace removed does not parse.
    cut = source.rindex(b"}")
    assert powershell_errors(source[:cut] + source[cut + 1:]) != []
    for step in ('$ErrorActionPreference = "Stop"', "conda create --yes --name $EnvName",
                 '--index-url "https://download.pytorch.org/whl/$Cuda"', "--constraint $Constraints",
                 "pip uninstall --yes xformers",
                 "-m trainer doctor", "throw"):
        assert step in WINDOWS


TEST_PINS = ROOT / "scripts" / "constraints-tests.txt"


def pins_of_the_tests() -> dict[str, Version]:
    lines = [line for line in TEST_PINS.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {canonicalize_name(Requirement(line).name): Version(line.split("==", 1)[1]) for line in lines}


def requirements_of_the_tests() -> list[Requirement]:
    """pyproject.toml's dependencies and its test extra, the project's own extras it names expanded."""
    extras = PYPROJECT["project"]["optional-dependencies"]
    wanted, found = [*PYPROJECT["project"]["dependencies"], *extras["test"]], []
    for line in wanted:
        requirement = Requirement(line)
        if requirement.name == PYPROJECT["project"]["name"]:
            wanted += [dep for extra in sorted(requirement.extras) for dep in extras[extra]]
        else:
            found.append(requirement)
    return found


def test_test_constraints_pin_every_requirement_of_the_project_and_its_test_extra():
    pinned = pins_of_the_tests()
    assert all(line.count("==") == 1 for line in TEST_PINS.read_text().splitlines() if line.strip())
    for requirement in requirements_of_the_tests():
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"scripts/constraints-tests.txt does not pin {requirement}"
        assert pinned[name] in requirement.specifier, f"scripts/constraints-tests.txt pins {name}=={pinned[name]}, " \
                                                      f"outside {requirement}"
    assert not {"triton", "xformers", "unsloth", "unsloth-zoo"} & set(pinned)  # the CPU environment has none of them


def test_the_tests_run_in_the_environment_the_test_constraints_pin():
    from importlib.metadata import PackageNotFoundError, version

    differ = []
    for name, pinned in pins_of_the_tests().items():
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            installed = None
        if installed != pinned:
            differ.append(f"{name} {installed or 'missing'} (pinned {pinned})")
    assert not differ, ("this environment is not the one scripts/constraints-tests.txt pins: "
                        f"{', '.join(differ)}; bash .ci/run installs it")
