"""The UI's Train tab: its fields as a `python -m trainer` command line; Check data, Start, Stop and Resume run it."""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from trainer import commands, profiles
from trainer.config import settings
from trainer.console import duration
from trainer.errors import UserError
from trainer.runs import RunDir, background, spill
from trainer.runs.listing import list_runs
from trainer.ui import child, data_view
from trainer.ui.loss_chart import loss_figure

PACKING = ("profile's", "on", "off")
STATE_WORDS = {"interrupted": "stopped", "running": "training", "stopping": "stopping (saving a checkpoint)"}
LOG_LINES = 12
GOES_ON = "it goes on when this page or the UI closes (its output below, and in its train.log)."
starting = threading.Lock()  # one Start or Resume at a time in this UI: the holder check and the launch go together


# The number fields and the settings they show: the profile's value until changed
NUMBERS = ("train.max_steps", "train.epochs", "train.learning_rate", "lora.r", "lora.alpha", "model.max_seq_length")
# Every field that shows a setting, and its label (to which where its value comes from is added)
LABELS = {"model.name": "Base model to train (Hub id or folder)", "data.dataset": "Dataset: a file, a Hub id or sample",
          "train.max_steps": "Max steps (0: epochs)", "train.epochs": "Epochs (when max steps is 0)",
          "train.learning_rate": "Learning rate", "lora.r": "LoRA r", "lora.alpha": "LoRA alpha",
          "model.max_seq_length": "max_seq_length"}


def run_options(profile: str, model: str, dataset: str, data_format: str, learning_rate: float | None,
                lora_r: float | None, lora_alpha: float | None, max_seq_length: float | None, packing: str,
                extra: str) -> list[str]:
    """The options `train` and `data` share, for the fields filled in; an empty field, or one that shows the
    profile's value, keeps the profile's value."""
    sets = {"train.learning_rate": learning_rate or None, "lora.r": whole(lora_r), "lora.alpha": whole(lora_alpha),
            "model.max_seq_length": whole(max_seq_length),
            "train.packing": {"on": "true", "off": "false"}.get(packing)}
    own = profile_values(profile)
    sets = {key: None if own.get(key) == value else value for key, value in sets.items()}
    model = "" if (model or "").strip() == own.get("model.name") else model  # the profile's: no flag
    return commands.run_options(profile, model, dataset, data_format, sets, split_settings(extra))


def split_settings(text: str | None) -> list[str]:
    """Other settings as KEY=VALUE items: split at spaces, quotes group ("name=a b"), and a backslash is a character
    (Windows paths: cache_dir=C:\\Users\\me), not an escape as in a POSIX shell."""
    lexer = shlex.shlex(text or "", posix=True)
    lexer.whitespace_split, lexer.escape = True, ""
    return list(lexer)


def changed_length(profile: str, steps: float | None, passes: float | None) -> tuple[float | None, float | None]:
    """Max steps and epochs as the command gives them: those equal to the profile's left out."""
    own = profile_values(profile)
    return (None if steps == own.get("train.max_steps") else steps,
            None if passes == own.get("train.epochs") else passes)


@functools.lru_cache(maxsize=32)
def profile_values(profile: str) -> dict[str, Any]:
    """The profile's values of the fields that show settings ({} for a profile that does not load: its error is
    shown)."""
    try:
        config, _ = profiles.resolve(profile or "auto")
    except UserError:
        return {}
    return {key: getattr(getattr(config, key.split(".")[0]), key.split(".")[1]) for key in LABELS}


def origin_label(key: str, profile: str, value: Any) -> str:
    """A field's label with where its value comes from: the profile, or your setting (beside the profile's)."""
    own = profile_values(profile).get(key)
    name = profiles.locate(profile or "auto").name if own is not None else profile
    if value in (None, "") or value == own:
        return f"{LABELS[key]} · from the profile {name}"
    return f"{LABELS[key]} · your setting (the profile's: {own})"


def whole(value: float | None) -> int | None:
    """A number field as a setting: empty or 0 (what Gradio sends for an empty field) keeps the profile's value."""
    return int(value) if value else None


