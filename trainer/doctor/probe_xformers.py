"""Doctor's xformers probe, run as a child process: its version once its compiled extensions load (they warn on stderr
when they were built for another torch), as one JSON line."""

import json

import xformers
import xformers.ops  # noqa: F401  loads the compiled extensions

if __name__ == "__main__":
    print(json.dumps({"version": xformers.__version__}))
