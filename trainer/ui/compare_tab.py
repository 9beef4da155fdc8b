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
from trainer.runs.listing import list_runs
from trainer.runs.run_dir import is_run_dir
from trainer.serve import chat

BASE = "base model (of the other side)"
REFRESH_S = 0.2  # how often the page is sent both answers while they stream


def choices(runs_root: Path, targets: list[str]) -> list[str]:
    """The base model, the targets given, then every run with an adapter and every complete checkpoint of a run
    (as RUN/checkpoint-N), newest runs as listed."""
    names = [BASE, *targets]
    for run in list_runs(runs_root):
        if run.adapter.is_dir():
            names.append(run.path.name)
        names += [f"{run.path.name}/{p.name}" for p in run.complete_checkpoints()]
    return names


def sides(runs_root: Path, targets: list[str], left: str | None, right: str | None,
          run: str | None) -> tuple[Any, Any]:
    """Both pickers' updates with today's choices: the base model on the left, `run` (the page's current run, when
    it has an adapter) on the right, else the sides as they were."""
    import gradio as gr

    names = choices(runs_root, targets)
    if run is None or names_run(right, runs_root / run):
        return gr.update(choices=names, value=left), gr.update(choices=names, value=right)
    return gr.update(choices=names, value=BASE), gr.update(choices=names, value=run)


def eval_report(runs_root: Path, choice: str | None) -> str:
    """The eval report `trainer eval` wrote for the run a picker's choice names (RUN/eval/report.md, as Markdown),
    or how to make one."""
    choice = choice or ""
    found = [path for path in (Path(choice), runs_root / choice.partition("/")[0]) if is_run_dir(path)]
    if not found:  # the base model, a Hub id: no run
        return "Pick a run on the right to see its eval report here."
    run = found[0]  # a run by its folder or id; RUN/checkpoint-N: its run
    folder = run / "eval"
    if not (folder / "report.md").is_file():
        return (f"No eval report for `{run.name}` yet: `python -m trainer eval {run}` writes one (its tuned model "
                "against the base model on the run's held-out rows: loss, and the answers side by side).")
    report = (folder / "report.md").read_text(encoding="utf-8")
    return f"From `trainer eval` (every number: `{folder / 'eval.json'}`)\n\n{report}"


def names_run(choice: str | None, run: Path) -> bool:
    """Whether a picker's choice is this run (by its id in the runs root or by its folder)."""
    return bool(choice) and (choice == run.name or Path(choice).resolve() == run.resolve())


def target_of(choice: str, other: str, picked: str | None, runs_root: Path,
              model_for: Callable[[str | None], chat.ChatModel]) -> str:
    """What chat.load is given for a choice: the base model of the other side (of the Chat tab's model when both are
    the base), a checkpoint folder, or the choice itself."""
    if choice == BASE:
        return model_for(picked if other == BASE else target_of(other, BASE, picked, runs_root, model_for)).base_name
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
            models = [model_for(target_of(side, other, target, runs_root, model_for))
                      for side, other in ((left, right), (right, left))]
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
        names = choices(runs_root, targets)  # the choices only: values sent back could undo a newer follow
        return gr.update(choices=names), gr.update(choices=names)

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
    with gr.Accordion("Eval report of the run on the right (trainer eval)", open=True):
        report = gr.Markdown(eval_report(runs_root, right.value), elem_id="compare-eval-report", max_height=480)
    # a new click cancels the answers still streaming for the old prompt
    button.click(compare, [prompt, left, right, picked, *options], [left_out, right_out], concurrency_limit=2)
    right.change(lambda choice: eval_report(runs_root, choice), right, report, show_progress="hidden")
    return refresh, [left, right]
