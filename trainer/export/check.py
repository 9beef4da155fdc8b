"""A GGUF export checked against the trained model: the run (base + adapter) and llama.cpp with the GGUF answer the
same prompts greedily, and the file must agree with the run where it matters to a user of Ollama or llama.cpp: the
prompts rendered by the GGUF's own chat template are the run's tokens, generation ends where the run's does (at the
end of the turn, with no template text in the answer), the Modelfile stops at the run's end-of-turn token, and the
answers agree as often as that quantization allows (AGREE)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from trainer import weights
from trainer.data import stage
from trainer.data.render import stop_token_ids
from trainer.export import llama_child
from trainer.export.merge import CHECK_PROMPTS, Source

PROMPTS = 6  # held-out conversations answered by both (the run's first rows where it held none out)
MAX_NEW_TOKENS = 32
# The least share of prompts whose first answer token, and whose whole answer, are the run's, per GGUF type. Measured
# on the CPU demo's SmolLM2 run (2 steps on the sample data, 6 prompts of up to 32 tokens, 2026-12-06): f16 100% and
# 100%; q8_0 100% and 50% (answers part after a few sentences, at a near-tie); q4_k_m 67% and 33%. Below these
# thresholds something other than rounding is at work (a wrong template moves every first token).
AGREE = {"f16": (0.8, 0.5), "q8_0": (0.8, 0.3), "q4_k_m": (0.5, 0.0)}


class CheckFailed(Exception):
    """The export differs from the trained model: `trainer export` exits 1 with what differs, the files kept."""


def prompts_of(source: Source) -> tuple[list[list[dict[str, str]]], str]:
    """Conversations up to their last user turn: the run's held-out rows (else its first rows, else the merge's check
    prompts), and where they came from."""
    from trainer.errors import UserError

    config = source.run.read_config()
    fixed = [[{"role": "user", "content": p}] for p in CHECK_PROMPTS]
    if config.train.method != "sft":
        return fixed, "the merge check's prompts (a preference run)"
    try:
        rows = stage.load_rows(config)
    except UserError as e:  # the dataset is gone or out of reach: the check still runs
        return fixed, f"the merge check's prompts (the run's data: {e.message})"
    if rows.format == "text":
        return fixed, "the merge check's prompts (the run trained on plain text)"
    split = stage.split(rows, config)
    held = list(split.eval) or list(split.train)
    found = []
    for i in held:
        conversation = rows.conversations[i]
        if any(m["role"] not in ("system", "user", "assistant") or "tool_calls" in m for m in conversation):
            continue  # tool calls render with the row's tools: plain chats say the same of the file
        last = max((k for k, m in enumerate(conversation) if m["role"] == "assistant"), default=None)
        if last:
            found.append([{"role": m["role"], "content": m["content"]} for m in conversation[:last]])
        if len(found) == PROMPTS:
            break
    return found or fixed, "held-out rows" if len(split.eval) else "the run's first rows (it held none out)"


def reference(source: Source, cache_dir: str, prompts: list[list[dict[str, str]]],
              tokenizer: Any) -> tuple[list[dict[str, Any]], str]:
    """The run's greedy answers: base + adapter in float32 on the CPU; where the base is stored quantized, the merged
    16-bit model, which the merge checked against base + adapter."""
    import torch
    from transformers import AutoModelForCausalLM

    base_dir = weights.folder_of(weights.describe(str(source.run.path))[0], cache_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    what = "base + adapter"
    if getattr(model.config, "quantization_config", None):
        model = AutoModelForCausalLM.from_pretrained(source.run.path / "merged", dtype=torch.float32)
        what = "the merged 16-bit model (checked against base + adapter when merged)"
    else:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, source.adapter)
    model.eval()
    stops = stop_token_ids(tokenizer)
    found = []
    for messages in prompts:
        prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        with torch.inference_mode():
            out = model.generate(**prompt, max_new_tokens=MAX_NEW_TOKENS, do_sample=False, eos_token_id=stops,
                                 pad_token_id=tokenizer.pad_token_id or stops[0])
        ids = out[0, prompt["input_ids"].shape[1]:].tolist()
        stopped = bool(ids) and ids[-1] in stops
        ids = ids[:-1] if stopped else ids
        found.append({"prompt_ids": prompt["input_ids"][0].tolist(), "ids": ids, "stopped": stopped,
                      "text": tokenizer.decode(ids)})
    return found, what


def check(source: Source, gguf: Path, kind: str, modelfile: str, cache_dir: str) -> dict[str, Any]:
    """The GGUF at `gguf` against the trained run; the record, or CheckFailed naming what differs."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.adapter)  # the run's, with its chat template
    prompts, came_from = prompts_of(source)
    ours, what = reference(source, cache_dir, prompts, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        asked = Path(tmp) / "prompts.json"
        asked.write_text(json.dumps({"prompts": prompts, "max_new_tokens": MAX_NEW_TOKENS}), encoding="utf-8")
        theirs = llama_child.run("answers", str(gguf), str(asked))
    eot = tokenizer.convert_ids_to_tokens(stop_token_ids(tokenizer)[0])
    # the template's own special tokens (a reply that writes "[INST]" or "<|im_start|>" went on into the next turn);
    # not the unused control tokens of a vocabulary such as Mistral's 771
    rendered = tokenizer.apply_chat_template([*prompts[0], {"role": "assistant", "content": "x"}], tokenize=False)
    specials = [t for t in tokenizer.all_special_tokens if len(t) > 1 and (t in rendered or t == eot)]
    pairs = list(zip(ours, theirs["answers"], strict=True))
    n = len(pairs)
    ended = [(a, b) for a, b in pairs if a["stopped"] and b["ids"][:len(a["ids"])] == a["ids"]]
    first = sum(bool(a["ids"][:1]) and a["ids"][:1] == b["ids"][:1] for a, b in pairs) / n
    whole = sum(a["ids"] == b["ids"] for a, b in pairs) / n
    record = {"prompts": n, "prompts_from": came_from, "reference": what, "max_new_tokens": MAX_NEW_TOKENS,
              "same_first_token": round(first, 3), "same_answer": round(whole, 3),
              "thresholds": dict(zip(("same_first_token", "same_answer"), AGREE[kind], strict=True)),
              "template_same_tokens": sum(a["prompt_ids"] == b["prompt_ids"] for a, b in pairs),
              # where the GGUF said what the run said before the run's end of turn, it must end there too (an
              # answer that went another way may end elsewhere: a quantized file's does)
              "stops_where_run_stops": sum(b["stopped"] and b["ids"] == a["ids"] for a, b in ended),
              "run_stops": len(ended),
              "answers": [{"run": a["text"], "gguf": b["text"]} for a, b in pairs]}
    differs = []
    if not theirs["template"]:
        differs.append("the GGUF carries no chat template (llama.cpp and Ollama would not render the chat format)")
    elif record["template_same_tokens"] < n:
        bad = next(b for a, b in pairs if a["prompt_ids"] != b["prompt_ids"])
        differs.append(f"the GGUF's chat template renders {n - record['template_same_tokens']} of {n} prompts to other "
                       f"tokens than the run's tokenizer ({len(bad['prompt_ids'])} tokens, e.g. the first prompt that "
                       "differs)")
    if record["stops_where_run_stops"] < record["run_stops"]:
        differs.append(f"the GGUF says what the run says in {record['run_stops']} answers the run ends at its "
                       f"end-of-turn token, but ends only {record['stops_where_run_stops']} of them there (a runaway "
                       "answer in Ollama)")
    leaked = [t for b in theirs["answers"] for t in specials if t in b["text"]]
    if leaked:
        differs.append(f"template text in the GGUF's answers: {sorted(set(leaked))}")
    if modelfile and "TEMPLATE" in modelfile and f'PARAMETER stop "{eot}"' not in modelfile:
        differs.append(f"the Modelfile does not stop at the run's end-of-turn token {eot!r}")
    low_first, low_whole = AGREE[kind]
    if first < low_first or whole < low_whole:
        differs.append(f"answers agree with the run's less than a {kind} file should: first tokens {first:.0%} "
                       f"(at least {low_first:.0%}), whole answers {whole:.0%} (at least {low_whole:.0%})")
    record["differs"] = differs
    return record
