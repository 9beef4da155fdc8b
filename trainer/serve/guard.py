"""What the wrapped OpenAI servers leave to us, as one layer in front of either: the API key, checked requests with
OpenAI-style error bodies (never a traceback), the parameters we support (others refused by name, not ignored), the one
model served here, and the model's context length."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from trainer.serve.conform import CHAT, completion_limit

ROUTES = (CHAT, "/v1/models")  # what `trainer serve` passes on to either server (and tests); /health is answered here
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "invalid_request_error",
               500: "server_error"}


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")  # text, image_url, ...
    type: str


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")  # name, tool_calls, tool_call_id: the server's business
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


StopString = Annotated[str, Field(min_length=1)]


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request that `trainer serve` supports, on either server."""

    model_config = ConfigDict(extra="allow")  # refused below, by name, unless sent with OpenAI's default
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: StopString | list[StopString] | None = Field(None, max_length=4)  # OpenAI's limit
    seed: int | None = None
    n: int | None = Field(None, ge=1, le=1)  # one answer per request
    user: str | None = None  # the end user's id, for OpenAI's abuse monitoring: nothing to do here


SUPPORTED = ", ".join(ChatRequest.model_fields)
# Fields we do not support, accepted when they ask for what OpenAI does when they are left out (some clients send
# all of their settings).
NO_OP = {"frequency_penalty": 0, "presence_penalty": 0, "logprobs": False, "store": False,
         "response_format": {"type": "text"}, "stream_options": {"include_usage": False}}


def error(status: int, message: str, code: str | None = None, param: str | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse({"error": {"message": message, "type": ERROR_TYPES.get(status, "invalid_request_error"),
                                   "param": param, "code": code}}, status_code=status)


def protect(app: Any, model_id: str, api_key: str | None, context_tokens: int,
            prompt_tokens: Callable[[list[dict[str, Any]]], int] | None) -> None:
    """Check every request before `app` sees it: `Authorization: Bearer <api_key>` (when a key is set), the path (one
    of ROUTES, or /health), then a chat request's body, model and length (`prompt_tokens` renders the messages with
    the chat template and counts them; None where the server checks the length itself)."""
    from anyio import to_thread
    from starlette.responses import JSONResponse

    @app.exception_handler(Exception)
    async def internal(request: Any, exc: Exception) -> Any:  # the traceback goes to the server's console only
        return error(500, f"the server failed on this request ({type(exc).__name__}); its console has the details")

    @app.middleware("http")
    async def check(request: Any, call_next: Any) -> Any:
        if api_key is not None and not authorized(request.headers.get("authorization", ""), api_key):
            return error(401, "missing or wrong API key: send the header `Authorization: Bearer <key>` with the key "
                              "`trainer serve` was started with (--api-key or TRAINER_API_KEY)", "invalid_api_key")
        if request.url.path == "/health":  # the app is served only once its model is loaded
            return JSONResponse({"status": "ok"})
        if request.url.path not in ROUTES:
            return error(404, f"{request.url.path} is not offered here; `trainer serve` answers {', '.join(ROUTES)} "
                              "and /health", "not_found")
        if request.method == "POST" and request.url.path == CHAT:
            try:
                body = json.loads(await request.body())
            except ValueError as e:
                return error(400, f"the request body is not valid JSON ({e})", "invalid_json")
            problem = check_chat(body, model_id)
            if problem is not None:
                return problem
            if prompt_tokens is not None:
                try:
                    count = await to_thread.run_sync(prompt_tokens, body["messages"])
                except ValueError as e:  # the chat template does not accept this conversation
                    return error(400, f"the model's chat template rejects these messages: {e}", param="messages")
                requested = count + (completion_limit(body) or 1)
                if requested > context_tokens:
                    return error(400, f"this model's context is {context_tokens} tokens, and this request needs "
                                      f"{requested} ({count} in the messages, {requested - count} in the completion):"
                                      " shorten the messages or max_completion_tokens", "context_length_exceeded",
                                 "messages")
        return await call_next(request)


def check_chat(body: Any, model_id: str) -> Any:
    """An error response for a chat request that is malformed or names another model, else None."""
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        return error(400, f"{where}: {first['msg']}{more}", "invalid_request", where)
    if request.model != model_id:
        return error(404, f"model '{request.model}' is not served here; this server serves '{model_id}' "
                          "(GET /v1/models lists it)", "model_not_found", "model")
    unsupported = [name for name, value in body.items()
                   if name not in ChatRequest.model_fields and value is not None and NO_OP.get(name, ...) != value]
    if unsupported:
        others = f" (nor {', '.join(unsupported[1:])})" if len(unsupported) > 1 else ""
        return error(400, f"Unsupported parameter: '{unsupported[0]}' is not supported by trainer serve{others}. "
                          f"Supported: {SUPPORTED}.", "unsupported_parameter", unsupported[0])
    return None


def authorized(header: str, api_key: str) -> bool:
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), api_key.encode())
