"""`trainer data`: rendered examples with the trained tokens highlighted, preference pairs or KTO's labelled answers,
and token-length statistics; each training method (train/methods/) reads and builds its data, then shows it here. The
same facts go, as JSON, to the file `facts_to` names (TRAINER_PREVIEW_FILE): the UI's data preview draws them as
HTML."""

from __future__ import annotations

import contextlib
import contextvars
import json
from collections.abc import Callable, Iterator
from itertools import groupby
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from trainer.config import Config
from trainer.console import console
from trainer.data import tokens
from trainer.data.formats import Examples
from trainer.data.preferences import Pairs
from trainer.data.render import ControlTokens, encode
from trainer.data.stage import Prepared
from trainer.data.unpaired import Unpaired
from trainer.errors import UserError

# How the caller loads a model's tokenizer (weights.load_tokenizer: name, cache folder); passed in, so that data/ stays
# below weights/, and called after the dataset is read, so a bad dataset is named before any download.
LoadTokenizer = Callable[[str, str], Any]

# Where this command's facts go as JSON (a front end that runs `trainer data` reads them there), else nowhere.
FACTS_FILE: contextvars.ContextVar[Path | None] = contextvars.ContextVar("facts_file", default=None)


@contextlib.contextmanager
def facts_to(path: Path | None) -> Iterator[None]:
    """The previews shown inside also written as JSON to `path` (None: only shown)."""
    token = FACTS_FILE.set(path)
    try:
        yield
    finally:
        FACTS_FILE.reset(token)


def keep(facts: dict[str, Any]) -> None:
    if (path := FACTS_FILE.get()) is not None:
        path.write_text(json.dumps(facts) + "\n", encoding="utf-8")


def show_rows(config: Config, n: int, examples: Examples, tokenizer: Any, prepared: Prepared) -> None:
    """SFT's rows as read (`examples`) and built unchecked (`prepared`): shown as they are, with what is wrong said
    after."""
    console.print(f"{config.data.dataset}: {len(examples)} rows, format {examples.format}, "
                  f"tokenizer of {config.model.name}")
    show_fields(examples.fields_read, examples.fields_unused)
    show_date(config, tokenizer)
    shown = []
    for i in range(min(n, len(prepared.train))):
        row = prepared.train[i]
        mask = [int(label != -100) for label in row["labels"]]
        parts = segments(tokenizer, row["input_ids"], mask)
        shown.append({"title": f"train example {i + 1} ({len(row['input_ids'])} tokens)", "segments": parts})
        console.print(Panel(highlight(parts), title=shown[-1]["title"],
                            subtitle="[bold green]trained[/] / [dim]context only[/]"))
    s = prepared.stats
    console.print(
        f"train rows {s['train_rows']}, eval rows {s['eval_rows']}; tokens per row: min {s['tokens_min']}, "
        f"median {s['tokens_median']:.0f}, max {s['tokens_max']}; over max_seq_length "
        f"({config.model.max_seq_length}): {s['rows_over_max_length']} rows ({s['rows_dropped']} dropped); "
        f"trained tokens: {s['trained_token_fraction']:.0%}; rows spelling a control token: "
        f"{s['rows_spelling_control_tokens']}"
    )
    untrained = sum(1 for messages in examples.conversations for m in messages if m.get("train") is False)
    if untrained:
        console.print(f"Answers with weight 0: {untrained} (rendered as context, not trained)")
    show_tools(config, examples, tokenizer)
    show_problem(prepared.problem, "rows")
    counts = {"rows read": len(examples), "train rows": s["train_rows"], "eval rows": s["eval_rows"],
              "tokens per row (min / median / max)":
                  f"{s['tokens_min']} / {s['tokens_median']:.0f} / {s['tokens_max']}",
              "trained tokens": f"{s['trained_token_fraction']:.0%}"}
    notes = warnings(config, len(examples), s, "rows")
    if s["rows_spelling_control_tokens"]:
        notes.append(f"{s['rows_spelling_control_tokens']} rows spell a control token of the tokenizer in their text")
    if untrained:
        notes.append(f"{untrained} answers with weight 0 (rendered as context, not trained)")
    keep(facts(config, tokenizer, f"{len(examples)} rows, format {examples.format}", examples.fields_read,
               examples.fields_unused, shown, counts, notes, prepared.problem))


def warnings(config: Config, rows: int, s: dict[str, Any], what: str) -> list[str]:
    """What the statistics warn of (rows dropped, truncated, left unused; the eval hold-out's share), as lines."""
    found, max_length = [], config.model.max_seq_length
    if s["rows_dropped"]:
        found.append(f"{s['rows_dropped']} {what} dropped: no answer within max_seq_length ({max_length} tokens)")
    if s["rows_over_max_length"] > s["rows_dropped"]:
        found.append(f"{s['rows_over_max_length'] - s['rows_dropped']} {what} truncated to max_seq_length "
                     f"({max_length} tokens): their end is not trained")
    held = s["eval_rows"]
    if held:
        found.append(f"eval: {held} of {rows} {what} held out ({held / max(1, rows):.0%}), not trained on")
    else:
        found.append(f"no eval hold-out: every {what[:-1]} trains, and no eval loss is measured")
    unused = rows - s["train_rows"] - held - s["rows_dropped"]
    if unused > 0 and config.train.max_steps:
        found.append(f"{unused} {what} not reached in max_steps={config.train.max_steps} (--set max_steps=0 trains "
                     "them all)")
    return found


