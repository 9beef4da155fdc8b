"""`trainer ui`: a Gradio app to chat with a result, compare it with its base model, and follow the runs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from trainer.errors import UserError
from trainer.runs import RunDir
from trainer.runs.listing import list_runs
from trainer.serve import chat
from trainer.ui import compare_tab, export_tab, train_tab
from trainer.ui.loss_chart import loss_figure

# The Runs table: a run's info() key and its column header
RUN_COLUMNS = {"run": "Run", "profile": "Profile", "state_text": "State", "step": "Step", "elapsed": "Elapsed",
               "eta": "ETA", "loss": "Loss", "eval_loss": "Eval loss", "tokens_per_s": "Tokens/s",
               "adapter": "Adapter", "merged": "Merged export"}


# Runs in the page: the last assistant message, read with the Web Speech API when "read aloud" is on.
SPEAK_LAST_REPLY = """(history, on) => {
    const last = (history || []).at(-1);
    if (!on || !window.speechSynthesis || !last || last.role !== "assistant") return;
    const parts = typeof last.content === "string" ? [last.content] : [].concat(last.content || []);
    const text = parts.map((p) => (typeof p === "string" ? p : p?.text || "")).join("");
    window.speechSynthesis.cancel();
    window.speechSynthesis.speak(new SpeechSynthesisUtterance(text));
}"""


CELL_CHARS = 70  # a longer cell (a failed run's cause) is cut: the Train tab's status line has it whole


def cell(value: Any) -> Any:
    """A table cell as people read it: yes/no, not true/false; nothing for no value; a long text cut short."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str) and len(value) > CELL_CHARS:
        return value[: CELL_CHARS - 1] + "…"
    return "" if value is None else value


