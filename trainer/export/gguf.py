"""GGUF export with llama.cpp's own converter and quantizer (from PyPI's llama-cpp-python), checked by generating."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from trainer.config import DATE_STRING
from trainer.console import console
from trainer.errors import UserError
from trainer.export import llama_child
from trainer.runs import write_atomic

INSTALL_HINT = ("Install llama.cpp's Python package compiled for any x86-64 CPU: bash scripts/install_llama_cpp.sh "
                "(a C++ compiler and cmake; up to 15 minutes on 2 cores), or on conda: "
                "conda install -c conda-forge llama-cpp-python.")
CHECK_QUESTION = "What is the capital of France?"
# Ollama templates (Go text/template) for the chat formats our models use; they render what the models' own Jinja
# templates render for a conversation without tools.
OLLAMA_TEMPLATES = {
    "llama3": (
        # Meta's template always opens with this system block (the date line as in its default).
        '<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n'
        f'Today Date: {DATE_STRING}\n\n{{{{ if .System }}}}{{{{ .System }}}}{{{{ end }}}}<|eot_id|>'
        '{{- range .Messages }}{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n'
        '{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n',
        ["<|eot_id|>", "<|start_header_id|>"]),
    "chatml": (
        '{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}'
        '{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n'
        '{{ end }}{{ end }}<|im_start|>assistant\n',
        ["<|im_end|>", "<|im_start|>"]),
    # Google's Gemma 3 template: no system turn, the system prompt opens the first user turn; "model" answers. The
    # <bos> that Google's template writes first, llama.cpp adds itself (the GGUF's add_bos_token).
    "gemma": (
        '{{- $first := true }}{{- range .Messages }}{{- if eq .Role "user" }}<start_of_turn>user\n'
        '{{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ $first = false }}{{ .Content }}<end_of_turn>\n'
        '{{ else if eq .Role "assistant" }}<start_of_turn>model\n{{ .Content }}<end_of_turn>\n'
        '{{ end }}{{ end }}<start_of_turn>model\n',
        ["<end_of_turn>", "<start_of_turn>"]),
    # Mistral 7B v0.3's template without tools: no system turn, the system prompt opens the last user turn when that
    # is the last message; an answer is " " + content + </s>. The <s> llama.cpp adds itself.
    "mistral": (
        '{{- range $i, $m := .Messages }}{{- if eq .Role "user" }}'
        '{{- if and $.System (eq (len (slice $.Messages $i)) 1) }}[INST] {{ $.System }}\n\n{{ .Content }}[/INST]'
        '{{- else }}[INST] {{ .Content }}[/INST]{{- end }}'
        '{{- else if eq .Role "assistant" }} {{ .Content }}</s>{{- end }}{{- end }}',
        ["</s>", "[INST]"]),
}


def check_tooling() -> str:
    """The installed llama-cpp-python version, or a UserError naming the install command."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError as e:
        raise UserError(f"--gguf needs llama.cpp's converter and quantizer, which are not installed ({e})",
                        INSTALL_HINT) from None
    return metadata.version("llama-cpp-python")


def converter(cache_dir: str) -> Path:
    """llama.cpp's convert_hf_to_gguf.py of the installed llama-cpp-python version, from that version's source
    distribution on PyPI (the wheel doesn't carry it), unpacked once under the cache."""
    version = check_tooling()
    target = Path(cache_dir) / f"llama.cpp-{version}"
    script = target / "convert_hf_to_gguf.py"
    if script.is_file():
        return script
    target.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"Fetching llama.cpp's converter from PyPI (llama-cpp-python=={version} source) into {target}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".llama.cpp-") as tmp:
        result = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                 "--disable-pip-version-check", "-q", "-d", tmp, f"llama-cpp-python=={version}"],
                                capture_output=True, text=True)
        sdists = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        if result.returncode != 0 or not sdists:
            raise UserError(f"could not download llama-cpp-python=={version}'s source from PyPI: "
                            f"{result.stderr.strip()[-400:]}", "Check that pip can reach the package index.")
        staged = Path(tmp) / "llama.cpp"
        prefix = f"{sdists[0].name.removesuffix('.tar.gz')}/vendor/llama.cpp/"
        wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
        with tarfile.open(sdists[0]) as sdist:
            for member in sdist.getmembers():
                name = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and name.startswith(wanted) and member.isfile():
                    member.name = name
                    sdist.extract(member, staged, filter="data")
        os.replace(staged, target)
    return script


