"""The UI's Export tab: `python -m trainer export` of a run (merged 16-bit, GGUF, push to the Hub), its output live."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from trainer import commands
from trainer.export import GGUF_TYPES, USUAL_GGUF
from trainer.runs.listing import list_runs
from trainer.ui import child

TOKEN_FILE = "TOKEN_FILE"  # what the shown command says instead of the temporary file holding the token


def export_args(run: Path, gguf: str | None = None, push: str = "", private: bool = False,
                adapter_only: bool = False) -> list[str]:
    """`export RUN` with the page's choices as the CLI's flags (the token is added by run_export)."""
    args = ["export", str(run)]
    if gguf:
        args += ["--gguf", gguf]
    if push.strip():
        args += ["--push", push.strip()]
        args += ["--private"] if private else []
        args += ["--adapter-only"] if adapter_only else []
    return args


def run_export(args: list[str], token: str) -> Iterator[str]:
    """The CLI's output so far, line by line as it comes, then how it ended. A token typed in the page goes to the
    child in a file of our own (0600, removed at the end): never in the run, the command shown, or the output."""
    with tempfile.TemporaryDirectory(prefix="trainer-ui-") as folder:
        if token.strip():
            token_file = Path(folder) / "token"
            token_file.touch(mode=0o600)
            token_file.write_text(token.strip(), encoding="utf-8")
            args = [*args, "--token-file", str(token_file)]
        text = f"$ {commands.command_line([TOKEN_FILE if a.startswith(folder) else a for a in args])}\n"
        yield text
        with subprocess.Popen(**child.child(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as process:
            assert process.stdout is not None
            for line in process.stdout:
                text += line.replace(token.strip(), "***") if token.strip() else line
                yield child.final_lines(text)
        ended = "done" if process.returncode == 0 else f"failed (exit code {process.returncode}): the message is above"
        yield child.final_lines(text) + f"\n\nExport {ended}.\n"


def build_tab(runs_root: Path) -> tuple[Any, Callable[[str | None], Any]]:
    """The Export tab's fields, buttons and events, inside the caller's `gr.Tab`; returns its run picker and its
    update (the runs that can be exported; the caller refreshes it on a timer and when the tab opens)."""
    import gradio as gr

    def finished() -> list[str]:
        return [r.path.name for r in list_runs(runs_root) if r.adapter.is_dir()]

    first = finished()
    run = gr.Dropdown(first, value=first[0] if first else None, label="Run to export (runs with an adapter)",
                      elem_id="export-run")
    with gr.Row():
        merged = gr.Button("Merge to 16-bit (RUN/merged)", variant="primary", elem_id="export-merged")
        quant = gr.Dropdown(list(GGUF_TYPES), value=USUAL_GGUF, label="GGUF type", elem_id="export-quant",
                            scale=0, min_width=140)
        gguf = gr.Button("Write GGUF + Ollama Modelfile (RUN/gguf)", elem_id="export-gguf")
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        with gr.Row():
            repo = gr.Textbox(label="Repository (USER/NAME)", elem_id="export-repo")
            token = gr.Textbox(label="Token (empty: HF_TOKEN, hf auth login, or .hftoken); never shown or saved",
                               type="password", elem_id="export-token")
        with gr.Row():
            private = gr.Checkbox(label="private repository", elem_id="export-private")
            adapter_only = gr.Checkbox(label="the adapter only", elem_id="export-adapter-only")
            push = gr.Button("Push", elem_id="export-push")
    output = gr.Textbox(label="Output of trainer export", lines=14, max_lines=14, autoscroll=True,
                        interactive=False, elem_id="export-output")

    def start(name: str | None, **options: Any) -> Iterator[str]:
        if not name or not (runs_root / name).is_dir():
            yield "Pick a run with an adapter above (a completed run)."
            return
        token = options.pop("token", "")
        yield from run_export(export_args(runs_root / name, **options), token)

    def to_merged(name: str | None) -> Iterator[str]:
        yield from start(name)

    def to_gguf(name: str | None, quantization: str) -> Iterator[str]:
        yield from start(name, gguf=quantization)

    def to_hub(name: str | None, repo: str, token: str, private: bool, adapter_only: bool) -> Iterator[str]:
        if not repo.strip():
            yield "Type the Hub repository to push to (USER/NAME)."
            return
        yield from start(name, push=repo, token=token, private=private, adapter_only=adapter_only)

    def offered(picked: str | None) -> Any:
        done = finished()
        return gr.update(choices=done, value=picked if picked in done else next(iter(done), None))

    merged.click(to_merged, run, output)
    gguf.click(to_gguf, [run, quant], output)
    push.click(to_hub, [run, repo, token, private, adapter_only], output)
    return run, offered
