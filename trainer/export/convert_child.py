"""llama.cpp's converter for a SentencePiece vocabulary that puts ▁ before the start of the text only (Mistral's and
Llama 2's tokenizer.json: a Metaspace pre-tokenizer, prepend_scheme "first"):

    python -m trainer.export.convert_child CONVERT_HF_TO_GGUF.PY ARGS...

llama.cpp adds a space before every piece of text that follows a special token unless the GGUF says
`tokenizer.ggml.add_space_prefix = false`, and its converter never says it for these models: "[INST] What" becomes
"[INST]", "▁▁", "What" where the model was trained on "[INST]", "▁What". This runs the converter unchanged, with that
key written beside the tokenizer's type. A chat prompt starts with the BOS token, so every piece of its text follows a
special token and the GGUF's tokens are the trained ones (export's check compares them).
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    script = Path(sys.argv[1])
    sys.argv = sys.argv[1:]
    sys.path[0] = str(script.parent)  # as `python SCRIPT` has it: the script's folder first (its conversion package)
    sys.path.insert(1, str(script.parent / "gguf-py"))  # the gguf package of the converter's own release, as it does
    import gguf

    declare = gguf.GGUFWriter.add_tokenizer_model

    def without_space_prefix(writer: gguf.GGUFWriter, model: str) -> None:
        declare(writer, model)
        if model == "llama":  # SentencePiece
            writer.add_add_space_prefix(False)

    gguf.GGUFWriter.add_tokenizer_model = without_space_prefix
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
