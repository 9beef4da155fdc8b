"""The data a run trains on: sources and formats, rendering with assistant masks, the token cache, preference pairs,
KTO's labelled answers, and the data stage (stage.py) that reads, splits and tokenizes them; re-exported here as
`data.load_rows`, ..."""

from trainer.data.stage import Prepared, Split, build_pairs, build_rows, build_unpaired, load_rows, split

__all__ = ["Prepared", "Split", "build_pairs", "build_rows", "build_unpaired", "load_rows", "split"]
