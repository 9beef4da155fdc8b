"""`trainer serve`: an OpenAI-compatible HTTP API for a run, a model or a GGUF file, on this machine unless asked.

A run is served as its merged export when it has one (plain weights, faster), else as its adapter on the base model;
both through `transformers serve`. A .gguf file (or a run's gguf/ folder with one) goes to llama-cpp-python's server.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from pathlib import Path
from typing import Any

from rich.markup import escape

from trainer.console import console
from trainer.errors import UserError
from trainer.runs.run_dir import is_run_dir
from trainer.serve import conform, guard

SERVE_HINT = 'pip install -e ".[serve]" (transformers serve: FastAPI, uvicorn and the openai types)'


def main(target: str, host: str, port: int, api_key: str | None, cache_dir: str) -> None:
    """Serve `target` on host:port until Ctrl+C."""
    import uvicorn

    gguf = gguf_file(Path(target))
    model_id = gguf.name if gguf else name_of(target)
    listener = bind(host, port)  # before the slow load: a taken port is reported at once
    if gguf is not None:
        from trainer.serve import llama_app

        app, context = llama_app.build(gguf, model_id)
        counter, what = None, f"GGUF {gguf} with llama.cpp"
    else:
        from transformers.utils.import_utils import is_serve_available

        if not is_serve_available():
            raise UserError("`trainer serve` needs transformers' serving extras (fastapi, uvicorn, openai), which are "
                            "not installed", SERVE_HINT)
        from transformers.utils import logging

        from trainer.serve import chat, transformers_app

        logging.set_verbosity_error()  # not a warning per request ("[Request received]"): uvicorn logs each one
        source = merged_export(Path(target)) or target
        loaded = chat.load(str(source), cache_dir)
        app, context = transformers_app.build(loaded, model_id), transformers_app.context_tokens(loaded)
        counter = transformers_app.prompt_counter(loaded)
        what = (f"LoRA adapter {chat.describe(str(source))[1]} on {loaded.base_name}" if loaded.has_adapter
                else f"{source} with transformers")
    app.add_middleware(conform.Conform, replies=gguf is None)  # before the guard's: inside it, on checked requests
    guard.protect(app, model_id, api_key, context, counter)
    warm_up(app, model_id, api_key)
    announce(model_id, what, host, listener.getsockname()[1], api_key, context)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="info")).run(sockets=[listener])  # info: one line per request
    except KeyboardInterrupt:  # uvicorn stops on Ctrl+C, then raises it again for the caller
        pass
    console.print("Server stopped.")


def warm_up(app: Any, model_id: str, api_key: str | None) -> None:
    """One short chat request through the whole app before the URL is printed, so that the first client's request
    finds everything ready: the server's inference thread, the chat template compiled, the first forward pass (on a
    GPU also CUDA's lazily loaded kernels and the inference thread's cuBLAS handle)."""
    import asyncio

    import httpx

    body = {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://warm-up") as client:
            return await client.post(guard.CHAT, json=body, headers=headers, timeout=None)

    began = time.perf_counter()
    response = asyncio.run(ask())
    if response.status_code != 200:  # the first request would pay what is left; the server still serves
        console.print(f"[yellow]Warm-up request failed ({response.status_code}: {escape(response.text[:300])})[/]")
        return
    console.print(f"Warmed up: a first reply in {time.perf_counter() - began:.1f} s")


def gguf_file(path: Path) -> Path | None:
    """The GGUF file `path` names: a .gguf file, or a folder (a run's gguf/) holding exactly one."""
    if path.suffix == ".gguf":
        if not path.is_file():
            raise UserError(f"{path} does not exist", "Name a .gguf file that `trainer export RUN --gguf` wrote.")
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() and not (path / "config.json").is_file() else []
    if len(found) > 1:
        raise UserError(f"{path} holds {len(found)} GGUF files", "Name one: " + ", ".join(str(f) for f in found))
    return found[0] if found else None


def merged_export(path: Path) -> Path | None:
    """A run's merged 16-bit export (`trainer export`), when it has one."""
    merged = path / "merged"
    return merged if is_run_dir(path) and (merged / "config.json").is_file() else None


def name_of(target: str) -> str:
    """The model id clients send: a run's or folder's name, or the Hub id as given."""
    path = Path(target)
    return path.resolve().name if path.exists() else target


def bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        if sys.platform != "win32":  # there it would let a second server take the same port
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart reuses a port just closed
        listener.bind((host, port))
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                        "Pick another --port (or stop what uses it), or check --host.") from None
    return listener


def announce(model_id: str, what: str, host: str, port: int, api_key: str | None, context: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown}:{port}/v1"
    console.print(f"Serving [bold]{escape(model_id)}[/] ({escape(what)}; context {context:,} tokens)")
    console.print(f"OpenAI base_url: [bold]{base_url}[/], model: {escape(model_id)!r}"
                  + (", API key required" if api_key else ""))
    if api_key is None and not is_loopback(host):
        console.print(f"[yellow]Anyone who can reach {host}:{port} can use this model:[/] add --api-key KEY "
                      "(or set TRAINER_API_KEY).")
    auth = ' -H "Authorization: Bearer $TRAINER_API_KEY"' if api_key else ""
    console.print(f"Try: curl {base_url}/chat/completions -H 'Content-Type: application/json'{auth} -d "
                  f"'{{\"model\": \"{escape(model_id)}\", \"messages\": [{{\"role\": \"user\", \"content\": "
                  "\"Hello\"}]}'", soft_wrap=True)
    console.print("Ctrl+C stops the server.")


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

