"""Doctor's unsloth probe, run as a child process: its version once it imports (it needs a GPU), as one JSON line."""

import json

import unsloth

if __name__ == "__main__":
    print(json.dumps({"version": unsloth.__version__}))
