"""`trainer data`: rendered examples with the trained tokens highlighted, preference pairs or KTO's labelled answers,
and token-length statistics; each training method (train/methods/) reads and builds its data, then shows it here."""

from __future__ import annotations

from collections.abc import Callable
from itertools import groupby
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

def show_rows(config: Config, n: int, examples: Examples, tokenizer: Any, prepared: Prepared) -> None:
    """SFT's rows as read (`examples`) and built unchecked (`prepared`): shown as they are, with what is wrong said
    after."""
    console.print(f"{config.data.dataset}: {len(examples)} rows, format {examples.format}, "
                  f"tokenizer of {config.model.name}")
    show_fields(examples.fields_read, examples.fields_unused)
    show_date(config, tokenizer)
    for i in range(min(n, len(prepared.train))):
        row = prepared.train[i]
        mask = [int(label != -100) for label in row["labels"]]
        console.print(Panel(highlight(tokenizer, row["input_ids"], mask),
                            title=f"train example {i + 1} ({len(row['input_ids'])} tokens)",
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
    console.print(Panel(highlight(tokenizer, ids, mask), title=f"conversation {i + 1}, with tools ({len(ids)} "
                        "tokens)", subtitle="[bold green]trained[/] / [dim]context only[/]"))


def show_pairs(config: Config, n: int, pairs: Pairs, tokenizer: Any, prepared: Prepared) -> None:
    """Preference pairs (train.method dpo, orpo) as TRL gets them: the rendered prompt, then the chosen and the
    rejected answer, with their tokens; and how many pairs are longer than max_seq_length, and what happens to them."""
    console.print(f"{config.data.dataset}: {len(pairs)} preference pairs, format {pairs.format}, for "
                  f"{config.train.method.upper()}, tokenizer of {config.model.name}")
    show_fields(pairs.fields_read, pairs.fields_unused)
    show_date(config, tokenizer)
    rows = prepared.train if prepared.train is not None else []
    for i in range(min(n, len(rows))):
        row = rows[i]
        sizes = {side: len(tokenizer(row["prompt"] + row[side])["input_ids"]) for side in ("chosen", "rejected")}
        prompt = len(tokenizer(row["prompt"])["input_ids"])
        text = Text(row["prompt"], style="dim")
        text.append("\n[chosen]\n", style="bold").append(row["chosen"], style="bold green")
        text.append("\n[rejected]\n", style="bold").append(row["rejected"], style="bold red")
        console.print(Panel(text, title=f"train pair {i + 1}: prompt {prompt}, chosen {sizes['chosen'] - prompt}, "
                            f"rejected {sizes['rejected'] - prompt} tokens",
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


def show_unpaired(config: Config, n: int, data: Unpaired, tokenizer: Any, prepared: Prepared) -> None:
    """KTO's labelled answers as TRL gets them: the rendered prompt, then the answer marked true or false, with their
    tokens; the labels counted; and how many are longer than max_seq_length, and what happens to them."""
    console.print(f"{config.data.dataset}: {len(data)} labelled answers ({data.desirable} marked true, "
                  f"{len(data) - data.desirable} false), format {data.format}, for KTO, tokenizer of "
                  f"{config.model.name}")
    show_fields(data.fields_read, data.fields_unused)
    show_date(config, tokenizer)
    rows = prepared.train if prepared.train is not None else []
    for i in range(min(n, len(rows))):
        row = rows[i]
        prompt = len(tokenizer(row["prompt"])["input_ids"])
        answer = len(tokenizer(row["prompt"] + row["completion"])["input_ids"]) - prompt
        mark, style = ("true", "bold green") if row["label"] else ("false", "bold red")
        text = Text(row["prompt"], style="dim")
        text.append(f"\n[{mark}]\n", style="bold").append(row["completion"], style=style)
        console.print(Panel(text, title=f"train answer {i + 1}, marked {mark}: prompt {prompt}, answer {answer} tokens",
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


def highlight(tokenizer: object, ids: list[int], mask: list[int]) -> Text:
    """The decoded text, trained spans bold green and context dim."""
    text = Text()
    position = 0
    for trained, group in groupby(mask):
        size = len(list(group))
        piece = tokenizer.decode(ids[position : position + size])
        text.append(piece, style="bold green" if trained else "dim")
        position += size
    return text
