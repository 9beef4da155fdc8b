#!/usr/bin/env bash
# Set up trainer in a Paperspace Gradient notebook: torch from PyTorch's CUDA index (or the image's, when it is that
# version), the project with its GPU extra under the resolved constraints (scripts/constraints-linux-py3XX.txt, which
# scripts/resolve_constraints.py writes from pyproject.toml), the Hugging Face cache on persistent storage, the Hub
# token from the notebook's token file, then `python -m trainer doctor`.
#
#   bash scripts/setup_paperspace.sh        # at each notebook start: packages live in the container, which resets
#
# Idempotent: a second run changes nothing that is already right. Settings (environment variables):
#   PYTHON            the interpreter to install into (default: python3 on PATH, the image's)
#   PERSISTENT        persistent storage (default /storage, kept across notebooks; /notebooks is kept per project)
#   TORCH_INDEX       the wheel index of torch and torchvision (default https://download.pytorch.org/whl/cu128); their
#                     versions, like every other, come from the constraints file for the interpreter's Python
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PERSISTENT="${PERSISTENT:-/storage}"
TORCH_INDEX="${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
ENV_FILE="$PERSISTENT/trainer.env"

step() { printf '\n==> %s\n' "$*"; }
fail() { printf 'error: %s\n' "$*" >&2; exit 2; }
pin() { sed -n "s/^$1==\([^ #]*\).*/\1/p" "$constraints"; }

step "Python: $("$PYTHON" --version 2>&1) ($(command -v "$PYTHON"))"
"$PYTHON" - <<'PY'
import sys
if not (3, 11) <= sys.version_info[:2] <= (3, 14):
    sys.exit(f"Python {sys.version.split()[0]}: trainer needs 3.11 to 3.14; set PYTHON=python3.12 (or pick an image with it)")
PY
python_tag="$("$PYTHON" -c 'import sys; print(f"py{sys.version_info[0]}{sys.version_info[1]}")')"
constraints="$ROOT/scripts/constraints-linux-$python_tag.txt"
[ -f "$constraints" ] || fail "no resolved install for this Python ($constraints is missing): set PYTHON=python3.11 or python3.12, or add the target to scripts/resolve_constraints.py"
torch_pin="$(pin torch)"
torchvision_pin="$(pin torchvision)"
if [ -z "$torch_pin" ] || [ -z "$torchvision_pin" ]; then
  fail "$constraints has no torch== or torchvision== line: regenerate it with python scripts/resolve_constraints.py"
fi

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

step "torch $torch_pin and torchvision $torchvision_pin"
# Reuse the image's when they are these versions and torch is a CUDA build; else install them from TORCH_INDEX.
if "$PYTHON" - "$torch_pin" "$torchvision_pin" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version

torch_pin, torchvision_pin = sys.argv[1:]
try:
    import torch
except Exception as e:  # a broken CUDA install raises more than ImportError: reported, then replaced
    sys.exit(f"no usable torch in the image ({type(e).__name__}: {e})")
if torch.version.cuda is None or torch.__version__.split("+")[0] != torch_pin:
    sys.exit(f"the image's torch {torch.__version__} (CUDA {torch.version.cuda}) is not {torch_pin} built with CUDA")
try:
    torchvision = version("torchvision")
except PackageNotFoundError:
    sys.exit("the image has no torchvision")
if torchvision.split("+")[0] != torchvision_pin:
    sys.exit(f"the image's torchvision {torchvision} is not {torchvision_pin}")
PY
then
  echo "reusing the image's torch $torch_pin and torchvision $torchvision_pin"
else
  echo "installing torch $torch_pin and torchvision $torchvision_pin from $TORCH_INDEX"
  "$PYTHON" -m pip install --quiet "torch==$torch_pin" "torchvision==$torchvision_pin" --index-url "$TORCH_INDEX"
fi

step "trainer with its GPU extra (unsloth, unsloth_zoo, bitsandbytes) under $(basename "$constraints")"
# The constraints hold every version, torch's too, so pip keeps this torch while it resolves the rest from PyPI.
"$PYTHON" -m pip install --quiet -e "${ROOT}[gpu]" --constraint "$constraints"
# unsloth requires xformers, whose newest release (0.0.35) was built for torch 2.10: beside this torch it cannot load
# and Unsloth uses PyTorch's attention anyway (scripts/resolve_constraints.py, EXCLUDED).
"$PYTHON" -m pip uninstall --quiet --yes xformers

step "Check"
cd "$ROOT"
"$PYTHON" -m trainer doctor
