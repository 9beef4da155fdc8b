"""Resolve the setup scripts' GPU install into scripts/constraints-<target>.txt with `uv pip compile`.

Each target is a platform and a CPython version. uv evaluates the environment markers for that platform (pip's
`--platform` does not: it would resolve unsloth's Linux-only `triton` for Windows), takes wheels only and reads PyPI.
What it resolves is pyproject.toml's dependencies with the gpu extra, under scripts/constraints.in's pins.

    python scripts/resolve_constraints.py                        # rewrite every scripts/constraints-*.txt
    python scripts/resolve_constraints.py --target windows-py312 --out /tmp/x
    python scripts/resolve_constraints.py --check                # which shipped files are stale (offline)

Each file's header records a digest of what it was made from (pyproject.toml's dependencies and gpu extra,
constraints.in, and this script's options for the target). tests/test_install_resolves.py checks that digest, that the
file pins every requirement, and that the install resolves with the file as shipped; a newer resolution from PyPI is a
choice made by regenerating, never a test failure. Exit code 2 (a message, no traceback) when uv is missing, PyPI cannot
be reached or the pins do not resolve.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINS = "scripts/constraints.in"  # relative to ROOT: uv names it so in the `# via` annotations
INDEX_URL = "https://pypi.org/simple"
UV_VERSION = "0.13.9"  # the test extra's pin; another uv may write the same resolution differently
TARGETS = {  # name: (uv's --python-platform, --python-version)
    "windows-py311": ("x86_64-pc-windows-msvc", "3.11"),
    "windows-py312": ("x86_64-pc-windows-msvc", "3.12"),  # spec-file.txt's Python: setup_windows.ps1 uses this one
    "linux-py311": ("x86_64-manylinux_2_28", "3.11"),  # Paperspace Gradient's images run Python 3.11
    "linux-py312": ("x86_64-manylinux_2_28", "3.12"),  # the CUDA test host's Python
}
# Releases uploaded later are not considered, so a file changes when pyproject.toml or constraints.in does, not when
# PyPI gets a release. Move it forward (and regenerate) to take newer releases.
EXCLUDE_NEWER = "2026-12-02T00:00:00Z"
# Left out of the resolution; the setup scripts uninstall it after pip pulls it in (unsloth requires it on x86-64).
# xformers 0.0.35, its newest release, was built for torch 2.10.0 (its wheels' xformers/cpp_lib.json), so beside
# torch 2.11 Unsloth says it cannot load it and uses PyTorch's attention, as the GPU records did without it.
EXCLUDED = ("xformers",)
# PyPI's Linux torch 2.11.0 is the CUDA 13.0 build (cuda-toolkit 13, nvidia-*-cu13); the scripts install the build
# of the chosen CUDA index (cu128 by default), which brings its own CUDA libraries. nvidia-ml-py is ours (NVML).
TORCH_CUDA_LIBRARIES = re.compile(r"(nvidia-(?!ml-py==)|cuda-)[\w.-]+==")


class ResolveError(Exception):
    """Something the user can fix: the message names the cause and the fix."""


def uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise ResolveError(f"uv is not installed in {sys.executable}: pip install uv=={UV_VERSION} "
                           '(the test extra has it: pip install -e ".[test]")') from None
    return find_uv_bin()


GPU_INSTALL = ("pyproject.toml", "--extra", "gpu")


def resolution_options(target: str) -> list[str]:
    """uv's options that decide what a target resolves to (the digest covers them)."""
    platform, python = TARGETS[target]
    return ["--python-platform", platform, "--python-version", python, "--only-binary", ":all:",
            "--exclude-newer", EXCLUDE_NEWER, "--no-config"]


def compile_command(target: str, output: Path, index_url: str, excludes: Path,
                    sources: tuple[str, ...] = GPU_INSTALL, constraints: tuple[Path, ...] = ()) -> list[str]:
    """`uv pip compile` of `sources` under constraints.in (and `constraints`, such as a shipped file to check)."""
    extra = [arg for path in constraints for arg in ("--constraints", str(path))]
    return [uv_binary(), "pip", "compile", *sources, "--constraints", PINS, *extra, "--excludes", str(excludes),
            *resolution_options(target), "--index-url", index_url, "--no-header", "--annotation-style", "line",
            "--quiet", "--output-file", str(output)]


def inputs_digest(target: str) -> str:
    """sha256 of what the target's file is made from: the requirements, the pins, the excluded packages, uv's version
    and options, and the filter of torch's CUDA libraries. Another digest in a shipped file means it is stale."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    inputs = {
        "dependencies": project["dependencies"], "gpu": project["optional-dependencies"]["gpu"],
        "pins": (ROOT / PINS).read_text(), "excluded": EXCLUDED, "uv": UV_VERSION,
        "options": resolution_options(target), "dropped": TORCH_CUDA_LIBRARIES.pattern,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


DIGEST_LINE = re.compile(r"^# Inputs digest: sha256:([0-9a-f]{64})$", re.M)


def recorded_digest(text: str) -> str | None:
    """The inputs digest in a constraints file's header, or None where it has none."""
    match = DIGEST_LINE.search(text)
    return match.group(1) if match else None


