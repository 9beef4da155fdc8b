"""A model's shape from its config.json, or from its Hub id offline for the models users name most."""

from __future__ import annotations

import json

import pytest

from benchmarks.gpu_models import SHAPES
from trainer.errors import UserError
from trainer.fit.shape import from_config, known, shape_of


@pytest.mark.parametrize("name", ["1B", "3B", "8B", "qwen3-4B", "qwen3-8B", "gemma3-4B", "mistral-7B", "phi4-mini"])
def test_the_offline_shapes_are_the_published_configs(name):
    """KNOWN (what a plan uses with no network) against benchmarks/gpu_models.py's copies of the published
    config.json files."""
    source = SHAPES[name].source
    published = from_config({"model_type": SHAPES[name].family, **SHAPES[name].config})
    assert known(source) == published


def test_gemma_3s_multimodal_config_gives_its_text_model():
    text = {"model_type": "gemma3_text", **SHAPES["gemma3-4B"].config}
    shape = from_config({"model_type": "gemma3", "text_config": text})
    assert shape.family == "gemma3_text" and shape.hidden == 2560 and shape.vocab == 262208


def test_a_known_name_is_matched_whole():
    assert known("Qwen/Qwen3-8B-Base").hidden == 4096
    assert known("Qwen/Qwen3-80B") is None and known("someone/my-model") is None


def test_a_folder_without_a_transformers_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        shape_of(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "resnet", "hidden_sizes": [64]}))
    with pytest.raises(UserError, match="does not describe a transformer"):
        shape_of(str(tmp_path))
