"""A model's shape from its config.json (a local folder, the Hub's config.json alone, or a known model offline): what
its memory and FLOPs depend on, and which family it is."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from trainer.errors import UserError

SAME_LAYERS = {"gemma3": "gemma3_text"}  # the multimodal checkpoint's text model
# The families the memory model is calibrated on (benchmarks/results/memory/), as trainer/engines/families.py names
# them: config.json's model_type, or it without "_text" (Gemma 3's text model). tests/test_families.py holds it to
# the engines' list (fit may not import them).
CALIBRATED = ("llama", "qwen3", "gemma3", "mistral", "phi3")


@dataclass(frozen=True)
class Shape:
    family: str  # config.json's model_type (of the text model)
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool  # the LM head is the embedding
    image_parameters: int = 0  # an image encoder and its projector beside the language model, kept in 16 bits

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def quantized_parameters(self) -> int:
        """The layers' linear weights: 4-bit in QLoRA."""
        h = self.hidden
        return self.layers * (2 * h * self.q_dim + 2 * h * self.kv_dim + 3 * h * self.intermediate)

    @property
    def embedding_parameters(self) -> int:
        """The embedding and an untied LM head: kept in 16 bits."""
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def billions(self) -> float:
        return (self.quantized_parameters + self.embedding_parameters) / 1e9

    def lora_parameters(self, r: int) -> int:
        """LoRA A and B on the seven projections of every layer."""
        h, q, kv, i = self.hidden, self.q_dim, self.kv_dim, self.intermediate
        return r * self.layers * ((h + q) + 2 * (h + kv) + (q + h) + 2 * (h + i) + (i + h))


def from_config(c: dict[str, Any]) -> Shape:
    """The text model's shape from a config.json's fields (Gemma 3's multimodal config nests it in text_config), and
    the size of the image encoder beside it."""
    text = c.get("text_config") or c
    heads = text["num_attention_heads"]
    family = text.get("model_type") or c.get("model_type", "")
    return Shape(SAME_LAYERS.get(family, family), text["hidden_size"], text["intermediate_size"],
                 text["num_hidden_layers"], heads, text.get("num_key_value_heads") or heads,
                 text.get("head_dim") or text["hidden_size"] // heads, text["vocab_size"],
                 bool(c.get("tie_word_embeddings", text.get("tie_word_embeddings", True))),
                 image_parameters(c.get("vision_config"), text["hidden_size"]))


