"""`trainer serve` through the official openai client and raw HTTP on 127.0.0.1: SmolLM2, a demo run's adapter, and
the demo run's GGUF with llama.cpp."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, cli_command, free_port, run_cli
from trainer.serve import chat
from trainer.weights import SMOLLM2

KEY = "test-key-5f2c"
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LONG = [{"role": "user", "content": "word " * 9000}]  # SmolLM2's context is 8,192 tokens
COMMAS = [{"role": "user", "content": "Write the numbers one to five in digits on one line, like 1, 2, 3."}]


@dataclass
class Server:
    process: subprocess.Popen
    url: str  # the OpenAI base_url
    model: str
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@contextmanager
def serving(target: str, log: Path, *options: str, env: dict[str, str] | None = None, key: str | None = None):
    """`python -m trainer serve TARGET` on a free port until the block ends; then Ctrl+C must stop it cleanly."""
    port = free_port()
    command, base_env = cli_command("serve", target, "--port", str(port), *options)
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=ROOT, env={**base_env, **(env or {})}, stdout=out,
                                   stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 300
    while status(f"http://127.0.0.1:{port}/health", key) != 200:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the server did not start:\n" + log.read_text()
        time.sleep(0.5)
    model = get(f"{url}/models", key)[1]["data"][0]["id"]
    try:
        yield Server(process, url, model, log)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    assert code == 0 and "Traceback" not in log.read_text(), log.read_text()


def request(url: str, body: bytes | None, key: str | None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=300) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def status(url: str, key: str | None) -> int:
    return request(url, None, key)[0]


def get(url: str, key: str | None) -> tuple[int, dict]:
    code, text = request(url, None, key)
    return code, json.loads(text)


def post(server: Server, body: object, key: str | None = KEY) -> tuple[int, dict, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    code, text = request(f"{server.url}/chat/completions", raw, key)
    return code, json.loads(text), text


def client(server: Server, key: str = KEY):
    from openai import OpenAI

    return OpenAI(base_url=server.url, api_key=key, max_retries=0, timeout=300)


def ask(server: Server, messages=QUESTION, key: str = KEY, **options) -> tuple[str, object]:
    reply = client(server, key).chat.completions.create(model=server.model, messages=messages, **options)
    return reply.choices[0].message.content, reply


def streamed(server: Server, messages=QUESTION, key: str = KEY, **options) -> tuple[str, list]:
    chunks = list(client(server, key).chat.completions.create(model=server.model, messages=messages, stream=True,
                                                               **options))
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), chunks


def concurrently(server: Server, count: int, **options) -> list[tuple[str, float]]:
    """`count` requests sent at once: each reply and its latency in seconds."""
    results: list = [None] * count
    start = threading.Barrier(count)

    def one(i: int) -> None:
        start.wait()
        began = time.perf_counter()
        results[i] = (ask(server, **options)[0], time.perf_counter() - began)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    return results


def check_openai_shape(server: Server) -> None:
    """What the official client expects of OpenAI's API: max_completion_tokens limits the reply, a stop string is left
    out, ids are chatcmpl-..., a stream ends with data: [DONE], parameters we do not support get a 400 naming them."""
    from openai import BadRequestError

    greedy = {"messages": COMMAS, "temperature": 0}
    four, reply = ask(server, **greedy, max_completion_tokens=4)
    assert reply.usage.completion_tokens == 4 and reply.choices[0].finish_reason == "length"
    assert four == ask(server, **greedy, max_tokens=4)[0]
    assert streamed(server, **greedy, max_completion_tokens=4)[1][-1].choices[0].finish_reason == "length"
    assert ask(server, **greedy, max_tokens=6, max_completion_tokens=3)[1].usage.completion_tokens == 3  # the smaller

    full = ask(server, **greedy, max_tokens=24)[0]
    assert ", 2" in full, full  # the prompt makes the stop strings below appear
    for stop in (",", ", 2"):  # ", 2" spans tokens: a stream holds back what may begin it
        stopped, reply = ask(server, **greedy, max_tokens=24, stop=[stop])
        assert stopped == full.split(stop)[0] and stop not in stopped, (stop, stopped)
        assert reply.choices[0].finish_reason == "stop" and reply.id.startswith("chatcmpl-")
        text, chunks = streamed(server, **greedy, max_tokens=24, stop=[stop])
        assert text == stopped and chunks[-1].choices[0].finish_reason == "stop"
        assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-") and chunks[0].id != reply.id

    code, text = request(f"{server.url}/chat/completions", json.dumps(
        {"model": server.model, **greedy, "max_tokens": 4, "stream": True}).encode(), KEY)
    events = [line for line in text.splitlines() if line]
    assert code == 200 and events[-1] == "data: [DONE]" and events.count("data: [DONE]") == 1, text

    refused = {"tools": [{"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}],
               "response_format": {"type": "json_object"}, "logprobs": True, "frequency_penalty": 0.5}
    for name, value in refused.items():
        with pytest.raises(BadRequestError) as caught:
            ask(server, max_tokens=2, **{name: value})
        error = caught.value
        assert error.status_code == 400 and error.param == name and error.code == "unsupported_parameter", error
        assert f"'{name}' is not supported" in error.message and "Supported: model, messages" in error.message
    code, answer, text = post(server, {"model": server.model, "messages": QUESTION, "top_k": 5})  # a server's own
    assert code == 400 and answer["error"]["param"] == "top_k" and answer["error"]["type"] == "invalid_request_error"
    # OpenAI's defaults, as some clients send them, change nothing and are accepted.
    assert ask(server, **greedy, max_tokens=4, frequency_penalty=0, presence_penalty=0, logprobs=False)[0] == four


def check_warmed_up(server: Server) -> None:
    """The server answered one request through its whole app before printing its URL."""
    output = server.output()
    assert "Warmed up: a first reply in" in output and "Warm-up request failed" not in output, output
    assert output.index("Warmed up") < output.index("OpenAI base_url"), output


def check_bad_requests(server: Server) -> None:
    """Malformed, unknown-model and too-long requests: 4xx with a message, never a traceback."""
    from openai import AuthenticationError, BadRequestError, NotFoundError

    cases = {
        b'{"model": "x", "messages": [': (400, "not valid JSON"),
        json.dumps({"model": "gpt-4o", "messages": QUESTION}).encode(): (404, "is not served here"),
        json.dumps({"model": server.model}).encode(): (400, "messages: Field required"),
        json.dumps({"model": server.model, "messages": QUESTION, "temperature": "hot"}).encode():
            (400, "temperature: Input should be a valid number"),
        json.dumps({"model": server.model, "messages": LONG}).encode(): (400, "context"),
    }
    for body, (code, message) in cases.items():
        got, answer, text = post(server, body)
        assert got == code and message in answer["error"]["message"], (body[:80], got, text)
        assert "Traceback" not in text
    assert post(server, json.loads(list(cases)[-1]))[1]["error"]["code"] == "context_length_exceeded"
    with pytest.raises(BadRequestError, match="context"):
        ask(server, messages=LONG)
    with pytest.raises(NotFoundError, match="is not served here"):
        client(server).chat.completions.create(model="gpt-4o", messages=QUESTION)
    with pytest.raises(AuthenticationError, match="API key"):
        ask(server, key="wrong-key")
    for path in ("/v1/models", "/v1/chat/completions", "/health"):
        code, text = request(server.url.removesuffix("/v1") + path, None, None)
        assert code == 401 and json.loads(text)["error"]["code"] == "invalid_api_key"
    code, text = request(server.url.removesuffix("/v1") + "/reset", b"{}", KEY)  # a route we do not pass on
    assert code == 404 and "is not offered here" in text


# --- SmolLM2 with transformers serve; the key from TRAINER_API_KEY -------------------------------------------------

@pytest.fixture(scope="module")
def smol(smollm2_dir, tmp_path_factory):
    with serving(SMOLLM2, tmp_path_factory.mktemp("serve") / "smol.log", env={"TRAINER_API_KEY": KEY},
                 key=KEY) as server:
        yield server


def test_openai_client_chats_and_streams_with_the_models_chat_template(smol, smol_tokenizer):
    assert [m.id for m in client(smol).models.list()] == [SMOLLM2]
    text, reply = ask(smol, temperature=0, max_tokens=24)
    assert "Paris" in text and reply.choices[0].finish_reason == "stop" and reply.model == SMOLLM2
    prompt = smol_tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True)
    assert reply.usage.prompt_tokens == len(prompt["input_ids"])  # rendered with SmolLM2's own template
    stream_text, chunks = streamed(smol, temperature=0, max_tokens=24)
    assert stream_text == text and len(chunks) > 3  # token by token, the same greedy reply
    assert chunks[0].choices[0].delta.role == "assistant" and chunks[-1].choices[0].finish_reason == "stop"


def test_sampling_parameters_reach_generation(smol):
    greedy = ask(smol, temperature=0, max_tokens=24)[0]
    short, reply = ask(smol, temperature=0, max_tokens=3)
    assert reply.usage.completion_tokens == 3 and reply.choices[0].finish_reason == "length"
    assert greedy.startswith(short)
    seeded = [ask(smol, temperature=1.2, max_tokens=16, seed=seed)[0] for seed in (11, 11, 12)]
    assert seeded[0] == seeded[1] != seeded[2]  # temperature samples; a seed repeats the sample
    assert ask(smol, temperature=1.2, top_p=0.01, max_tokens=24, seed=12)[0] == greedy  # top_p keeps the top token
    stopped, reply = ask(smol, temperature=0, max_tokens=24, stop=["Paris"])
    assert stopped == greedy.split("Paris")[0] and reply.choices[0].finish_reason == "stop"


@pytest.mark.slow
def test_the_official_clients_expectations_hold(smol):
    check_warmed_up(smol)
    check_openai_shape(smol)


def test_bad_key_and_bad_requests_get_4xx_with_a_message(smol):
    check_bad_requests(smol)
    assert "traceback" not in smol.output().lower()


def test_concurrent_requests_wait_their_turn_and_all_answer(smol):
    alone = ask(smol, temperature=0, max_tokens=12)[0]
    results = concurrently(smol, 6, temperature=0, max_tokens=12)
    assert [text for text, _ in results] == [alone] * 6
    latencies = sorted(seconds for _, seconds in results)
    print("6 concurrent requests, latencies (s):", [round(s, 2) for s in latencies])


def test_binds_this_machine_only_by_default(smol):
    import psutil

    listening = [c.laddr for c in psutil.Process(smol.process.pid).net_connections("tcp") if c.status == "LISTEN"]
    assert listening and all(address.ip == "127.0.0.1" for address in listening)
    assert f"OpenAI base_url: {smol.url}" in smol.output().replace("\n", "")


# --- command-line mistakes: exit 2 with the fix, before anything slow -----------------------------------------

@pytest.mark.slow
def test_a_taken_port_and_a_missing_model_are_user_errors(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", SMOLLM2, "--port", str(port))
    assert result.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in result.stdout, result.stdout
    result = run_cli("serve", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "neither an existing folder nor a Hub id" in result.stdout, result.stdout
    for name in ("a.gguf", "b.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    result = run_cli("serve", str(tmp_path))
    assert result.returncode == 2 and "holds 2 GGUF files" in result.stdout, result.stdout
    assert "Traceback" not in result.stdout + result.stderr


# --- a demo run: its LoRA adapter on SmolLM2, then its GGUF with llama.cpp ------------------------------------

@pytest.mark.slow
def test_a_demo_run_is_served_as_its_adapter_on_smollm2(smollm2_run, tmp_path):
    with serving(str(smollm2_run), tmp_path / "serve.log") as server:
        assert server.model == smollm2_run.name
        assert f"LoRA adapter {smollm2_run / 'adapter'} on" in server.output().replace("\n", "")
        text, _ = ask(server, key="any", temperature=0, max_tokens=16)  # no key set: none needed
        # The same greedy reply as `trainer chat` gives: the adapter is applied, the template is the model's.
        model = chat.load(str(smollm2_run), "")
        expected = list(chat.stream(model, QUESTION, chat.GenerationSettings(temperature=0, max_new_tokens=16)))[-1]
        assert text == expected


@pytest.mark.slow
def test_a_dpo_run_is_served_as_its_trained_adapter(smollm2_dir, tmp_path):
    """A DPO run's adapter/ holds TRL's frozen reference copy in ref/ beside the trained adapter: serve loads the
    trained one, as `trainer chat` does."""
    run_dir = tmp_path / "dpo"
    result = run_cli("--profile", "cpu", "--method", "dpo", "--dataset", "sample", "--max-steps", "2",
                     "--set", "eval_size=0", "--set", "learning_rate=1e-3", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (run_dir / "adapter" / "ref" / "adapter_model.safetensors").is_file()
    with serving(str(run_dir), tmp_path / "serve.log") as server:
        assert f"LoRA adapter {run_dir / 'adapter'} on" in server.output().replace("\n", "")
        text, _ = ask(server, key="any", temperature=0, max_tokens=16)
        model = chat.load(str(run_dir), "")
        expected = list(chat.stream(model, QUESTION, chat.GenerationSettings(temperature=0, max_new_tokens=16)))[-1]
        assert text == expected


@pytest.fixture
def demo_gguf(smollm2_gguf_run) -> Path:
    """The f16 GGUF of a copy of the demo run, exported with merged/ beside it (tests/conftest.py)."""
    return smollm2_gguf_run / "gguf" / "model-f16.gguf"


@pytest.mark.slow
def test_a_runs_gguf_is_served_by_llama_cpp(demo_gguf, tmp_path):
    with serving(str(demo_gguf.parent), tmp_path / "serve.log", "--api-key", KEY, key=KEY) as server:
        assert server.model == "model-f16.gguf" and "with llama.cpp" in server.output()
        text, reply = ask(server, temperature=0, max_tokens=24)
        assert "Paris" in text and reply.choices[0].finish_reason == "stop"
        assert streamed(server, temperature=0, max_tokens=24)[0] == text
        stopped = ask(server, temperature=0, max_tokens=24, stop=["Paris"])[0]
        assert stopped == text.split("Paris")[0]
        check_warmed_up(server)
        check_openai_shape(server)
        # The same seed, the same sampled reply. llama.cpp keeps the last request's tokens and evaluates only what
        # differs: the first of these may batch more of the prompt than the next (float rounding then differs and a
        # token sampled at 1.2 can change), so the two compared both start after the same request.
        seeded = [ask(server, temperature=1.2, max_tokens=16, seed=11)[0] for _ in range(3)]
        assert seeded[1] == seeded[2], seeded
        check_bad_requests(server)
        results = concurrently(server, 4, temperature=0, max_tokens=24)
        assert [t for t, _ in results] == [text] * 4  # none cut off by the next (interrupt_requests is off)
        print("4 concurrent GGUF requests, latencies (s):", sorted(round(s, 2) for _, s in results))


@pytest.mark.slow
def test_a_run_with_a_merged_export_is_served_merged(smollm2_gguf_run, tmp_path):
    with serving(str(smollm2_gguf_run), tmp_path / "serve.log") as server:
        assert f"{smollm2_gguf_run / 'merged'} with transformers" in server.output().replace("\n", "")
        assert "Paris" in ask(server, key="any", temperature=0, max_tokens=24)[0]