def text_of(content: Any) -> str:
    """A Gradio chat message's content as plain text (Gradio 6 sends a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return content.get("text", "")
    return "".join(text_of(part) for part in content or [])


def build(targets: list[str], runs_root: Path, cache_dir: str) -> Any:
    import gradio as gr

    loaded: dict[str, chat.ChatModel] = {}

    def choices() -> list[str]:
        """The targets given, then every run with an adapter by its id (new runs appear without a restart)."""
        return [*targets, *(r.path.name for r in list_runs(runs_root) if r.adapter.is_dir())]

    def model_for(target: str | None) -> chat.ChatModel:
        if not target:
            raise UserError("no model selected", "Pick a run or type a model folder or Hub id above.")
        if target not in loaded:
            run = runs_root / target
            loaded[target] = chat.load(str(run) if target not in targets and run.is_dir() else target, cache_dir)
        return loaded[target]

    def select(target: str | None) -> str:
        if not target:
            return "No model picked yet: pick a run above (or type a model folder or Hub id) to chat with it."
        try:
            model = model_for(target)
        except UserError as e:
            return f"**Error:** {e.message}  \n{e.hint}"
        kind = f"LoRA adapter on `{model.base_name}`" if model.has_adapter else "plain model (no adapter)"
        return f"Loaded `{target}`: {kind}."

    def settings(system: str, temperature: float, top_p: float, max_new_tokens: float) -> chat.GenerationSettings:
        return chat.GenerationSettings(temperature, top_p, int(max_new_tokens), (system or "").strip())

    def respond(message: str, history: list[dict], target: str, *options: Any) -> Iterator[tuple[str, list]]:
        if not message.strip():
            yield "", history
            return
        try:
            model = model_for(target)
        except UserError as e:  # a message, not an exception: no red badges, no traceback in the console
            gr.Warning(f"{e.message}. {e.hint}")
            yield message, history
            return
        messages = [{"role": m["role"], "content": text_of(m["content"])} for m in history]
        messages.append({"role": "user", "content": message})
        for reply in chat.stream(model, messages, settings(*options)):
            yield "", [*messages, {"role": "assistant", "content": reply}]

    def regenerate(history: list[dict], target: str, *options: Any) -> Iterator[list]:
        """The last reply again: the conversation up to the last user message, answered anew (what is being typed in
        the message box stays)."""
        last_user = max((i for i, m in enumerate(history) if m["role"] == "user"), default=None)
        if last_user is None:
            yield history
            return
        for _, conversation in respond(text_of(history[last_user]["content"]), history[:last_user], target, *options):
            yield conversation

    def runs_table(picked: list[str] | None, exporting: str | None,
                   current: str | None) -> tuple[list[list[Any]], Any, Any, Any]:
        runs = list_runs(runs_root)
        rows = [[cell(info[c]) for c in RUN_COLUMNS] for info in (r.info() for r in runs)]
        names = [r.path.name for r in runs]
        kept = [name for name in picked or [] if name in names] or [n for n in [current] if n in names] or names[:1]
        return rows, gr.update(choices=names, value=kept), gr.update(choices=choices()), to_export(exporting, current)

    def has_adapter(name: str | None) -> bool:
        return bool(name) and (runs_root / name / "adapter").is_dir()

    def to_export(exporting: str | None, current: str | None) -> Any:
        """The Export tab's picker: the current run once it has an adapter (a run picked there is the current run)."""
        return exportable(current if has_adapter(current) else exporting)

    def follow(current: str | None, chatting: str | None, picked: list[str] | None, left: str | None,
               right: str | None) -> tuple[Any, ...]:
        """Every tab on the page's current run: the Chat and Compare pickers and the Export tab's when it has an
        adapter, the Runs chart's picks (added to them)."""
        ready = has_adapter(current)
        if not current:
            return gr.update(), gr.update(), gr.update(), gr.update(), gr.update()
        names = choices()
        curves = [*(p for p in picked or [] if p != current), current]
        chat_on = ready and not compare_tab.names_run(chatting, runs_root / current)
        return (gr.update(choices=names, value=current) if chat_on else gr.update(), exportable(current),
                gr.update(choices=[r.path.name for r in list_runs(runs_root)], value=curves),
                *compare_tab.sides(runs_root, targets, left, right, current if ready else None))

    def run_named(choice: str | None) -> Any:
        """The run a picker's choice names (by its id, or its folder in the runs root), else no change."""
        names = [r.path.name for r in list_runs(runs_root)]
        found = [n for n in names if choice and compare_tab.names_run(choice, runs_root / n)]
        return found[0] if found else gr.update()

    def opened() -> tuple[str | None, Any]:
        """The run the page opens on (the one training, else the newest), each time it is loaded; the Chat picker on
        the first model given, else the newest run with an adapter (not the ones there were when the app started)."""
        names = choices()
        return train_tab.current_run(runs_root), gr.update(choices=names, value=names[0] if names else None)

    def loss_plot(names: list[str] | None, smoothing: float, drawn: tuple | None) -> tuple[Any, tuple | None]:
        """The picked runs' loss chart, and what this page has drawn (runs, their metrics' times, smoothing): redrawn
        only when that changed, per page."""
        runs = [RunDir(runs_root / name) for name in names or [] if (runs_root / name).is_dir()]
        now = (tuple((r.path.name, r.metrics.stat().st_mtime if r.metrics.exists() else 0.0) for r in runs),
               smoothing)
        if drawn == now:
            return gr.update(), drawn  # nothing new: the page keeps its chart
        return loss_figure(runs, smoothing), now

    with gr.Blocks(title="trainer") as app:
        gr.Markdown("# trainer: train, follow, chat with and export your fine-tune")
        first = choices()
        current = gr.State(None)  # the page's current run: the newest, the one just started, or the one picked
        with gr.Tab("Chat"):
            # what Chat (and Compare's "base model") talk to; the Train tab's base model is the page's one model field
            target = gr.Dropdown(first, value=first[0] if first else None, allow_custom_value=True,
                                 elem_id="model-picker",
                                 label="Chat with: a run, an adapter folder, or a model folder / Hub id")
            status = gr.Markdown(elem_id="model-status")
            chatbot = gr.Chatbot(label="Conversation", height=420, elem_id="chatbot")
            message = gr.Textbox(label="Message", placeholder="Type a message and press Enter", elem_id="message")
            with gr.Row():
                send = gr.Button("Send", variant="primary", elem_id="send")
                stop = gr.Button("Stop", elem_id="chat-stop")
                again = gr.Button("Regenerate", elem_id="regenerate")
                clear = gr.Button("Clear")
                read_aloud = gr.Checkbox(label="Read replies aloud (the browser's own voice)", elem_id="read-aloud")
            with gr.Accordion("Generation settings", open=False):
                options = [
                    gr.Textbox(label="System prompt", value=""),
                    gr.Slider(0.0, 2.0, 0.7, step=0.05, label="Temperature (0: greedy)"),
                    gr.Slider(0.05, 1.0, 0.9, step=0.05, label="Top-p"),
                    gr.Slider(16, 2048, 256, step=16, label="Max new tokens", elem_id="max-new-tokens"),
                ]
        with gr.Tab("Compare") as compare_page:
            refresh_compare, compare_pickers = compare_tab.build_tab(runs_root, targets, model_for, target, settings,
                                                                    options)
        with gr.Tab("Train"):
            train_tab.build_tab(runs_root, current)
        with gr.Tab("Export") as export_page:
            export_run, exportable = export_tab.build_tab(runs_root)
        with gr.Tab("Runs") as runs_page:
            table = gr.Dataframe(headers=list(RUN_COLUMNS.values()), label=f"Runs in {runs_root}", elem_id="runs",
                                 interactive=False)
            with gr.Row():
                run_pick = gr.Dropdown(label="Loss curves of runs", choices=[], multiselect=True, elem_id="run-pick",
                                       scale=3)
                smoothing = gr.Slider(0.0, 0.99, 0.0, step=0.01, label="Smoothing (moving average of the train loss)",
                                      elem_id="loss-smoothing", scale=1)
            plot = gr.Plot(label="Loss by optimizer step", elem_id="loss-chart")
            timer = gr.Timer(5)  # refresh while runs train
            drawn = gr.State(None)  # the chart this page shows: (run, its metrics' time)

        tables = ([run_pick, export_run, current], [table, run_pick, target, export_run])
        quiet = {"show_progress": "hidden"}  # status lines and tables say what happens, without Gradio's timers
        app.load(opened, None, [current, target], **quiet).then(select, target, status, **quiet).then(
            runs_table, *tables, **quiet)
        current.change(follow, [current, target, run_pick, *compare_pickers],
                       [target, export_run, run_pick, *compare_pickers], **quiet)
        target.change(select, target, status, **quiet)
        for picker in (target, export_run):  # a run picked in any tab is the page's current run
            picker.input(run_named, picker, current)
        replies = [event(respond, [message, chatbot, target, *options], [message, chatbot])
                   for event in (message.submit, send.click)]
        replies.append(again.click(regenerate, [chatbot, target, *options], chatbot))
        for reply in replies:  # once a reply is whole, the browser speaks it: nothing runs on the server
            reply.then(None, [chatbot, read_aloud], None, js=SPEAK_LAST_REPLY)
        # the reply so far stays; generation ends (chat.stream), and so does speaking
        stop.click(None, None, None, cancels=replies, js="() => { window.speechSynthesis?.cancel(); }")
        clear.click(lambda: [], None, chatbot, cancels=replies)
        compare_page.select(refresh_compare, compare_pickers, compare_pickers)  # new runs and checkpoints
        timer.tick(runs_table, *tables, **quiet).then(
            loss_plot, [run_pick, smoothing, drawn], [plot, drawn], show_progress="hidden")
        # A tab's parts exist in the page once it is opened: what was sent before, they never showed.
        export_page.select(to_export, [export_run, current], export_run)
        runs_page.select(runs_table, *tables).then(
            loss_plot, [run_pick, smoothing, gr.State(None)], [plot, drawn])
        for picked in (run_pick.change, smoothing.release):
            picked(loss_plot, [run_pick, smoothing, drawn], [plot, drawn])
    return app


def launch(targets: list[str], runs_root: Path, cache_dir: str, host: str, port: int, share: bool,
           auth: tuple[str, str] | None) -> None:
    """Serve the app until Ctrl+C, with our own banner: Gradio's (quiet here) would tell to set `share=True` in
    `launch()`, where ours is --share."""
    from trainer.console import console

    app = build(targets, runs_root, cache_dir)
    app.queue().launch(server_name=host, server_port=port, share=share, auth=auth, show_error=True, quiet=True,
                       prevent_thread_lock=True)
    console.out(f"* Running on local URL:  {app.local_url.rstrip('/')}", highlight=False)
    if app.share_url:
        console.out(f"* Running on public URL: {app.share_url} (temporary; anyone with the link can use it)",
                    highlight=False)
    elif not share:
        console.out("* A temporary public link: add --share", highlight=False)
    app.block_thread()
