#!/usr/bin/env bash
# Set up trainer in a Paperspace Gradient notebook: reuse the image's torch when the project accepts it, install the
# rest (the project with its GPU extra), keep the Hugging Face cache on persistent storage, store the Hub token from
# the notebook's token file, then run `python -m trainer doctor`.
#
#   bash scripts/setup_paperspace.sh        # at each notebook start: packages live in the container, which resets
#
# Idempotent: a second run changes nothing that is already right. Settings (environment variables):
#   PYTHON            the interpreter to install into (default: python3 on PATH, the image's)
#   PERSISTENT        persistent storage (default /storage, kept across notebooks; /notebooks is kept per project)
#   TORCH_VERSION     torch to install when the image's is unusable (default 2.11.0)
#   TORCH_INDEX       its wheel index (default https://download.pytorch.org/whl/cu128)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PERSISTENT="${PERSISTENT:-/storage}"
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
ENV_FILE="$PERSISTENT/trainer.env"

step() { printf '\n==> %s\n' "$*"; }

step "Python: $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"
"$PYTHON" - <<'PY'
import sys
if not (3, 11) <= sys.version_info[:2] <= (3, 14):
    sys.exit(f"Python {sys.version.split()[0]}: trainer needs 3.11 to 3.14; set PYTHON=python3.12 (or pick an image with it)")
PY

step "Hugging Face cache on persistent storage"
if [ -d "$PERSISTENT" ] && [ -w "$PERSISTENT" ]; then
  mkdir -p "$PERSISTENT/huggingface" "$PERSISTENT/trainer-cache"
  cat > "$ENV_FILE" <<ENV
# Written by scripts/setup_paperspace.sh: models and datasets survive the notebook.
export HF_HOME="$PERSISTENT/huggingface"
export TRAINER_CACHE_DIR="$PERSISTENT/trainer-cache"
ENV
  line="[ -f \"$ENV_FILE\" ] && . \"$ENV_FILE\""
  grep -qxF "$line" "$HOME/.bashrc" 2>/dev/null || echo "$line" >> "$HOME/.bashrc"
  # shellcheck source=/dev/null
  . "$ENV_FILE"
  echo "HF_HOME=$PERSISTENT/huggingface (new terminals get it from ~/.bashrc; in a notebook cell: %env HF_HOME=$PERSISTENT/huggingface)"
else
  echo "warning: $PERSISTENT is not a writable folder; the Hugging Face cache stays in the container (lost on restart)"
fi

step "Hugging Face token"
hf_home="${HF_HOME:-$HOME/.cache/huggingface}"
token_file=""
for candidate in "$PWD/.hftoken" "$PWD/token.txt" /notebooks/.hftoken /notebooks/token.txt "$PERSISTENT/.hftoken"; do
  if [ -s "$candidate" ]; then token_file="$candidate"; break; fi
done
if [ -n "${HF_TOKEN:-}" ]; then
  echo "HF_TOKEN is set in the environment; using it"
elif [ -n "$token_file" ]; then
  mkdir -p "$hf_home"
  # Written where huggingface_hub looks ($HF_HOME/token), never printed nor passed on a command line.
  (umask 077 && tr -d '[:space:]' < "$token_file" > "$hf_home/token")
  echo "stored the token from $token_file in $hf_home/token"
elif [ -s "$hf_home/token" ]; then
  echo "a token is already stored in $hf_home/token"
else
  echo "no token file (.hftoken or token.txt next to the notebook): public models work; gated ones need one"
fi

step "torch"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# Reuse the image's torch when it has CUDA and is in the range pyproject.toml allows; else install TORCH_VERSION.
reuse="$("$PYTHON" - "$ROOT/pyproject.toml" <<'PY' || true
import re, sys, tomllib
spec = next(d for d in tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"] if d.startswith("torch"))
low, high = (tuple(map(int, re.search(op + r"([\d.]+)", spec).group(1).split("."))) for op in (">=", "<"))
try:
    import torch
except Exception as e:
    sys.exit(f"no usable torch in the image ({type(e).__name__})")
version = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", torch.__version__).groups())
if torch.version.cuda is None or not low[:2] <= version < high[:2]:
    sys.exit(f"the image's torch {torch.__version__} (CUDA {torch.version.cuda}) is not a CUDA build in {spec}")
print(torch.__version__.split("+")[0])
PY
)"
if [ -n "$reuse" ]; then
  echo "reusing the image's torch $reuse"
  torch_version="$reuse"
else
  echo "installing torch $TORCH_VERSION from $TORCH_INDEX"
  "$PYTHON" -m pip install --quiet "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX"
  torch_version="$TORCH_VERSION"
fi
minor="$(echo "$torch_version" | cut -d. -f2)"
# Nothing below may replace this torch: unsloth's torchvision and xformers must be the builds made for it.
echo "torch==$torch_version" > "$constraints"
if ! "$PYTHON" -c "import torchvision" 2>/dev/null; then
  "$PYTHON" -m pip install --quiet "torchvision==0.$((minor + 15)).*" --constraint "$constraints" \
    --extra-index-url "$TORCH_INDEX"
fi

step "trainer with its GPU extra (unsloth, unsloth_zoo, bitsandbytes)"
"$PYTHON" -m pip install --quiet -e "${ROOT}[gpu]" --constraint "$constraints"

step "Check"
cd "$ROOT"
"$PYTHON" -m trainer doctor
