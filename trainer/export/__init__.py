"""`trainer export`: a finished run merged into 16-bit weights (merge), with a model card (model_card), GGUF files and
an Ollama Modelfile (gguf, llama.cpp in a child process: llama_child), pushed to the Hugging Face Hub (hub)."""

from __future__ import annotations

import json
import time
from typing import Any, Literal, get_args

from rich.markup import escape

from trainer.console import console
from trainer.errors import UserError
from trainer.export import merge, model_card
from trainer.runs import RunDir, write_atomic

GgufType = Literal["f16", "q8_0", "q4_k_m"]  # what --gguf takes and the UI offers
GGUF_TYPES: tuple[str, ...] = get_args(GgufType)
USUAL_GGUF = "q4_k_m"  # what the UI picks first: Ollama's usual quantization


def record(run: RunDir, key: str, value: dict[str, Any]) -> None:
    """Add this export step's facts to RUN_DIR/export.json."""
    path = run.path / "export.json"
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    data[key] = {**value, "date": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(path, json.dumps(data, indent=2) + "\n")


def main(run_dir: str, cache_dir: str, merged_16bit: bool = False, gguf: str | None = None, push: str | None = None,
         private: bool = False, adapter_only: bool = False, token_file: str | None = None,
         check_gguf: bool = True) -> int:
    """`trainer export`: every input is checked before anything slow runs or anything is written. A GGUF is checked
    against the trained run (export/check.py) unless `check_gguf` is off: 1 when it differs (the files kept), else
    0."""
    from trainer.export import hub

    if gguf is not None and gguf not in GGUF_TYPES:
        raise UserError(f"--gguf {gguf} is not a GGUF type we make", f"Use one of: {', '.join(GGUF_TYPES)}.")
    if adapter_only and not push:
        raise UserError("--adapter-only says what to push, but there is no --push", "Add --push USER/NAME.")
    if adapter_only and (merged_16bit or gguf):
        raise UserError("--adapter-only pushes the adapter alone", "Drop --merged-16bit/--gguf, or --adapter-only.")
    source = merge.open_source(run_dir)
    token = None
    if push:
        hub.check_repo_id(push)
        token = hub.find_token(token_file)
        hub.check_token(token)
    if gguf:
        from trainer.export import gguf as gguf_export

        gguf_export.check_tooling()
    merged = source.run.path / "merged"
    if not adapter_only and (merged_16bit or not (merged / "config.json").is_file()):
        console.print(f"Merging {source.adapter} into {source.base_name} (16-bit)")
        check = merge.merge(source, cache_dir)
        record(source.run, "merged_16bit", check)
        console.print(f"[green]Merged[/] into {merged} in {check['seconds']} s; logits match base + adapter within "
                      f"{check['saved_max_abs_diff']:.3g} (allowed {check['saved_tolerance']:.3g})")
    differs: list[str] = []
    if gguf:
        result = gguf_export.export(merged, source.run.path / "gguf", gguf, cache_dir)
        if check_gguf:
            result["check"] = check_against_run(source, gguf, result["file"], cache_dir)
            differs = result["check"]["differs"]
        record(source.run, f"gguf_{gguf}", result)
    gguf_dir = source.run.path / "gguf"
    gguf_files = sorted(p.name for p in gguf_dir.glob("*.gguf")) if gguf_dir.is_dir() and not adapter_only else []
    card_folder = source.adapter if adapter_only else merged
    write_atomic(card_folder / "README.md", model_card.model_card(source, cache_dir, adapter_only, push, gguf_files))
    console.print(f"Model card: {card_folder / 'README.md'}")
    if differs:
        console.print(f"[bold red]The {gguf} GGUF differs from the trained run[/] (kept, with the details in "
                      f"{source.run.path / 'export.json'}):")
        for line in differs:
            console.print(f"  - {escape(line)}")
        console.print("[yellow]fix:[/] export f16 or q8_0 to see whether the quantization is the cause; a template "
                      "or stop-token difference is a bug worth reporting with the run's config.toml. "
                      + ("Nothing was pushed. " if push else "") + "--no-check skips this check.")
        return 1
    if push:
        assert token is not None
        folders = [card_folder] + ([gguf_dir] if gguf_files else [])
        url = hub.push(push, folders, token, private)
        record(source.run, "push", {"repo": push, "private": private, "adapter_only": adapter_only, "url": url})
        console.print(f"[green]Pushed[/] to {url}")
    return 0


def check_against_run(source: merge.Source, kind: str, name: str, cache_dir: str) -> dict[str, Any]:
    """The GGUF `name` against the trained run, with a line on how they agreed."""
    from trainer.export import check

    gguf_dir = source.run.path / "gguf"
    console.print(f"Checking {name} against the trained run ({check.PROMPTS} prompts, greedy, up to "
                  f"{check.MAX_NEW_TOKENS} tokens)...")
    modelfile = (gguf_dir / "Modelfile").read_text(encoding="utf-8") if (gguf_dir / "Modelfile").is_file() else ""
    result = check.check(source, gguf_dir / name, kind, modelfile, cache_dir)
    low_first, low_whole = check.AGREE[kind]
    console.print(f"{'[green]Same model[/]' if not result['differs'] else '[red]Differs[/]'}: first answer token "
                  f"as the run's in {result['same_first_token']:.0%} of {result['prompts_from']} (at least "
                  f"{low_first:.0%} for {kind}), whole answer in {result['same_answer']:.0%} (at least "
                  f"{low_whole:.0%}); its template renders {result['template_same_tokens']} of {result['prompts']} "
                  f"prompts to the run's tokens; it ends where the run ends (the same answer) in "
                  f"{result['stops_where_run_stops']} of {result['run_stops']}")
    return result