def facts(config: Config, tokenizer: Any, summary: str, read: list[str], unused: list[str],
          shown: list[dict[str, Any]], counts: dict[str, Any], notes: list[str],
          problem: UserError | None) -> dict[str, Any]:
    """What `trainer data` showed, as data (for facts_to)."""
    date = (f'the chat template writes the date "{config.data.date_string}" into every prompt'
            if "date_string" in (getattr(tokenizer, "chat_template", None) or "") else None)
    special = sorted({t for t in getattr(tokenizer, "all_special_tokens", []) if t}
                     | {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special},
                     key=len, reverse=True)
    return {"dataset": config.data.dataset, "model": config.model.name, "method": config.train.method,
            "summary": summary, "fields_read": read, "fields_unused": unused, "date": date, "examples": shown,
            "counts": counts, "warnings": notes, "special_tokens": special,
            "problem": None if problem is None else {"message": problem.message, "hint": problem.hint}}


def show_tools(config: Config, examples: Examples, tokenizer: Any) -> None:
    """How many rows define or call tools, and the first one rendered with its tools: the calls trained, the results
    context."""
    with_tools = examples.rows_with_tools()
    if not with_tools:
        return
    calls = [i for i in range(len(examples)) if examples.calls_tools(i)]
    console.print(f"Rows with tools: {with_tools} of {len(examples)}, {len(calls)} of them calling one (tool "
                  "definitions and results are context; the assistant's calls and answers are trained)")
    i = calls[0] if calls else next(i for i in range(len(examples)) if examples.has_tools(i))
    settings = tokens.Settings(config.model.max_seq_length, config.data.date_string, config.data.control_tokens_as_text)
    ((ids, mask),) = encode(tokenizer, [tokens.rendered(examples, i, tokenizer, ControlTokens(tokenizer), settings)])
    ids, mask = ids.tolist(), mask.tolist()
    console.print(Panel(highlight(segments(tokenizer, ids, mask)), title=f"conversation {i + 1}, with tools "
                        f"({len(ids)} tokens)", subtitle="[bold green]trained[/] / [dim]context only[/]"))


def show_pairs(config: Config, n: int, pairs: Pairs, tokenizer: Any, prepared: Prepared) -> None:
    """Preference pairs (train.method dpo, orpo) as TRL gets them: the rendered prompt, then the chosen and the
    rejected answer, with their tokens; and how many pairs are longer than max_seq_length, and what happens to them."""
    console.print(f"{config.data.dataset}: {len(pairs)} preference pairs, format {pairs.format}, for "
                  f"{config.train.method.upper()}, tokenizer of {config.model.name}")
    show_fields(pairs.fields_read, pairs.fields_unused)
    show_date(config, tokenizer)
    rows = prepared.train if prepared.train is not None else []
    shown = []
    for i in range(min(n, len(rows))):
        row = rows[i]
        sizes = {side: len(tokenizer(row["prompt"] + row[side])["input_ids"]) for side in ("chosen", "rejected")}
        prompt = len(tokenizer(row["prompt"])["input_ids"])
        shown.append({"title": f"train pair {i + 1}: prompt {prompt}, chosen {sizes['chosen'] - prompt}, "
                               f"rejected {sizes['rejected'] - prompt} tokens",
                      "segments": [[row["prompt"], "context"], ["\n[chosen]\n", "label"], [row["chosen"], "trained"],
                                   ["\n[rejected]\n", "label"], [row["rejected"], "rejected"]]})
        console.print(Panel(highlight(shown[-1]["segments"]), title=shown[-1]["title"],
                            subtitle="[dim]prompt[/] / [bold green]chosen[/] / [bold red]rejected[/]"))
    s, max_length = prepared.stats, config.model.max_seq_length
    sides = "; ".join(f"{side} min {s[f'{side}_tokens_min']}, median {s[f'{side}_tokens_median']:.0f}, max "
                      f"{s[f'{side}_tokens_max']}" for side in ("prompt", "chosen", "rejected"))
    console.print(f"train pairs {s['train_rows']}, eval pairs {s['eval_rows']}; tokens per pair: {sides}; prompt + "
                  f"the longer answer: max {s['tokens_max']}")
    console.print(f"Over max_seq_length ({max_length}): {s['rows_over_max_length']} pairs truncated (each sequence, "
                  f"prompt + answer, cut to {max_length} tokens keeping its start: the end of the answer is not "
                  f"trained), {s['rows_dropped']} dropped (the prompt alone fills {max_length} tokens)")
    show_problem(prepared.problem, "pairs")
    counts = {"pairs read": len(pairs), "train pairs": s["train_rows"], "eval pairs": s["eval_rows"],
              "prompt + longer answer, tokens (max)": s["tokens_max"]}
    keep(facts(config, tokenizer, f"{len(pairs)} preference pairs, format {pairs.format}", pairs.fields_read,
               pairs.fields_unused, shown, counts, warnings(config, len(pairs), s, "pairs"), prepared.problem))


