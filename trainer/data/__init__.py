"""The data a run trains on: sources and formats, rendering with assistant masks, the token cache, preference pairs,
and the data stage (stage.py) that reads, splits and tokenizes them; re-exported here as `data.load_rows`, ..."""

from trainer.data.stage import Prepared, Split, build_pairs, build_rows, load_rows, split

__all__ = ["Prepared", "Split", "build_pairs", "build_rows", "load_rows", "split"]