def export(merged: Path, out_dir: Path, kind: str, cache_dir: str) -> dict[str, Any]:
    """RUN_DIR/gguf/model-<kind>.gguf and a Modelfile, checked by loading the file with llama.cpp and chatting.

    llama.cpp's quantizer and the check run in a child process: if llama.cpp crashes there, the command says so and
    exits 2, no staged file stays, and after a crash on a quantized file the f16 file is kept when it answers."""
    script = converter(cache_dir)
    out_dir.mkdir(exist_ok=True)
    target = out_dir / f"model-{kind}.gguf"
    staged = out_dir / f".{target.name}.tmp"
    f16 = staged if kind == "f16" else out_dir / ".model-f16.gguf.tmp"
    try:
        started = time.perf_counter()
        tokenizer = json.loads((merged / "tokenizer.json").read_text(encoding="utf-8"))
        # Mistral's ▁ before the start of the text only: llama.cpp must be told not to put one after each special token
        # (convert_child says why); a vocabulary that puts it everywhere ("always") is what llama.cpp does already
        first_only = sentencepiece_prefix(tokenizer) and tokenizer["pre_tokenizer"].get("prepend_scheme") == "first"
        run = ["-m", "trainer.export.convert_child"] if first_only else []
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
            source = converter_input(merged, Path(tmp))
            result = subprocess.run([sys.executable, *run, str(script), str(source), "--outfile", str(f16),
                                     "--outtype", "f16"], capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"llama.cpp's converter failed on {merged}:\n{result.stderr[-3000:]}")
        convert_s = time.perf_counter() - started
        step = f"while answering a question with {target}"
        try:
            if kind != "f16":
                step = f"while quantizing to {kind} for {target}"
                code = llama_child.run("quantize", str(f16), str(staged), kind)["code"]
                if code != 0:
                    raise RuntimeError(f"llama.cpp's quantizer returned {code} for {kind}")
                step = f"while answering a question with {target}"
            quantize_s = time.perf_counter() - started - convert_s
            reply = generate(staged)
        except llama_child.Crashed as crash:
            raise crashed(crash.how, step, kind, f16, out_dir) from None
        if not reply.strip():
            raise RuntimeError(f"the {kind} GGUF loads but generated nothing for {CHECK_QUESTION!r}")
        os.replace(staged, target)
    finally:  # nothing half-written stays, whatever stopped the export
        staged.unlink(missing_ok=True)
        f16.unlink(missing_ok=True)
    write_atomic(out_dir / "Modelfile", modelfile(target.name, merged))
    console.print(f"[green]GGUF[/] {target} ({target.stat().st_size / 2**20:.0f} MB); llama.cpp answers "
                  f"{CHECK_QUESTION!r} with: {reply.strip()[:120]!r}")
    return {"file": target.name, "bytes": target.stat().st_size, "convert_s": round(convert_s, 2),
            "quantize_s": round(quantize_s, 2), "llama_cpp_python": metadata.version("llama-cpp-python"),
            "question": CHECK_QUESTION, "reply": reply}


def crashed(how: str, step: str, kind: str, f16: Path, out_dir: Path) -> UserError:
    """The error for a crash of llama.cpp. After a crash on a quantized file the f16 file this export converted is
    checked too (the crashes seen were in the quantized kernels): kept as model-f16.gguf if it answers, and named."""
    message = f"llama.cpp crashed ({how}) {step}: that file was not kept"
    if kind != "f16":
        try:
            works = bool(generate(f16).strip())
        except llama_child.Crashed:
            works = False
        if works:
            os.replace(f16, out_dir / "model-f16.gguf")
            message += f"; the f16 file {out_dir / 'model-f16.gguf'} answers and is kept"
        else:
            message += "; the f16 file crashed too and was not kept"
    version = metadata.version("llama-cpp-python")
    return UserError(message, "llama.cpp's kernels for this CPU's newest instructions crash here (pip compiles "
                     "llama-cpp-python for the CPU it builds on). Rebuild it for any x86-64 CPU: "
                     f'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-deps --no-cache-dir '
                     f"llama-cpp-python=={version} (what scripts/install_llama_cpp.sh does); then export again.")


def converter_input(merged: Path, tmp: Path) -> Path:
    """The folder to convert: `merged` itself, or a view of it whose tokenizer.json says what it is.

    A byte-level BPE tokenizer (GPT-2 style: SmolLM2, Llama 3) never needs byte fallback, yet one rebuilt from a GGUF
    (our CPU demo's SmolLM2) carries `byte_fallback: true` and a SentencePiece-style decoder. llama.cpp's converter
    then takes it for a Llama-2 SentencePiece vocabulary, and llama.cpp aborts on loading the file. The view's
    tokenizer.json is the same vocabulary and merges with the byte-level decoder, so it tokenizes identically.
    """
    tokenizer = json.loads((merged / "tokenizer.json").read_text(encoding="utf-8"))
    model, pre = tokenizer.get("model", {}), tokenizer.get("pre_tokenizer") or {}
    if model.get("type") == "BPE" and model.get("byte_fallback") and pre.get("type") == "ByteLevel":
        link_all_but(merged, tmp, "tokenizer.json")
        model["byte_fallback"] = False
        tokenizer["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
        return tmp
    dummy_prefix = sentencepiece_prefix(tokenizer)
    if dummy_prefix is not None and not (merged / "tokenizer.model").is_file():
        link_all_but(merged, tmp, "tokenizer.model", "tokenizer_config.json")
        (tmp / "tokenizer.model").write_bytes(sentencepiece_model(tokenizer, dummy_prefix))
        # The converter types the added tokens from tokenizer_config.json's list (transformers 5 keeps it in
        # tokenizer.json alone): without it, Gemma's newline runs and HTML tags would not be matched whole.
        config = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
        config.setdefault("added_tokens_decoder", {str(t["id"]): t for t in tokenizer.get("added_tokens", [])})
        (tmp / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        return tmp
    return merged


def link_all_but(source: Path, view: Path, *names: str) -> None:
    """`view` gets every file of `source` except `names` (hard links where it can)."""
    for item in source.iterdir():
        if item.name not in names:
            try:
                os.link(item, view / item.name)
            except OSError:  # another file system, or no hard links: copy
                shutil.copy2(item, view / item.name)


def sentencepiece_prefix(tokenizer: dict[str, Any]) -> bool | None:
    """Whether tokenizer.json holds a SentencePiece BPE vocabulary (spaces become ▁, bytes fall back to <0xNN>), and
    if so whether it puts a ▁ before the text (a dummy prefix): Gemma's has none (a normalizer replaces spaces,
    nothing splits before the merges); Mistral's and Llama 2's have one (a Metaspace pre-tokenizer that prepends ▁).
    None: not SentencePiece."""
    model, normalizer = tokenizer.get("model", {}), tokenizer.get("normalizer") or {}
    pre = tokenizer.get("pre_tokenizer") or {}
    if model.get("type") != "BPE" or not model.get("byte_fallback"):
        return None
    if not pre and normalizer.get("type") == "Replace" and normalizer.get("content") == "\u2581" \
            and normalizer.get("pattern", {}).get("String") == " ":
        return False
    if pre.get("type") == "Metaspace" and pre.get("replacement") == "\u2581" and not normalizer:
        return pre.get("prepend_scheme") in ("first", "always")
    return None


def sentencepiece_model(tokenizer: dict[str, Any], dummy_prefix: bool) -> bytes:
    """tokenizer.model (SentencePiece's ModelProto) rebuilt from a SentencePiece vocabulary's tokenizer.json (Gemma's,
    Mistral's).

    llama.cpp's converter reads such a vocabulary right only from tokenizer.model; without one it takes tokenizer.json
    for a GPT-2 byte-level vocabulary (Gemma) or scores its pieces as it finds them (Mistral: "▁What" split into "▁"
    and "What"), and the GGUF splits text wrongly. transformers 5 no longer writes tokenizer.model when it saves a
    tokenizer, so the merged model has none. SentencePiece's BPE merges the adjacent pair whose union scores highest;
    tokenizer.json ranks its merges by the same scores (transformers built them from those), so each piece scores
    minus the rank of its first merge, and SentencePiece splits text as tokenizer.json does.
    """
    from sentencepiece import sentencepiece_model_pb2 as spm

    model = tokenizer["model"]
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    rank: dict[str, int] = {}
    for i, (left, right) in enumerate(merges):
        rank.setdefault(left + right, i)
    added = {t["id"]: t for t in tokenizer.get("added_tokens", [])}
    kind = spm.ModelProto.SentencePiece.Type
    proto = spm.ModelProto()
    proto.trainer_spec.model_type = spm.TrainerSpec.BPE
    proto.trainer_spec.vocab_size = len(model["vocab"])
    proto.trainer_spec.byte_fallback = True
    proto.normalizer_spec.name = "identity"
    proto.normalizer_spec.add_dummy_prefix = dummy_prefix
    proto.normalizer_spec.remove_extra_whitespaces = False
    proto.normalizer_spec.escape_whitespaces = True
    ids = model["vocab"]
    proto.trainer_spec.bos_id, proto.trainer_spec.eos_id, proto.trainer_spec.pad_id = (
        ids.get(gemma, ids.get(llama, -1)) for gemma, llama in (("<bos>", "<s>"), ("<eos>", "</s>"), ("<pad>", "")))
    for piece, i in sorted(model["vocab"].items(), key=lambda item: item[1]):
        entry = proto.pieces.add()
        entry.piece, entry.score, entry.type = piece, -float(rank.get(piece, 0)), kind.NORMAL
        if piece == model.get("unk_token"):
            entry.type = kind.UNKNOWN
            proto.trainer_spec.unk_id = i
        elif i in added:  # <bos>, <start_of_turn>, [INST] (control); Gemma's newline runs, HTML tags (matched whole)
            entry.type, entry.score = (kind.CONTROL if added[i]["special"] else kind.USER_DEFINED), -1000.0
            entry.piece = piece if added[i]["special"] else piece.replace(" ", "\u2581")
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            entry.type = kind.BYTE
    return proto.SerializeToString()


def generate(path: Path) -> str:
    """Greedy reply of llama.cpp to CHECK_QUESTION with the GGUF at `path`, from a child process (Crashed if it
    crashes)."""
    return str(llama_child.run("chat", str(path), CHECK_QUESTION)["reply"])


def chat_format(merged: Path) -> str | None:
    """Which Ollama template renders this model's chat template: llama3, chatml, gemma, mistral, or None (unknown:
    Phi's, whose Jinja template the GGUF carries for Ollama to read)."""
    files = [merged / "chat_template.jinja", merged / "tokenizer_config.json"]
    text = "".join(f.read_text(encoding="utf-8") for f in files if f.is_file())
    if "<|start_header_id|>" in text:
        return "llama3"
    if "<|im_start|>" in text:
        return "chatml"
    if "<start_of_turn>" in text:
        return "gemma"
    if "[INST]" in text:
        return "mistral"
    return None


def modelfile(gguf_name: str, merged: Path) -> str:
    """An Ollama Modelfile: the GGUF, its chat template in Ollama's syntax, and the end-of-turn stop tokens."""
    lines = [f"FROM ./{gguf_name}"]
    kind = chat_format(merged)
    if kind is None:
        console.print("[yellow]Unknown chat template: the Modelfile leaves TEMPLATE out, so Ollama uses the one "
                      "embedded in the GGUF.[/]")
        return "\n".join(lines) + "\n"
    template, stops = OLLAMA_TEMPLATES[kind]
    lines.append(f'TEMPLATE """{template}"""')
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    return "\n".join(lines) + "\n"