def show_unpaired(config: Config, n: int, data: Unpaired, tokenizer: Any, prepared: Prepared) -> None:
    """KTO's labelled answers as TRL gets them: the rendered prompt, then the answer marked true or false, with their
    tokens; the labels counted; and how many are longer than max_seq_length, and what happens to them."""
    console.print(f"{config.data.dataset}: {len(data)} labelled answers ({data.desirable} marked true, "
                  f"{len(data) - data.desirable} false), format {data.format}, for KTO, tokenizer of "
                  f"{config.model.name}")
    show_fields(data.fields_read, data.fields_unused)
    show_date(config, tokenizer)
    rows = prepared.train if prepared.train is not None else []
    shown = []
    for i in range(min(n, len(rows))):
        row = rows[i]
        prompt = len(tokenizer(row["prompt"])["input_ids"])
        answer = len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) - prompt
        mark, kind = ("true", "trained") if row["label"] else ("false", "rejected")
        shown.append({"title": f"train answer {i + 1}, marked {mark}: prompt {prompt}, answer {answer} tokens",
                      "segments": [[row["prompt"], "context"], [f"\n[{mark}]\n", "label"],
                                   [row["completion"], kind]]})
        console.print(Panel(highlight(shown[-1]["segments"]), title=shown[-1]["title"],
                            subtitle="[dim]prompt[/] / [bold green]true[/] / [bold red]false[/]"))
    s, max_length = prepared.stats, config.model.max_seq_length
    sides = "; ".join(f"{side} min {s[f'{side}_tokens_min']}, median {s[f'{side}_tokens_median']:.0f}, max "
                      f"{s[f'{side}_tokens_max']}" for side in ("prompt", "completion"))
    console.print(f"train answers {s['train_rows']} ({s['desirable']} true, {s['undesirable']} false), eval answers "
                  f"{s['eval_rows']}; tokens per answer: {sides}; prompt + answer: max {s['tokens_max']}")
    console.print(f"Over max_seq_length ({max_length}): {s['rows_over_max_length']} answers truncated (prompt + "
                  f"answer cut to {max_length} tokens keeping its start: the end of the answer is not trained), "
                  f"{s['rows_dropped']} dropped (the prompt alone fills {max_length} tokens)")
    show_problem(prepared.problem, "answers")
    counts = {"answers read": len(data), "marked true": data.desirable, "marked false": len(data) - data.desirable,
              "train answers": s["train_rows"], "eval answers": s["eval_rows"],
              "prompt + answer, tokens (max)": s["tokens_max"]}
    keep(facts(config, tokenizer, f"{len(data)} labelled answers, format {data.format}", data.fields_read,
               data.fields_unused, shown, counts, warnings(config, len(data), s, "answers"), prepared.problem))


def show_fields(read: list[str], unused: list[str]) -> None:
    """What the rows' fields became: a field that changes what a row means is refused when read (formats.py), so the
    unused ones are those that say nothing about training (ids, sources, scores)."""
    console.print(f"Fields read: {', '.join(read) or 'none'}; not used: {', '.join(unused) or 'none'}")


def show_date(config: Config, tokenizer: object) -> None:
    if "date_string" in (tokenizer.chat_template or ""):
        console.print(f"The chat template writes a date into every prompt: date_string = \"{config.data.date_string}\" "
                      "(fixed, so every start and resume tokenizes alike; --set date_string=... to change it)")


def show_problem(problem: UserError | None, what: str) -> None:
    if problem is not None:
        console.print(f"[bold red]Too few {what} to train on:[/] {escape(problem.message)}\n"
                      f"[yellow]fix:[/] {escape(problem.hint)}")


STYLES = {"trained": "bold green", "context": "dim", "rejected": "bold red", "label": "bold"}


def segments(tokenizer: Any, ids: list[int], mask: list[int]) -> list[list[str]]:
    """The decoded text in spans, each [text, "trained" or "context"]."""
    found, position = [], 0
    for trained, group in groupby(mask):
        size = len(list(group))
        found.append([tokenizer.decode(ids[position : position + size]), "trained" if trained else "context"])
        position += size
    return found


def highlight(parts: list[list[str]]) -> Text:
    """Spans for the terminal: trained bold green, context dim (a pair's rejected answer bold red)."""
    text = Text()
    for piece, kind in parts:
        text.append(piece, style=STYLES[kind])
    return text
