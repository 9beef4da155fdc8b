"""A model's shape from its config.json, or from its Hub id offline for the models users name most."""

from __future__ import annotations

import json

import pytest

from benchmarks.gpu_models import SHAPES
from trainer.errors import UserError
from trainer.fit import memory
from trainer.fit.shape import from_config, known, shape_of


@pytest.mark.parametrize("name", [name for name in SHAPES if name != "gemma3-4B"])  # its text model alone
def test_the_offline_shapes_are_the_published_configs(name):
    """KNOWN (what a plan uses with no network) against benchmarks/gpu_models.py's copies of the published
    config.json files (Gemma 3 4B's and 12B's with their image encoder), each under its Hub id and Unsloth's."""
    source = SHAPES[name].source
    assert known(source) == from_config(SHAPES[name].published())
    assert known(f"unsloth/{source.split('/')[1]}-unsloth-bnb-4bit") == known(source)


def test_an_image_encoder_is_counted_as_transformers_builds_it():
    """Gemma 3 4B's image encoder and projector: their parameters as transformers makes them (on the meta device,
    nothing allocated), all of which the memory model holds in 16 bits."""
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    published = SHAPES["gemma3-4B-images"].published()
    with torch.device("meta"):
        model = Gemma3ForConditionalGeneration(Gemma3Config(text_config=published["text_config"],
                                                            vision_config=published["vision_config"]))
    image_side = sum(p.numel() for name, p in model.named_parameters()
                     if ".vision_tower." in f".{name}" or ".multi_modal_projector." in f".{name}")
    shape = from_config(published)
    assert shape.image_parameters == image_side
    text_alone = from_config(published["text_config"])
    assert shape.billions == text_alone.billions  # never run: no FLOPs
    assert memory.start_gb(shape, 16) - memory.start_gb(text_alone, 16) == pytest.approx(2 * image_side / 2**30)


def test_gemma_3s_multimodal_config_gives_its_text_model():
    text = {"model_type": "gemma3_text", **SHAPES["gemma3-4B"].config}
    shape = from_config({"model_type": "gemma3", "text_config": text})
    assert shape.family == "gemma3_text" and shape.hidden == 2560 and shape.vocab == 262208


def test_a_known_name_is_matched_whole():
    assert known("Qwen/Qwen3-8B-Base").hidden == 4096
    assert known("Qwen/Qwen3-80B") is None and known("someone/my-model") is None
    assert known("unsloth/gemma-3-12b-it-bnb-4bit").layers == 48 and known("google/gemma-3-1b-it").layers == 26
    assert known("meta-llama/Meta-Llama-3-8B-Instruct") == known("unsloth/llama-3-8b-Instruct-bnb-4bit") == known(
        "meta-llama/Llama-3.1-8B-Instruct")


def test_a_folder_without_a_transformers_config_is_refused(tmp_path):
    with pytest.raises(UserError, match="has no config.json"):
        shape_of(str(tmp_path))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"hidden_sizes": [64]}))
    with pytest.raises(UserError, match="names no model_type"):
        shape_of(str(tmp_path))
    config.write_text(json.dumps({"model_type": "resnet", "hidden_sizes": [64]}))
    with pytest.raises(UserError, match="is a resnet model .* a family trainer does not support"):
        shape_of(str(tmp_path))


def test_a_damaged_config_is_named_with_its_cause(tmp_path):
    config = tmp_path / "config.json"
    whole = json.dumps({"model_type": "llama", **SHAPES["1B"].config})
    config.write_text(whole[: len(whole) // 2])  # a download cut short
    with pytest.raises(UserError, match="cannot be read as JSON") as refused:
        shape_of(str(tmp_path))
    assert "download the model again" in refused.value.hint
    config.write_text(json.dumps({"model_type": "llama", "hidden_size": 2048}))
    with pytest.raises(UserError, match="has no 'num_attention_heads', which a llama model's config.json has"):
        shape_of(str(tmp_path))
