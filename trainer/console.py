"""The single rich Console all commands print through, and the shared tables."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from trainer.config import Config

console = Console(highlight=False)


def config_table(config: Config) -> Table:
    table = Table(title="Resolved configuration", show_header=False, box=None, pad_edge=False)
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            for key, value in values.items():
                table.add_row(f"{section}.{key}", str(value))
        else:
            table.add_row(section, str(values))
    return table
