"""Chat completions as OpenAI's clients expect them, rewritten on the wire between our guard and the wrapped server:
`max_completion_tokens` limits the reply (both servers ignore it), and on transformers serve's replies the stop string
is left out, ids are `chatcmpl-...` and a stream ends with `data: [DONE]` (llama.cpp's server does these already)."""

from __future__ import annotations

import json
from typing import Any

CHAT = "/v1/chat/completions"
DONE = b"data: [DONE]\n\n"


def completion_limit(body: dict[str, Any]) -> int | None:
    """The most tokens the reply may have: `max_completion_tokens` (what current clients send) or the older
    `max_tokens`; the smaller when a request sends both, since each is a limit."""
    limits = [body[name] for name in ("max_completion_tokens", "max_tokens") if body.get(name) is not None]
    return min(limits) if limits else None


def stop_strings(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    return [stop] if isinstance(stop, str) else list(stop or [])


class Conform:
    """ASGI middleware for the chat route. `replies`: also rewrite the replies (transformers serve's)."""

    def __init__(self, app: Any, replies: bool) -> None:
        self.app = app
        self.replies = replies

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CHAT or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        body = json.loads(await read_body(receive))  # the guard in front has checked it
        if "max_completion_tokens" in body:  # transformers serve logs it as unsupported, llama.cpp ignores it
            body["max_tokens"] = completion_limit(body)
            del body["max_completion_tokens"]
        raw = json.dumps(body).encode()
        scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                 + [(b"content-length", str(len(raw)).encode())]}
        await self.app(scope, replay(raw, receive), ReplyFix(send, stop_strings(body)) if self.replies else send)


async def read_body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


def replay(raw: bytes, receive: Any) -> Any:
    sent = False

    async def once() -> dict:
        nonlocal sent
        if sent:
            return await receive()  # the client's disconnect, when it comes
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return once


class ReplyFix:
    """Wraps ASGI `send`: a 200 reply's JSON (or each event of its stream) rewritten, other replies untouched."""

    def __init__(self, send: Any, stops: list[str]) -> None:
        self.send = send
        self.start: dict | None = None
        self.stream: StreamFix | None = None
        self.json = bytearray()
        self.stops = stops

    async def __call__(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            if message["status"] != 200:
                self.start = None
                await self.send(message)
                return
            self.start = {**message, "headers": [(k, v) for k, v in message.get("headers", [])
                                                 if k != b"content-length"]}
            if headers.get(b"content-type", b"").startswith(b"text/event-stream"):
                self.stream = StreamFix(self.stops)
                await self.send(self.start)
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        more = message.get("more_body", False)
        if self.stream is not None:
            out = self.stream.feed(message.get("body", b"")) + (b"" if more else self.stream.end())
            await self.send({"type": "http.response.body", "body": out, "more_body": more})
            return
        self.json += message.get("body", b"")
        if more:
            return
        out = json.dumps(fix_completion(json.loads(self.json), self.stops)).encode()
        self.start["headers"].append((b"content-length", str(len(out)).encode()))
        await self.send(self.start)
        await self.send({"type": "http.response.body", "body": out, "more_body": False})


def fix_completion(reply: dict, stops: list[str]) -> dict:
    reply["id"] = chat_id(reply["id"])
    for choice in reply["choices"]:
        content, cut = cut_at_stop(choice["message"].get("content") or "", stops)
        if cut:
            choice["message"]["content"], choice["finish_reason"] = content, "stop"
    return reply


def chat_id(request_id: str) -> str:
    return request_id if request_id.startswith("chatcmpl-") else f"chatcmpl-{request_id}"


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop string (OpenAI leaves it out; transformers stops after it), and whether one was
    found."""
    found = [i for i in (text.find(stop) for stop in stops) if i >= 0]
    return (text[:min(found)], True) if found else (text, False)


def partial_stop(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could begin a stop string: a stream holds them back until the next
    piece says whether the stop string follows."""
    return max((n for stop in stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)


class StreamFix:
    """A chat stream's server-sent events, rewritten event by event."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = stops
        self.buffer = b""
        self.held = ""  # content that might be the start of a stop string
        self.stopped = False

    def feed(self, data: bytes) -> bytes:
        self.buffer += data
        *events, self.buffer = self.buffer.split(b"\n\n")
        return b"".join(self.event(event) for event in events)

    def end(self) -> bytes:
        return self.buffer + DONE

    def event(self, event: bytes) -> bytes:
        data = event.removeprefix(b"data: ")
        try:
            chunk = json.loads(data)
        except ValueError:
            chunk = None
        if not isinstance(chunk, dict) or "choices" not in chunk:  # an error event: passed on as it came
            return event + b"\n\n"
        chunk["id"] = chat_id(chunk["id"])
        out = []
        for choice in chunk["choices"]:
            delta = choice.get("delta", {})
            text = self.held + (delta.pop("content", None) or "")
            self.held = ""
            if not self.stopped:
                text, self.stopped = cut_at_stop(text, self.stops)
                if not self.stopped and choice.get("finish_reason") is None:
                    keep = partial_stop(text, self.stops)
                    text, self.held = text[:len(text) - keep], text[len(text) - keep:]
                if text and choice.get("finish_reason") is not None:  # the content before the finish, apart
                    out.append({**chunk, "choices": [{**choice, "delta": {"content": text},
                                                      "finish_reason": None}], "usage": None})
                elif text:
                    delta["content"] = text
            if choice.get("finish_reason") is not None and self.stopped:
                choice["finish_reason"] = "stop"
        keep = [c for c in chunk["choices"] if c.get("delta") or c.get("finish_reason") is not None]
        if keep or chunk.get("usage"):
            out.append({**chunk, "choices": keep})
        return b"".join(b"data: " + json.dumps({k: v for k, v in c.items() if v is not None}).encode() + b"\n\n"
                        for c in out)
