"""`trainer serve` for a GGUF file: llama-cpp-python's OpenAI server (FastAPI), with the chat template the file
carries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.errors import UserError

# llama.cpp allocates the KV cache for the whole context up front: Llama 3.2's 131,072 tokens would take 4 GB (1B)
# to 14 GB (3B). 8,192 tokens take 256 MB (1B) and 896 MB (3B) in f16.
MAX_CONTEXT_TOKENS = 8192
INSTALL_HINT = 'pip install -e ".[gguf]" (llama-cpp-python with its server; it compiles llama.cpp, a few minutes)'


def build(path: Path, model_id: str) -> tuple[Any, int]:
    """The FastAPI app and its context in tokens. Requests wait for the one before them (interrupt_requests off: by
    default a new request would cut off the one streaming)."""
    try:
        from llama_cpp.server.app import create_app
        from llama_cpp.server.settings import ModelSettings, ServerSettings
    except ImportError as e:
        raise UserError(f"serving a GGUF file needs llama-cpp-python's server, which is not installed ({e})",
                        INSTALL_HINT) from None
    context = min(trained_context(path), MAX_CONTEXT_TOKENS)
    model = ModelSettings(model=str(path), model_alias=model_id, n_ctx=context, n_gpu_layers=-1, verbose=False)
    try:
        app = create_app(server_settings=ServerSettings(interrupt_requests=False), model_settings=[model])
    except ValueError as e:  # llama.cpp could not load the file
        raise UserError(f"llama.cpp cannot load {path}: {e}", "Export it again with `trainer export RUN --gguf`.") \
            from None
    return app, context


def trained_context(path: Path) -> int:
    """The context length the GGUF's metadata gives its architecture."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
    except (ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable GGUF file ({e})", "Name a .gguf file `trainer export` wrote.") \
            from None
    arch = reader.fields["general.architecture"]
    name = bytes(arch.parts[arch.data[0]]).decode()
    field = reader.fields.get(f"{name}.context_length")
    return int(field.parts[field.data[0]][0]) if field else MAX_CONTEXT_TOKENS
