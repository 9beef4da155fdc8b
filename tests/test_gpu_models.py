"""benchmarks/gpu_models.py on the CPU: each family's shape, scaled down, built through the same code path as on the
GPU host, loads with transformers and runs a forward pass."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.helpers import ROOT

spec = importlib.util.spec_from_file_location("gpu_models", ROOT / "benchmarks" / "gpu_models.py")
gpu_models = sys.modules["gpu_models"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
spec.loader.exec_module(gpu_models)


# One shape of each family (the sizes of a family share its code path).
ONE_OF_EACH = list({shape.family: name for name, shape in reversed(gpu_models.SHAPES.items())}.values())


@pytest.mark.parametrize("name", ONE_OF_EACH)
def test_each_shape_builds_scaled_down_and_runs_a_forward(name, smol_llama_tokenizer_dir, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = gpu_models.build(name, smol_llama_tokenizer_dir, tmp_path, tiny=True)
    shape = gpu_models.SHAPES[name]
    config = json.loads((folder / "config.json").read_text())
    if shape.vision:  # a multimodal checkpoint: the text model nested, an image encoder beside it, a processor
        from transformers import AutoProcessor

        assert config["model_type"] == "gemma3" and config["vision_config"]["num_hidden_layers"] == 1
        processor = AutoProcessor.from_pretrained(folder)
        assert processor.image_token_id == config["boi_token_index"] and processor.tokenizer.chat_template
        config = config["text_config"]
    assert config["model_type"] == shape.family.replace("gemma3", "gemma3_text").removesuffix("-images")
    assert (config["hidden_size"], config["num_hidden_layers"]) == (64, 2)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert config["vocab_size"] == len(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer("Hello world, a forward pass", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tokenizer)) and torch.isfinite(logits).all()


def test_the_table_keeps_the_published_sizes():
    """The numbers the memory model is fitted with: spot checks against the models' config.json."""
    shapes = gpu_models.SHAPES
    assert shapes["8B"].config["intermediate_size"] == 14336 and not shapes["8B"].config["tie_word_embeddings"]
    assert shapes["qwen3-4B"].config["vocab_size"] == 151936 and shapes["qwen3-4B"].config["tie_word_embeddings"]
    assert shapes["gemma3-4B"].config["head_dim"] == 256 and shapes["phi4-mini"].config["vocab_size"] == 200064
    assert {s.family for s in shapes.values()} == set(gpu_models.FAMILIES)


def test_mistral_gets_its_own_vocabulary_where_its_tokenizer_is_carried(smol_llama_tokenizer_dir,
                                                                         mistral_tokenizer_dir, tmp_path):
    import shutil

    carried = tmp_path / "gpu"
    shutil.copytree(smol_llama_tokenizer_dir, carried / "llama-3.2-tokenizer")
    shutil.copytree(mistral_tokenizer_dir, carried / "mistral-tokenizer")
    folder = gpu_models.build("mistral-7B", carried / "llama-3.2-tokenizer", tmp_path / "models", tiny=True)
    config = json.loads((folder / "config.json").read_text())
    assert folder.name == "tiny-mistral-7B-v0.3-own-vocab-random" and config["vocab_size"] == 32768, (folder, config)
    shutil.rmtree(carried / "mistral-tokenizer")
    folder = gpu_models.build("mistral-7B", carried / "llama-3.2-tokenizer", tmp_path / "models", tiny=True)
    assert folder.name == "tiny-mistral-7B-v0.3-random"
