"""The UI's Compare tab: one prompt answered by any two of a base model, a run and a run's checkpoints, side by side,
both streaming at once (each is its own model in memory)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from trainer.errors import UserError
from trainer.runs import checkpoints
from trainer.runs.listing import list_runs
from trainer.serve import chat

BASE = "base model (of the model picked above)"
REFRESH_S = 0.2  # how often the page is sent both answers while they stream


def choices(runs_root: Path, targets: list[str]) -> list[str]:
    """The base model, the targets given, then every run with an adapter and every complete checkpoint of a run
    (as RUN/checkpoint-N), newest runs as listed."""
    names = [BASE, *targets]
    for run in list_runs(runs_root):
        if run.adapter.is_dir():
            names.append(run.path.name)
        saved = [p for p in run.checkpoints.glob("checkpoint-*")
                 if checkpoints.step_of(p) is not None and checkpoints.missing(p) is None]
        names += [f"{run.path.name}/{p.name}" for p in sorted(saved, key=checkpoints.step_of)]
    return names


def target_of(choice: str, picked: str | None, runs_root: Path,
              model_for: Callable[[str | None], chat.ChatModel]) -> str:
    """What chat.load is given for a choice: the picked model's base, a checkpoint folder, or the choice itself."""
    if choice == BASE:
        return model_for(picked).base_name
    run, _, checkpoint = choice.partition("/")
    if checkpoint.startswith("checkpoint-") and (runs_root / run / "checkpoints" / checkpoint).is_dir():
        return str(runs_root / run / "checkpoints" / checkpoint)
    return choice


def side_by_side(models: list[chat.ChatModel], prompt: str, settings: chat.GenerationSettings,
                 cancelled: Callable[[], bool]) -> Iterator[tuple[str, ...]]:
    """Both answers as they grow, each model generating in its own thread; both stop when `cancelled()`."""
    texts, done = ["" for _ in models], [False for _ in models]
    messages = [{"role": "user", "content": prompt}]

    def answer(i: int, model: chat.ChatModel) -> None:
        try:
            with closing(chat.stream(model, messages, settings)) as replies:
                for texts[i] in replies:
                    if cancelled():
                        return
        finally:
            done[i] = True

    for i, model in enumerate(models):
        threading.Thread(target=answer, args=(i, model), daemon=True).start()
    while not all(done):
        time.sleep(REFRESH_S)
        yield tuple(texts)
    yield tuple(texts)


def build_tab(runs_root: Path, targets: list[str], model_for: Callable[[str | None], chat.ChatModel],
              picked: Any, settings: Callable[..., chat.GenerationSettings], options: list[Any]) -> Any:
    """The tab's parts and events, inside a gr.Tab; returns what refreshes its pickers (for the tab's select)."""
    import gradio as gr

    clicks = {"compare": 0}  # compare clicks so far: answers still streaming for an older one stop

    def compare(prompt: str, left: str, right: str, target: str | None, *values: Any) -> Iterator[tuple[Any, Any]]:
        if not prompt.strip():
            gr.Warning("Type a prompt to compare the two answers.")
            yield gr.update(), gr.update()
            return
        clicks["compare"] += 1
        mine = clicks["compare"]
        try:
            models = [model_for(target_of(side, target, runs_root, model_for)) for side in (left, right)]
        except UserError as e:
            gr.Warning(f"{e.message}. {e.hint}")
            yield gr.update(), gr.update()
            return
        stopped = {"page": False}  # the page went away or cancelled: the threads stop too
        try:
            yield from side_by_side(models, prompt, settings(*values),
                                    lambda: stopped["page"] or clicks["compare"] != mine)
        finally:
            stopped["page"] = True

    def refresh(left: str | None, right: str | None) -> tuple[Any, Any]:
        names = choices(runs_root, targets)
        return gr.update(choices=names, value=left), gr.update(choices=names, value=right)

    first = choices(runs_root, targets)
    with gr.Row():
        left = gr.Dropdown(first, value=BASE, allow_custom_value=True, label="Left", elem_id="compare-left")
        right = gr.Dropdown(first, value=first[1] if len(first) > 1 else BASE, allow_custom_value=True,
                            label="Right", elem_id="compare-right")
    prompt = gr.Textbox(label="Prompt", elem_id="compare-prompt")
    button = gr.Button("Answer with both", variant="primary", elem_id="compare")
    with gr.Row():
        left_out = gr.Textbox(label="Left's answer", lines=10, elem_id="left-answer")
        right_out = gr.Textbox(label="Right's answer", lines=10, elem_id="right-answer")
    # a new click cancels the answers still streaming for the old prompt
    button.click(compare, [prompt, left, right, picked, *options], [left_out, right_out], concurrency_limit=2)
    return refresh, [left, right]