def cli(args: list[str], timeout_s: float = 600, error_file: Path | None = None,
        preview_file: Path | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child process (from this UI's folder, with its environment), as a terminal would run it."""
    return subprocess.run(**child.child(args, error_file, preview_file), capture_output=True, timeout=timeout_s)


def profile_reason(profile: str) -> str:
    """Which profile runs and why (auto: the same detection as the CLI), and its defaults."""
    try:
        choice = profiles.locate(profile or "auto")
        config, _ = profiles.resolve(profile or "auto")
    except UserError as e:
        return f"**{e.message}**  \n{e.hint}"
    picked = f"auto → **{choice.name}**: {choice.reason}" if profile == "auto" else f"**{choice.name}**"
    t = config.train
    length_text = f"{t.max_steps} steps" if t.max_steps else f"{t.epochs:g} epochs"
    return (f"{picked}. Its defaults: `{config.model.name}`, dataset `{config.data.dataset}`, {length_text}, "
            f"learning rate {t.learning_rate:g}, LoRA r {config.lora.r} / alpha {config.lora.alpha}, "
            f"max_seq_length {config.model.max_seq_length}, packing {'on' if t.packing else 'off'}.")


def keep_upload(upload: str | None, runs_root: Path) -> str | None:
    """An uploaded data file, copied where it stays (Gradio's copy is temporary, and a resume reads the data again)."""
    if not upload:
        return None
    folder = runs_root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    kept = folder / Path(upload).name
    shutil.copyfile(upload, kept)
    return str(kept)


def check_data(options: list[str]) -> tuple[str, str]:
    """`trainer data`'s facts (counts, warnings, the first examples with their roles and trained spans), or its
    error, as HTML; and the setting (KEY=VALUE) the error says would fix it, or ""."""
    with tempfile.TemporaryDirectory(prefix="trainer-ui-") as folder:
        error_file, preview_file = Path(folder) / "error.json", Path(folder) / "preview.json"
        result = cli(["data", *options, "-n", "2"], error_file=error_file, preview_file=preview_file)
        error = commands.read_error(error_file)
        facts = json.loads(preview_file.read_text(encoding="utf-8")) if preview_file.is_file() else None
    if facts is not None:
        return data_view.html(facts), ""
    if error is not None:
        return data_view.error_html(error), error.setting
    return data_view.output_html(result.stdout + result.stderr), ""


def with_setting(extra: str, setting: str) -> str:
    """Other settings with `setting` (KEY=VALUE) in, in place of the same key's value if it had one."""
    key = setting.split("=", 1)[0]
    items = [*(item for item in split_settings(extra) if item.split("=", 1)[0] != key), setting]
    return " ".join(f'"{item}"' if any(c.isspace() for c in item) else item for item in items)


def plan_text(args: list[str]) -> str:
    """What `--dry-run` tells before the start: the settings fitted to the card and the model, the memory of a
    worst-case batch against the card's, the time per epoch of this data; or why it cannot train."""
    error, plan = dry_run(args)
    return error_text(error) if error is not None else plan


def dry_run(args: list[str]) -> tuple[UserError | None, str]:
    """`train ARGS --dry-run` in a child: the CLI's own checks before a start (settings, data, the model's family),
    as the UserError it ended with, else None and the plan it told."""
    with tempfile.TemporaryDirectory(prefix="trainer-ui-") as folder:
        error_file = Path(folder) / "error.json"
        result = cli([*args, "--dry-run"], timeout_s=300, error_file=error_file)
        error = commands.read_error(error_file)
    if error is None and result.returncode != 0:  # not a UserError: a bug, and its output says which
        said = (result.stdout + result.stderr).strip()
        error = UserError(f"the check before the start ended with exit code {result.returncode}: {said[-500:]}")
    if error is not None:
        return error, ""
    return None, told_plan(result.stdout)


def told_plan(stdout: str) -> str:
    """The plan line of a dry run's output, as markdown."""
    said = " ".join(stdout.split())  # the console wrapped it at its width
    fitted = re.search(r"; ((?:fitted|the profile's settings): .*?) Resolved configuration", said)
    plan = re.search(r"Plan: (.*?) Dry run: stopped", said)
    if plan is None:  # not a UserError: a bug, and its output says which
        return f"No plan: {said[-500:]}"
    return f"**Before the start:** {plan[1]}" + (f"  \n{fitted[1]}" if fitted else "")


def launch(args: list[str], runs_root: Path) -> str:
    """Run `python -m trainer ... --detach` unless a run trains already (the CLI's rule, checked here too so that two
    clicks cannot both pass it); the CLI's output, or the UserError it ended with, as data."""
    with starting, tempfile.TemporaryDirectory(prefix="trainer-ui-") as folder:
        commands.one_training_at_a_time(runs_root)
        error_file = Path(folder) / "error.json"
        result = cli(args, error_file=error_file)
        error = commands.read_error(error_file)
    output = (result.stdout + result.stderr).strip()
    if error is not None:
        raise error
    if result.returncode != 0:  # not a UserError: a bug, and its traceback is the output
        raise UserError(output or f"the command exited with code {result.returncode}")
    return output


def status_text(run: RunDir | None) -> str:
    """`run-id: training, step N/M, loss L` / stopped / completed, from the run directory and its process (its times
    are in the progress line beneath, with their units)."""
    if run is None:
        return "No run yet: fill in the settings and press Start."
    info = run.info()
    state = info["state"]
    text = f"{run.path.name}: {STATE_WORDS.get(state, state)}, step {info['step']}"
    if info["loss"] is not None:
        text += f", loss {info['loss']}"
    if state == "failed":  # the cause first: "failed: <the error>", then its fix
        status = run.read_status()
        text = f"{run.path.name}: {info['state_text']}" + (f"  \nfix: {status['hint']}" if status.get("hint") else "")
        text += f"  \n(at step {info['step']}" + (f"; checkpoint {info['checkpoint']}: Resume continues from it)"
                                                  if info["checkpoint"] else ")")
    elif state == "starting":
        text += " (loading the model and data)"
    elif state == "interrupted":
        text += f"; checkpoint {info['checkpoint']}: Resume continues from it" if info["checkpoint"] else ""
    elif state == "died":
        text += f": its process is gone (see {run.log_file})"
    slow = spill.recorded(run.read_metrics())
    return text + (f"\n\n**Slow:** {slow}" if slow else "")


def log_tail(run: RunDir | None) -> str:
    """The last lines of the run's train.log, progress bars as the terminal shows them last."""
    if run is None or not run.log_file.exists():
        return ""
    return child.final_lines(run.log_file.read_text(encoding="utf-8", errors="replace"), LOG_LINES)


def progress_html(run: RunDir | None) -> str:
    """The run's progress as a bar: step of steps, elapsed, ETA, average tokens/s and peak memory so far."""
    if run is None:
        return ""
    info, metrics = run.info(), run.read_metrics()
    steps = [m for m in metrics if "loss" in m]
    done, _, total = info["step"].partition("/")
    share = int(done) / int(total) if total.isdigit() and int(total) else 0.0
    facts = [f"step {info['step']}"]
    if steps and steps[-1].get("elapsed_s") is not None:
        elapsed = steps[-1]["elapsed_s"]
        facts.append(f"elapsed {duration(elapsed)}")
        if info["state"] == "running" and int(done) > 0 and share:
            facts.append(f"ETA {duration(elapsed / int(done) * (int(total) - int(done)))}")
    speeds = [m["tokens_per_s"] for m in steps if m.get("tokens_per_s")]
    if speeds:
        facts.append(f"{sum(speeds) / len(speeds):,.0f} tokens/s (average)")
    memory = [m["memory_gb"] for m in steps if m.get("memory_gb") is not None]
    if memory:
        facts.append(f"memory {max(memory):.2f} GB (peak)")
    return (f'<div id="train-progress-bar" style="display:flex; align-items:center; gap:12px">'
            f'<progress value="{share:.4f}" max="1" style="flex:1; height:14px"></progress>'
            f'<span>{" · ".join(facts)}</span></div>')


def about(key: str) -> str:
    """A field's help line from the schema, with its bounds or choices."""
    return f"{settings.help_of(key)} ({settings.SETTINGS[key].type_text})"


def settings_help() -> str:
    """Every setting (key, type or choices, default, help) from the schema, as a markdown table."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    rows = [f"| `{s.key}` | {cell(s.type_text)} | {cell(s.default_text)} | {cell(s.help)} |"
            for s in settings.SETTINGS.values()]
    return "\n".join(["| setting | type | default | what it does |", "|---|---|---|---|", *rows])


def error_text(e: UserError) -> str:
    return f"**Error:** {e.message}" + (f"  \n{e.hint}" if e.hint else "")


def current_run(runs_root: Path) -> str | None:
    """The run a page opens on: the one training now (after a restart of the UI too), else the newest."""
    found = list_runs(runs_root)
    busy = background.holder(found)
    return busy.path.name if busy is not None else next((r.path.name for r in found), None)


def build_tab(runs_root: Path, current: Any) -> Any:
    """The Train tab's fields, buttons and events, inside the caller's `gr.Tab`; `current` (a gr.State) holds the
    page's current run, which Start and Resume set and the run picker follows and sets. Returns the run picker."""
    import gradio as gr

    def runs() -> list[str]:
        return [r.path.name for r in list_runs(runs_root)]

    def run_of(name: str | None) -> RunDir | None:
        return RunDir(runs_root / name) if name and (runs_root / name).is_dir() else None

    with gr.Row():
        profile = gr.Dropdown(["auto", *profiles.names()], value="auto", label="Profile", elem_id="train-profile",
                              scale=1)
        reason = gr.Markdown(profile_reason("auto"), elem_id="train-profile-reason")
    own = profile_values("auto")

    def labelled(key: str) -> dict[str, Any]:
        return {"value": own.get(key), "label": origin_label(key, "auto", own.get(key))}

    with gr.Row():
        model = gr.Textbox(**labelled("model.name"), elem_id="train-model", scale=3)
        data_format = gr.Dropdown(list(settings.choices("data.format")), value="auto", label="Format",
                                  info=settings.help_of("data.format"), elem_id="train-format", scale=1)
    with gr.Row():
        dataset = gr.Textbox(**labelled("data.dataset"), elem_id="train-dataset", scale=3)
        upload = gr.File(label="…or upload a data file (.jsonl .json .csv .parquet)", elem_id="train-upload",
                         file_types=[".jsonl", ".json", ".csv", ".parquet"], height=160, scale=1)
        with gr.Column(scale=1, min_width=170):
            check = gr.Button("Check data", elem_id="train-check")
            gr.Markdown("Reads the data as training will: counts, warnings, and the first examples with the trained "
                        "spans highlighted (shown below).", elem_id="train-check-note")
    # beside Check data, before the numbers: what it found, where the data is chosen
    data_view = gr.HTML(elem_id="train-data", max_height=520, visible=False)
    fix = gr.Button(visible=False, elem_id="train-data-fix", size="sm")  # the setting the error names, to apply
    fix_setting = gr.State("")
    with gr.Row():
        max_steps = gr.Number(**labelled("train.max_steps"), precision=0, info=about("train.max_steps"),
                              elem_id="train-max-steps")
        epochs = gr.Number(**labelled("train.epochs"), info=about("train.epochs"), elem_id="train-epochs")
        learning_rate = gr.Number(**labelled("train.learning_rate"), info=about("train.learning_rate"),
                                  elem_id="train-learning-rate")
        lora_r = gr.Number(**labelled("lora.r"), precision=0, info=about("lora.r"), elem_id="train-lora-r")
        lora_alpha = gr.Number(**labelled("lora.alpha"), precision=0, info=about("lora.alpha"),
                               elem_id="train-lora-alpha")
        max_seq_length = gr.Number(**labelled("model.max_seq_length"), precision=0, info=about("model.max_seq_length"),
                                   elem_id="train-max-seq-length")
        packing = gr.Radio(list(PACKING), value="profile's", label="Packing", info=about("train.packing"),
                           elem_id="train-packing")
    gr.Markdown("The fields show the profile's values until you change one: only what you change is passed as a "
                "setting (the command below shows it; an empty field keeps the profile's).",
                elem_id="train-numbers-note")
    extra = gr.Textbox(label="Other settings (KEY=VALUE ..., as --set)", placeholder="e.g. eval_size=0 "
                       "save_every_steps=10", elem_id="train-settings")
    with gr.Accordion("Every setting (for Other settings)", open=False):
        gr.Markdown(settings_help(), elem_id="train-settings-help")
    first = commands.train_args(run_options("auto", "", "sample", "auto", None, None, None, None, "profile's", ""))
    command = gr.Textbox(commands.command_line(first), label="The same from a terminal", interactive=False,
                         buttons=["copy"], elem_id="train-command")
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume", elem_id="train-resume")
    plan = gr.Markdown("The plan (memory and time per epoch on the card) comes with Check data.", elem_id="train-plan")
    message = gr.Markdown(elem_id="train-message")
    with gr.Row():
        run_pick = gr.Dropdown(runs(), value=None, label="Run (Stop and Resume act on it; the other tabs follow it)",
                               elem_id="train-run", scale=1)
        status = gr.Markdown(status_text(None), elem_id="train-status")
    progress = gr.HTML(elem_id="train-progress")
    chart = gr.Plot(label="Its loss by optimizer step", elem_id="train-chart", visible=False)
    log = gr.Textbox(label="Its output (train.log, the last lines)", lines=8, max_lines=8, interactive=False,
                     autoscroll=True, elem_id="train-log")
    timer = gr.Timer(2)
    drawn = gr.State(None)  # the chart this page shows: (run, its metrics' time)

    fields = [profile, model, dataset, upload, data_format, learning_rate, lora_r, lora_alpha, max_seq_length,
              packing, extra]

    def options_of(profile: str, model: str, dataset: str, upload: str | None, *rest: Any) -> list[str]:
        return run_options(profile, model, keep_upload(upload, runs_root) or dataset, *rest)

    def train_args(steps: float | None, passes: float | None, *values: Any, detach: bool = True) -> list[str]:
        return commands.train_args(options_of(*values), *changed_length(values[0], steps, passes), detach=detach)

    def show_command(steps: float | None, passes: float | None, *values: Any) -> str:
        return commands.command_line(train_args(steps, passes, *values))

    def on_check(*values: Any) -> tuple[Any, Any, str]:
        shown, setting = check_data(options_of(*values))
        offer = gr.update(value=f"Use {setting} (in Other settings) and check again", visible=True) if setting \
            else gr.update(visible=False)
        return gr.update(value=shown, visible=True), offer, setting

    def on_plan(steps: float | None, passes: float | None, *values: Any) -> str:
        return plan_text(train_args(steps, passes, *values, detach=False))

    def on_start(planned: str, steps: float | None, passes: float | None, *values: Any) -> tuple[str, Any, str | None]:
        """The CLI's checks first (a dry run: settings, data, model), then the start: a mistake is refused here, in
        place, and makes no run (said once: the plan may already say it)."""
        try:
            commands.one_training_at_a_time(runs_root)
            error, told = dry_run(train_args(steps, passes, *values, detach=False))
            if error is not None:
                said = "the plan above says why." if planned == error_text(error) else error_text(error)
                return f"Not started: {said}", gr.update(), gr.update()
            path = commands.run_path(runs_root, values[0])
            launch([*train_args(steps, passes, *values), "--run-dir", str(path)], runs_root)
        except UserError as e:
            return error_text(e), gr.update(), gr.update()
        return f"Started `{path.name}` in the background: {GOES_ON}", told, path.name

    def on_started(name: str | None) -> tuple[Any, ...]:
        """The page's current run at once (not the old run's line until the next tick); the timer's turn again."""
        return (*refresh(name, None), False)

    def on_stop(name: str | None) -> str:
        run = run_of(name)
        busy = background.holder(list_runs(runs_root))
        if busy is not None and (run is None or run.state() not in ("running", "starting")):
            run = busy  # the run that trains, when the one shown does not
        try:
            if run is None:
                raise UserError("no run to stop", "Start one first.")
            pid = background.stop(run)
        except UserError as e:
            return error_text(e)
        return (f"Asked `{run.path.name}` (pid {pid}) to stop as Ctrl+C does: it finishes this step, saves a "
                "checkpoint and stops.")

    def on_resume(name: str | None, profile: str, steps: float | None, passes: float | None) -> tuple[str, Any]:
        run = run_of(name)
        steps, passes = changed_length(profile, steps, passes)  # the fields still on the profile's: the run's own
        try:
            if run is None:
                raise UserError("no run to resume", "Pick a stopped run above.")
            launch(commands.resume_args(run.path, steps, passes), runs_root)
        except UserError as e:
            return error_text(e), gr.update()
        return f"Resuming `{run.path.name}` in the background: {GOES_ON}", run.path.name

    def refresh(name: str | None, drawn: tuple | None) -> tuple[Any, str, str, str, Any, tuple | None]:
        """The current run's line, progress, log and chart (the chart redrawn only when its metrics changed)."""
        run = run_of(name)
        now = (name, run.metrics.stat().st_mtime if run is not None and run.metrics.exists() else 0.0)
        if drawn == now:
            figure = gr.update()
        else:  # no run yet, or no step logged: no empty axes
            drawable = run is not None and run.metrics.exists()
            figure = gr.update(value=loss_figure([run], 0.0), visible=True) if drawable else gr.update(visible=False)
        return (gr.update(choices=runs(), value=name), status_text(run), progress_html(run), log_tail(run), figure,
                now)

    def tick(name: str | None, drawn: tuple | None, checking: bool) -> tuple[Any, ...]:
        """refresh, except while Start checks: the status says so until the new run is there."""
        return tuple(gr.update() for _ in shown) if checking else refresh(name, drawn)

    shown = [run_pick, status, progress, log, chart, drawn]
    checking_now = gr.State(False)  # Start is checking: the timer leaves the status line to it
    to_bottom = ("() => requestAnimationFrame(() => { const box = document.querySelector('#train-log textarea'); "
                 "if (box) box.scrollTop = box.scrollHeight; })")  # hidden tabs too: autoscroll misses those
    inputs = [max_steps, epochs, *fields]

    def on_field(said: str | None, *values: Any) -> tuple[str, Any]:
        """The command for the fields as they are now; Start's refusal was of the fields as they were, so a change to
        any of them takes it away."""
        refused = (said or "").startswith(("Not started", "**Error:**"))
        return show_command(*values), "" if refused else gr.update()

    for field in inputs:
        field.change(on_field, [message, *inputs], [command, message], show_progress="hidden")
    numbers = [max_steps, epochs, learning_rate, lora_r, lora_alpha, max_seq_length]
    shown_from = {"model.name": model, "data.dataset": dataset, **dict(zip(NUMBERS, numbers, strict=True))}

    def on_profile(name: str, model_now: str, dataset_now: str, before: str) -> list[Any]:
        """The numbers on the new profile's values, the model too unless it is your own; the dataset stays (your data
        is not the profile's to change), its label saying whose it is."""
        new, old = profile_values(name), profile_values(before)
        values = {key: model_now if key == "model.name" and model_now not in (None, "", old.get(key))
                  else new.get(key) for key in LABELS}
        values["data.dataset"] = dataset_now
        return [name, *(gr.update(value=values[key], label=origin_label(key, name, values[key])) for key in LABELS)]

    last_profile = gr.State("auto")  # the profile the fields were filled from
    profile.change(profile_reason, profile, reason).then(
        on_profile, [profile, model, dataset, last_profile], [last_profile, *shown_from.values()]).then(
        on_plan, inputs, plan, show_progress="hidden")
    for key, field in shown_from.items():  # each says where its value comes from, as it changes
        field.change(functools.partial(lambda key, name, value: gr.update(label=origin_label(key, name, value)), key),
                     [profile, field], field, show_progress="hidden")
    for field in (model, dataset, extra):  # typed: the plan once the field is left, not at every key
        field.blur(on_plan, inputs, plan, show_progress="hidden")
    check.click(on_check, fields, [data_view, fix, fix_setting]).then(on_plan, inputs, plan, show_progress="hidden")
    fix.click(with_setting, [extra, fix_setting], extra).then(
        on_check, fields, [data_view, fix, fix_setting]).then(on_plan, inputs, plan, show_progress="hidden")
    watch = ("(said) => { if ((said || '').startsWith('Started') || (said || '').startsWith('Resuming')) "
             "document.querySelector('#train-run')?.scrollIntoView({block: 'start'}); }")
    # the status lines say what happens; Gradio's own "processing | 2.7s" and queue count stay out of them
    checking = "Checking the settings, the data and the model before the start (as `--dry-run`)…"
    start.click(lambda: (checking, "A new run: checking before the start…", True), None,
                [message, status, checking_now], show_progress="hidden").then(
        on_start, [plan, *inputs], [message, plan, current], show_progress="hidden").then(  # then: also after an error
        on_started, current, [*shown, checking_now], show_progress="hidden").then(None, message, None, js=watch)
    stop.click(on_stop, run_pick, message, show_progress="hidden").then(
        refresh, [current, drawn], shown, show_progress="hidden")
    resume.click(on_resume, [run_pick, profile, max_steps, epochs], [message, current], show_progress="hidden").then(
        on_started, current, [*shown, checking_now], show_progress="hidden").then(
        None, message, None, js=watch)  # started: the page goes to where it is watched
    run_pick.input(lambda name: name, run_pick, current)
    current.change(refresh, [current, drawn], shown, show_progress="hidden").then(None, None, None, js=to_bottom)
    timer.tick(tick, [current, drawn, checking_now], shown, show_progress="hidden")
    log.change(None, None, None, js=to_bottom)
    return run_pick