def header(target: str) -> str:
    platform, python = TARGETS[target]
    lines = [
        "Generated by scripts/resolve_constraints.py: do not edit. Regenerate: python scripts/resolve_constraints.py",
        f"The GPU install for {platform}, CPython {python}: pyproject.toml's dependencies and gpu extra under",
        f"{PINS}, resolved by uv {UV_VERSION} (markers evaluated for that platform) from PyPI, wheels only,",
        f"releases uploaded before {EXCLUDE_NEWER}. The setup scripts install with it as pip's --constraint.",
        f"Left out: {', '.join(EXCLUDED)} (EXCLUDED in the script says why). torch and torchvision are installed from",
        "PyTorch's CUDA index and resolved here as PyPI's builds of the same versions.",
    ]
    if platform.endswith("windows-msvc"):
        lines += ["PyPI's Windows torch is the CPU build; its dependencies are taken to be the CUDA build's (PyTorch's",
                  "index was not reachable where this was resolved). Resolved, never installed on Windows here."]
    else:
        lines += ["Left out too: torch's CUDA libraries (nvidia-*, cuda-*), since PyPI's Linux torch is the CUDA 13.0",
                  "build; the torch from the CUDA index brings its own."]
    lines.append(f"Inputs digest: sha256:{inputs_digest(target)}")
    return "".join(f"# {line}\n" for line in lines)


def resolve(target: str, out_dir: Path, index_url: str = INDEX_URL) -> Path:
    """Write out_dir/constraints-<target>.txt and return its path."""
    if target not in TARGETS:
        raise ResolveError(f"unknown target {target!r}: pick one of {', '.join(TARGETS)}")
    with tempfile.TemporaryDirectory() as tmp:
        excludes, output = Path(tmp) / "excludes.txt", Path(tmp) / "resolved.txt"
        excludes.write_text("".join(f"{name}\n" for name in EXCLUDED))
        result = subprocess.run(compile_command(target, output, index_url, excludes), cwd=ROOT, capture_output=True,
                                text=True)
        if result.returncode != 0:
            raise ResolveError(explain_failure(target, index_url, result.stderr))
        resolved = output.read_text().splitlines(keepends=True)
    kept = "".join(line for line in resolved if not TORCH_CUDA_LIBRARIES.match(line))
    path = out_dir / f"constraints-{target}.txt"
    path.write_text(header(target) + kept)
    return path


def stale(target: str, folder: Path) -> str | None:
    """Why folder/constraints-<target>.txt is not what today's inputs make, or None where it is."""
    path = folder / f"constraints-{target}.txt"
    if not path.is_file():
        return f"{path} is missing"
    if recorded_digest(path.read_text()) != inputs_digest(target):
        return (f"{path} was made from other inputs (pyproject.toml's dependencies or gpu extra, {PINS}, or this "
                "script's options changed since)")
    return None


def explain_failure(target: str, index_url: str, stderr: str) -> str:
    detail = stderr.strip()[-3000:]
    if re.search(r"Failed to fetch|error sending request|dns error|Connection refused|timed out|tcp connect", stderr):
        return (f"could not reach the package index {index_url} to resolve {target}: check the network (behind a "
                f"proxy, set HTTPS_PROXY), then run again.\nuv said:\n{detail}")
    if "No solution found" in stderr or "no wheels" in stderr.lower():
        return (f"pyproject.toml's gpu extra under {PINS} has no wheels-only solution for {target}: change the pins "
                f"(uv says which requirement conflicts), then run again.\nuv said:\n{detail}")
    return f"uv pip compile failed for {target}.\nuv said:\n{detail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", choices=list(TARGETS),
                        help="resolve only this target (repeatable; default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts", help="folder to write into (default: scripts/)")
    parser.add_argument("--index-url", default=INDEX_URL, help=f"package index (default: {INDEX_URL})")
    parser.add_argument("--check", action="store_true",
                        help="resolve nothing: say which files in --out are stale (exit 2) or that none is (exit 0)")
    args = parser.parse_args(argv)
    try:
        if not args.out.is_dir():
            raise ResolveError(f"--out {args.out} is not a folder: create it, or pick an existing one")
        if args.check:
            reasons = [reason for target in args.target or TARGETS if (reason := stale(target, args.out))]
            if reasons:
                raise ResolveError("; ".join(reasons) + ": regenerate with `python scripts/resolve_constraints.py` "
                                   "and commit the files")
            print(f"up to date: {', '.join(args.target or TARGETS)}")
            return 0
        for target in args.target or TARGETS:
            print(resolve(target, args.out, args.index_url))
    except ResolveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
