"""llama.cpp's native code (quantizer, chat) in a child process: a crash in it ends the child, never the command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any


class Crashed(Exception):
    """The child died without an answer: llama.cpp's native code crashed (a signal, or a Windows crash code)."""

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


def run(job: str, *args: str) -> dict[str, Any]:
    """The result of `job` (quantize, chat) from a child Python; Crashed when llama.cpp crashed in it."""
    result = subprocess.run([sys.executable, "-m", "trainer.export.llama_child", job, *args], capture_output=True,
                            text=True)
    if result.returncode == 0:
        return json.loads(result.stdout.splitlines()[-1])
    if result.returncode == 1:  # a Python exception in the child (it printed the traceback): not a crash
        raise RuntimeError(f"llama.cpp's {job} failed in a child process:\n{result.stderr[-3000:]}")
    raise Crashed(describe(result.returncode))


def describe(returncode: int) -> str:
    """How a child ended: SIGSEGV (POSIX signals), or its exit code (a Windows crash: 0xc0000005)."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode:#x}" if returncode > 255 else f"exit code {returncode}"


def quantize(source: str, target: str, kind: str) -> dict[str, Any]:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[kind]
    return {"code": llama_cpp.llama_model_quantize(source.encode(), target.encode(), params)}


def chat(path: str, question: str) -> dict[str, Any]:
    """Greedy reply from llama.cpp, with the chat template embedded in the GGUF."""
    from llama_cpp import Llama

    model = Llama(model_path=path, n_ctx=512, n_threads=os.cpu_count() or 1, verbose=False, seed=0)
    out = model.create_chat_completion(messages=[{"role": "user", "content": question}], max_tokens=32,
                                       temperature=0.0)
    model.close()
    return {"reply": str(out["choices"][0]["message"]["content"] or "")}


def answers(path: str, asked: str) -> dict[str, Any]:
    """Greedy answers of the GGUF at `path` to the conversations in the JSON file `asked` ({"prompts": [messages,
    ...], "max_new_tokens": N}): for each, the prompt as the GGUF's own chat template renders and tokenizes it, the
    answer's token ids, and whether it ended at an end-of-generation token of the GGUF (before N tokens)."""
    import llama_cpp
    from llama_cpp import Llama
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    job = json.loads(open(asked, encoding="utf-8").read())
    model = Llama(model_path=path, n_ctx=2048, n_threads=os.cpu_count() or 1, verbose=False, seed=0)
    vocab = llama_cpp.llama_model_get_vocab(model.model)
    template = model.metadata.get("tokenizer.chat_template", "")
    piece = {i: model.detokenize([i], special=True).decode(errors="replace") for i in (model.token_bos(),
                                                                                       model.token_eos())}
    formatter = Jinja2ChatFormatter(template, eos_token=piece[model.token_eos()], bos_token=piece[model.token_bos()])
    found = []
    for messages in job["prompts"]:
        text = formatter(messages=messages).prompt if template else ""
        prompt = model.tokenize(text.encode(), add_bos=False, special=True)
        ids, stopped = [], False
        for token in model.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0):
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                stopped = True
                break
            ids.append(token)
            if len(ids) >= job["max_new_tokens"]:
                break
        found.append({"prompt_ids": prompt, "ids": ids, "stopped": stopped,
                      "text": model.detokenize(ids, special=True).decode(errors="replace")})
    model.close()
    return {"template": bool(template), "answers": found}


if __name__ == "__main__":
    job, *job_args = sys.argv[1:]
    print(json.dumps({"quantize": quantize, "chat": chat, "answers": answers}[job](*job_args)))
