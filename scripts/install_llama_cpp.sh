#!/usr/bin/env bash
# Installs the `gguf` extra's llama-cpp-python into the active Python, compiled for any x86-64 CPU with AVX2.
# By default pip compiles llama.cpp for the CPU it builds on (-march=native), and those kernels crash on some CPUs
# (an Intel Xeon with AMX: docs/export-and-serving.md, GGUF export). pip's wheel cache is keyed by the source archive,
# not by CMAKE_ARGS, so it would reuse a native wheel built earlier: this build has a cache of its own. The first run
# compiles (9.5 CPU-minutes: 15 minutes on 2 busy cores); later runs reinstall the cached wheel in seconds, over
# whatever build was installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python}"
pin=$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["gguf"][0])')
cache="${XDG_CACHE_HOME:-$HOME/.cache}/trainer/pip-llama-cpp-portable"
echo "Installing $pin built with -DGGML_NATIVE=OFF (cached in $cache)"
CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PYTHON" -m pip install -q --force-reinstall --no-deps --cache-dir "$cache" "$pin"
"$PYTHON" -m pip install -q "$pin"  # its dependencies; the build above satisfies the pin itself
"$PYTHON" -c 'import llama_cpp; print("llama.cpp", llama_cpp.llama_print_system_info().decode().strip())'
