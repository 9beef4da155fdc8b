"""`trainer data`: rendered examples with the trained tokens highlighted, and token-length statistics."""

from __future__ import annotations

from itertools import groupby

from rich.markup import escape
from rich.panel import Panel
from rich.text import Text

from trainer import data, weights
from trainer.config import Config
from trainer.console import console
from trainer.errors import UserError


def show(config: Config, n: int) -> None:
    if config.train.method != "sft":
        raise UserError(f"`trainer data` shows conversations for SFT; the preference pairs of train.method = "
                        f"{config.train.method} are not shown yet",
                        "Train with --method to have them checked (bad pairs are named by file and line).")
    examples = data.load(config)
    tokenizer = weights.load_tokenizer(config.model.name, config.run.cache_dir)
    prepared = data.build(config, examples, tokenizer, check=False)
    console.print(f"{config.data.dataset}: {len(examples)} rows, format {examples.format}, "
                  f"tokenizer of {config.model.name}")
    if "date_string" in (tokenizer.chat_template or ""):
        console.print(f"The chat template writes a date into every prompt: date_string = \"{config.data.date_string}\" "
                      "(fixed, so every start and resume tokenizes alike; --set date_string=... to change it)")
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
    if prepared.problem is not None:
        console.print(f"[bold red]Too few rows to train on:[/] {escape(prepared.problem.message)}\n"
                      f"[yellow]fix:[/] {escape(prepared.problem.hint)}")


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
