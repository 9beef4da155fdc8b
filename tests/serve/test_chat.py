"""The generation layer behind `trainer chat` and `trainer ui`, on a real trained adapter and on SmolLM2."""

from __future__ import annotations

import subprocess

import pytest
import torch

from tests.helpers import ROOT, chat_session, cli_command, run_cli
from trainer.errors import UserError
from trainer.serve import chat
from trainer.serve.chat import GenerationSettings

GREEDY = GenerationSettings(temperature=0, max_new_tokens=16)


@pytest.fixture(scope="module")
def tiny_run(shared_tiny_llama, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("chat") / "run"
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps", "3",
                     "--set", "eval_size=0", "--set", "learning_rate=3e-2", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout
    return run_dir


def test_describe_finds_the_base_model_of_runs_adapters_and_checkpoints(tiny_run, shared_tiny_llama):
    assert chat.describe(str(tiny_run)) == (str(shared_tiny_llama), tiny_run / "adapter")
    checkpoint = next((tiny_run / "checkpoints").iterdir())
    assert chat.describe(str(checkpoint)) == (str(shared_tiny_llama), checkpoint)
    assert chat.describe(str(shared_tiny_llama)) == (str(shared_tiny_llama), None)


def test_a_run_without_adapter_says_why(tmp_path):
    (tmp_path / "config.toml").write_text("")
    (tmp_path / "status.json").write_text('{"state": "interrupted"}')
    with pytest.raises(UserError, match="has no finished adapter yet \\(status: interrupted\\)"):
        chat.describe(str(tmp_path))


def test_streaming_yields_growing_text_equal_to_plain_greedy_generation(tiny_run):
    model = chat.load(str(tiny_run), "")
    messages = [{"role": "user", "content": "Hello there"}]
    replies = list(chat.stream(model, messages, GREEDY))
    assert replies and all(b.startswith(a) for a, b in zip(replies, replies[1:], strict=False))
    inputs = chat.prompt(model, messages, GREEDY)
    with torch.inference_mode():
        ids = model.model.generate(**inputs, max_new_tokens=16, do_sample=False)
    expected = model.tokenizer.decode(ids[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert replies[-1] == expected


def test_a_run_loads_as_its_base_with_the_trained_adapter(tiny_run, shared_tiny_llama):
    tuned = chat.load(str(tiny_run), "")
    base = chat.load(str(shared_tiny_llama), "")  # what Compare's "base model" loads for the run
    messages = [{"role": "user", "content": "Hello there"}]
    assert tuned.base_name == str(shared_tiny_llama) and tuned.has_adapter and not base.has_adapter
    inputs = chat.prompt(tuned, messages, GREEDY)
    with torch.inference_mode():
        with_adapter = tuned.model(**inputs).logits
        with tuned.model.disable_adapter():
            without = tuned.model(**inputs).logits
        assert torch.allclose(without, base.model(**inputs).logits)  # the base alone is the run without its adapter
    assert not torch.allclose(with_adapter, without)  # the adapter was trained: it changes the answer


def test_system_prompt_goes_into_the_chat_template(tiny_run):
    model = chat.load(str(tiny_run), "")
    settings = GenerationSettings(system_prompt="Answer in French.")
    text = model.tokenizer.decode(chat.prompt(model, [{"role": "user", "content": "Hi"}], settings)["input_ids"][0])
    assert "Answer in French.<|eot_id|>" in text and text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")



def test_cli_chat_streams_replies_and_keeps_the_conversation(tiny_run, shared_tiny_llama):
    result = chat_session(str(tiny_run), "Hello\n/reset\nHi again\n/exit\n", "--temperature", "0",
                          "--max-new-tokens", "8")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"adapter on {shared_tiny_llama}" in result.stdout
    assert result.stdout.count("model>") == 2 and "Traceback" not in result.stdout + result.stderr


def test_smollm2_answers_a_real_question(smollm2_dir):
    """The offline demo's base model is a real instruct model: chatting with it works without any network."""
    result = chat_session("HuggingFaceTB/SmolLM2-135M-Instruct", "What is the capital of France?\n",
                          "--temperature", "0", "--max-new-tokens", "24")
    assert result.returncode == 0 and "Paris" in result.stdout, result.stdout


def test_missing_model_is_a_user_error(tmp_path):
    result = run_cli("chat", str(tmp_path / "nothing"))
    assert result.returncode == 2 and "neither an existing folder nor a Hub id" in result.stdout


@pytest.mark.slow
def test_library_warnings_go_to_the_log_not_into_the_reply(real_llama, tmp_path):
    """Meta's tokenizer config asks for clean_up_tokenization_spaces, and transformers warns about it on the first
    decode: in the middle of the streamed reply, before this went to the log."""
    command, env = cli_command("chat", str(real_llama), "--temperature", "0", "--max-new-tokens", "4")
    result = subprocess.run(command, input="Hello\n/exit\n", cwd=ROOT, env={**env, "TRAINER_CACHE_DIR": str(tmp_path)},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("model>") == 1
    log = tmp_path / "logs" / "chat.log"
    assert f"Library warnings go to {log}" in result.stdout
    assert "clean_up_tokenization_spaces" not in result.stdout + result.stderr
    assert "Ignoring clean_up_tokenization_spaces=True" in log.read_text()
