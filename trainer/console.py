"""The single rich Console all commands print through, the shared tables, and where library messages go."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from trainer.config import Config

console = Console(highlight=False)


def config_summary(config: Config) -> Table:
    """Every setting that has a value, a section per row (key=value, wrapped), as a run starts: about 15 lines
    instead of one per setting, so the start of a run stays on a 40-row screen; config.toml has them one per line."""
    table = Table(title="Resolved configuration", show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")

    def pairs(values: dict) -> str:  # settings with no value (an empty path or list) are left out
        return "  ".join(f"{key}={value}" for key, value in values.items() if value not in ("", (), [], None))

    top = {key: value for key, value in config.to_dict().items() if not isinstance(value, dict)}
    if top:
        table.add_row("", pairs(top))
    for section, values in config.to_dict().items():
        if isinstance(values, dict):
            table.add_row(section, pairs(values))
    return table


def library_messages_to(log: Path) -> None:
    """Library warnings and log messages (transformers, huggingface_hub, PEFT, Python's warnings) go to `log` instead
    of the terminal, where they would land in the middle of a streamed reply (chat) or the server's output (ui)."""
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    log.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(handlers=[handler], level=logging.WARNING, force=True)
    logging.captureWarnings(True)  # warnings.warn (PEFT, torch) through the same handler
    # Both libraries print through a terminal handler of their own, added on first use; route them to the root's.
    transformers_logging.disable_default_handler()
    transformers_logging.enable_propagation()
    hub = hub_logging.get_logger()
    for own in list(hub.handlers):
        hub.removeHandler(own)
    hub.propagate = True


def duration(seconds: float) -> str:
    """A time with its units, to the second under an hour and to the minute above ("14 min 3 s", "1 h 12 min"):
    "0:14" reads as seconds to some and minutes to others."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s" if seconds % 60 else f"{seconds // 60} min"
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60} min" if minutes % 60 else f"{minutes // 60} h"
