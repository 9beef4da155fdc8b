"""Tool definitions and tool calls as OpenAI and LLaMA-Factory's sharegpt write them, read into the form transformers'
chat templates render (`apply_chat_template(messages, tools=...)`)."""

from __future__ import annotations

import json
from typing import Any

from trainer.data.row_errors import InvalidRow
from trainer.data.sources import json_error

Tools = list[dict[str, Any]]


def _json(value: Any, what: str) -> Any:
    """A field that may hold JSON text (glaive's `tools`, sharegpt's calls, OpenAI's `arguments`) as its value."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise InvalidRow(f"{what} is text that is not valid JSON ({json_error(e)} at column {e.colno})") from None


def read_tools(value: Any, name: str) -> Tools:
    """Tool definitions (the row's field `name`: a list or its JSON text) as OpenAI's `{"type": "function",
    "function": {...}}`; sharegpt's bare `{"name", "description", "parameters"}` are wrapped."""
    value = _json(value, f"'{name}'")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise InvalidRow(f"'{name}' must be a list of tool definitions")
    tools = []
    for n, tool in enumerate(value, start=1):
        if isinstance(tool, dict) and isinstance(tool.get("function"), dict) and tool["function"].get("name"):
            tools.append({**tool, "type": tool.get("type", "function")})
        elif isinstance(tool, dict) and tool.get("name"):
            tools.append({"type": "function", "function": tool})
        else:
            raise InvalidRow(f"tool {n} of '{name}' has no name (expected {{\"type\": \"function\", \"function\": "
                             "{\"name\": ..., \"parameters\": ...}} or {\"name\": ..., \"parameters\": ...})")
    return tools


def read_calls(value: Any, what: str) -> list[dict[str, Any]]:
    """Tool calls as transformers renders them, `{"type": "function", "function": {"name", "arguments": {...}}}`,
    from OpenAI's `tool_calls` (arguments as JSON text), its older `function_call` (one call), or a sharegpt
    `function_call` turn's JSON text (one `{"name", "arguments"}` or a list of them). An OpenAI call's `id` is kept."""
    value = _json(value, what)
    calls = value if isinstance(value, list) else [value]
    if not calls:
        raise InvalidRow(f"{what} has no calls")
    out = []
    for n, call in enumerate(calls, start=1):
        function = call.get("function", call) if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
            raise InvalidRow(f"call {n} of {what} has no function name (expected {{\"name\": ..., \"arguments\": "
                             "{...}})")
        arguments = _json(function.get("arguments", {}), f"the arguments of call {n} of {what}")
        if not isinstance(arguments, dict):
            raise InvalidRow(f"the arguments of call {n} of {what} are not a JSON object")
        out.append({**({"id": call["id"]} if isinstance(call, dict) and "id" in call else {}), "type": "function",
                    "function": {"name": function["name"], "arguments": arguments}})
    return out
