"""A judge model compares two answers to the same prompt, in both orders (a judge tends to prefer the answer it reads
first or second: asking both ways cancels that): a local GGUF through llama.cpp, or any OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from trainer.errors import UserError

INSTRUCTIONS = ("You compare two answers to the same request. Reply with one line: first A, B or tie (which answer "
                "is better, or tie), then a colon and your reason in one sentence.")
VERDICT = re.compile(r"^\W*(A|B|tie)\b", re.IGNORECASE)
KEY_VARIABLE = "TRAINER_JUDGE_API_KEY"  # where an endpoint's key comes from (trainer.config.judge_api_key)
MAX_TOKENS = 96

Ask = Callable[[str], str]  # the judge: a request in, its reply out


@dataclass(frozen=True)
class Verdict:
    winner: str  # "tuned", "against", "tie"
    reasons: tuple[str, str]  # the judge's two replies (tuned first, then against first)


def request(prompt: str, reference: str, first: str, second: str) -> str:
    return (f"Request:\n{prompt}\n\n" + (f"A good answer (for reference):\n{reference}\n\n" if reference else "")
            + f"Answer A:\n{first}\n\nAnswer B:\n{second}\n\nWhich is better: A, B or tie?")


def parse(reply: str) -> str:
    """"A", "B", "tie", or "unclear" where the reply starts with none of them."""
    found = VERDICT.match(reply)
    return found[1].upper() if found and found[1].lower() != "tie" else ("tie" if found else "unclear")


def compare(ask: Ask, prompt: str, reference: str, tuned: str, against: str) -> Verdict:
    """Both orders: the tuned answer wins where it is preferred both times, or once with a tie; loses likewise; else
    a tie (the judge contradicted itself, or could not tell)."""
    first = ask(request(prompt, reference, tuned, against))
    second = ask(request(prompt, reference, against, tuned))
    votes = [{"A": "tuned", "B": "against"}.get(parse(first), "tie"),
             {"A": "against", "B": "tuned"}.get(parse(second), "tie")]
    winner = next((w for w in ("tuned", "against") if w in votes and all(v in (w, "tie") for v in votes)), "tie")
    return Verdict(winner, (first.strip(), second.strip()))


def identity(gguf: str | None, url: str | None, model: str) -> str:
    """Which judge gave a verdict (its file as it is now, or its endpoint and model): another judge judges anew."""
    if gguf:
        found = Path(gguf).resolve()  # judge.local has found it
        return f"{found} {found.stat().st_size} {found.stat().st_mtime_ns}"
    return f"{url} {model}" if url else ""


def local(path: Path) -> Ask:
    """A GGUF file through llama.cpp (the gguf extra), greedy."""
    try:
        from llama_cpp import Llama
    except ImportError as e:
        raise UserError(f"a GGUF judge needs llama-cpp-python, which is not installed ({e})",
                        'pip install -e ".[gguf]", or give --judge-url an OpenAI-compatible endpoint.') from None
    if not path.is_file():
        raise UserError(f"judge model {path} does not exist", "Give a .gguf file (trainer export RUN --gguf writes "
                        "one), or --judge-url.")
    try:
        llama = Llama(model_path=str(path), n_ctx=4096, verbose=False)
    except ValueError as e:
        raise UserError(f"llama.cpp cannot load {path}: {e}") from None

    def ask(text: str) -> str:
        messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}]
        reply = llama.create_chat_completion(messages, temperature=0, max_tokens=MAX_TOKENS)
        return reply["choices"][0]["message"]["content"] or ""

    return ask


def endpoint(url: str, model: str, key: str = "") -> Ask:
    """An OpenAI-compatible chat completions endpoint (`url` up to /v1), with its API `key` where it needs one."""

    def ask(text: str) -> str:
        body = {"model": model, "temperature": 0, "max_tokens": MAX_TOKENS,
                "messages": [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": text}]}
        call = urllib.request.Request(f"{url.rstrip('/')}/chat/completions", json.dumps(body).encode(),
                                      {"Content-Type": "application/json",
                                       **({"Authorization": f"Bearer {key}"} if key else {})})
        try:
            with urllib.request.urlopen(call, timeout=300) as response:
                return json.loads(response.read())["choices"][0]["message"]["content"] or ""
        except urllib.error.HTTPError as e:
            raise UserError(f"the judge at {url} answered {e.code} {e.reason}",
                            f"Check the URL, the model name and the key in ${KEY_VARIABLE}.") from None
        except (urllib.error.URLError, TimeoutError, ValueError, KeyError) as e:
            raise UserError(f"the judge at {url} did not answer a chat completion ({e})",
                            "Check that the server runs and the URL ends with /v1.") from None

    return ask