def image_parameters(vision: dict[str, Any] | None, text_hidden: int) -> int:
    """A SigLIP image encoder's parameters (Gemma 3 4B and up; transformers' SiglipVisionConfig defaults where a
    field is absent) and the projection into the language model. The text training never runs it, but it is loaded:
    unsloth keeps it in 16 bits (unsloth_zoo's SKIP_QUANTIZATION_MODULES), as Unsloth's 4-bit checkpoints do."""
    if not vision:
        return 0
    h, i = vision.get("hidden_size", 768), vision.get("intermediate_size", 3072)
    patch, channels = vision.get("patch_size", 16), vision.get("num_channels", 3)
    positions = (vision.get("image_size", 224) // patch) ** 2
    layer = 4 * (h * h + h) + 2 * h * i + i + h + 4 * h  # attention, MLP, two layer norms
    head = layer - h if vision.get("vision_use_head", True) else 0  # the pooling head: a probe, attention, MLP
    embeddings = channels * patch * patch * h + h + positions * h
    projector = h + h * text_hidden  # a norm, then the projection
    return embeddings + vision.get("num_hidden_layers", 12) * layer + head + 2 * h + projector


def _llama(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int, vocab: int,
           tied: bool, family: str = "llama") -> Shape:
    return Shape(family, hidden, intermediate, layers, heads, kv_heads, head_dim, vocab, tied)


# Gemma 3 4B, 12B and 27B's image encoder, as published in their config.json's vision_config.
GEMMA3_SIGLIP = {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "patch_size": 14,
                 "image_size": 896, "vision_use_head": False}

# Published config.json numbers of models users name, so a plan needs no download (benchmarks/gpu_models.py builds
# the same shapes on the CUDA host). Unsloth's pre-quantized checkpoints have their base model's shape.
LLAMA_8B = _llama(4096, 14336, 32, 32, 8, 128, 128256, False)  # Llama 3 and 3.1 (3's rope is shorter)
LLAMA_70B = _llama(8192, 28672, 80, 64, 8, 128, 128256, False)  # Llama 3.1 and 3.3
KNOWN = {
    "Llama-3.2-1B": _llama(2048, 8192, 16, 32, 8, 64, 128256, True),
    "Llama-3.2-3B": _llama(3072, 8192, 28, 24, 8, 128, 128256, True),
    **dict.fromkeys(("Llama-3.1-8B", "Meta-Llama-3.1-8B", "Meta-Llama-3-8B", "Llama-3-8B"), LLAMA_8B),
    "Qwen3-4B": _llama(2560, 9728, 36, 32, 8, 128, 151936, True, "qwen3"),
    "Qwen3-8B": _llama(4096, 12288, 36, 32, 8, 128, 151936, False, "qwen3"),
    "gemma-3-4b": replace(_llama(2560, 10240, 34, 8, 4, 256, 262208, True, "gemma3_text"),
                          image_parameters=image_parameters(GEMMA3_SIGLIP, 2560)),
    "Mistral-7B": _llama(4096, 14336, 32, 32, 8, 128, 32768, False, "mistral"),
    "Phi-4-mini": _llama(3072, 8192, 32, 24, 8, 128, 200064, True, "phi3"),
    # The other sizes of the families: planned from the same coefficients, not measured on a GPU.
    "Qwen3-0.6B": _llama(1024, 3072, 28, 16, 8, 128, 151936, True, "qwen3"),
    "Qwen3-1.7B": _llama(2048, 6144, 28, 16, 8, 128, 151936, True, "qwen3"),
    "Qwen3-14B": _llama(5120, 17408, 40, 40, 8, 128, 151936, False, "qwen3"),
    "gemma-3-270m": _llama(640, 2048, 18, 4, 1, 256, 262144, True, "gemma3_text"),
    "gemma-3-1b": _llama(1152, 6912, 26, 4, 1, 256, 262144, True, "gemma3_text"),
    "gemma-3-12b": replace(_llama(3840, 15360, 48, 16, 8, 256, 262208, True, "gemma3_text"),
                           image_parameters=image_parameters(GEMMA3_SIGLIP, 3840)),
    **dict.fromkeys(("Llama-3.3-70B", "Llama-3.1-70B", "Meta-Llama-3.1-70B"), LLAMA_70B),
}


def known(model: str) -> Shape | None:
    """The shape of a Hub id whose name starts (after its owner) with a KNOWN model's name."""
    name = model.rsplit("/", 1)[-1].lower()
    for prefix, shape in KNOWN.items():
        rest = name.removeprefix(prefix.lower())
        if rest != name and (not rest or rest[0] in "-_."):  # Qwen3-8B-Base, not Qwen3-80B
            return shape
    return None


def shape_of(model: str) -> Shape:
    """The shape of a local model folder, a known Hub id, or any Hub id (its config.json alone is downloaded)."""
    folder = Path(model)
    if folder.is_dir():
        path = folder / "config.json"
        if not path.is_file():
            raise UserError(f"model folder {folder} has no config.json", "Point --model at a Hugging Face model "
                            "folder (config.json, the weights and the tokenizer files).")
        return read(path, model)
    if (shape := known(model)) is not None:
        return shape
    try:
        from huggingface_hub import hf_hub_download

        return read(Path(hf_hub_download(model, "config.json")), model)
    except UserError:
        raise
    except Exception as e:  # offline, no such repo, gated: what the user sees is the same
        raise UserError(f"cannot read the config.json of model {model} ({type(e).__name__}: {e})",
                        "Check the model id and the network (a gated model needs HF_TOKEN), or point --model at a "
                        "local folder.") from None


def read(path: Path, model: str) -> Shape:
    """The shape of `model` from its config.json at `path`; a file that is not JSON, of a family we do not train, or
    without a field its family has, is refused with its cause."""
    damaged = "The file is damaged or cut short: download the model again, or point --model at a complete folder."
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} cannot be read as JSON ({type(e).__name__}: {e})", damaged) from None
    kind = ""
    if isinstance(config, dict):
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
        kind = str(text.get("model_type") or config.get("model_type") or "")
    if not kind:
        raise UserError(f"{path} is not a transformers model's config.json: it names no model_type",
                        "Point --model at a Hugging Face model folder or id (config.json, the weights and the "
                        "tokenizer files).")
    try:
        return from_config(config)
    except (KeyError, TypeError, ValueError) as e:
        if kind.removesuffix("_text") not in CALIBRATED:  # another family's fields (a family the engines refuse too)
            raise UserError(f"model '{model}' is a {kind} model (config.json's model_type), a family trainer does not "
                            "support", f"Use a model of a supported family: {', '.join(CALIBRATED)} "
                            "(docs/models.md).") from None
        if isinstance(e, KeyError):
            raise UserError(f"{path} has no {e}, which a {kind} model's config.json has", damaged) from None
        raise UserError(f"{path} is not a {kind} model's config.json as transformers writes it ({e})",
                        damaged) from None
