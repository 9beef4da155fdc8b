"""Why a row can't be used: one bad row (listed with the others, or skipped when asked), or a row that means something
this tool does not train (the whole file refused)."""

from __future__ import annotations


class InvalidRow(ValueError):
    """One row the chosen format cannot use; collected so the user sees every bad row at once."""


class Unsupported(ValueError):
    """A row whose meaning needs something this tool does not train (images, KTO labels): the whole file is
    refused at its first such row, never skipped row by row, since every such row would be trained as something else.
    """

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint
