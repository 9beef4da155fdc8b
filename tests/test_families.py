"""Model families beyond Llama on real files from PyPI: Gemma 3 270M (weights, vocabulary, Google's template) trains,
chats and exports to a GGUF that carries its template and end-of-turn token; Qwen3's real tokenizer renders thinking
blocks with the right mask and trains a tiny Qwen3; a family we do not support is refused by name."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests import models
from tests.helpers import assert_user_error, chat_session, run_cli
from trainer.config import DATE_STRING, LLAMA_TARGETS
from trainer.data.render import assistant_spans, end_of_turn, render_with_mask, stop_token_ids
from trainer.engines import families
from trainer.export.gguf import OLLAMA_TEMPLATES
from trainer.fit.shape import from_config, known

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6"},
]


def trained_text(tokenizer, ids, mask) -> str:
    return tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m])


@pytest.fixture(scope="session")
def gemma3_tokenizer(gemma3_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma3_dir)


@pytest.fixture(scope="session")
def mistral_tokenizer(mistral_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(mistral_tokenizer_dir)


@pytest.fixture(scope="session")
def qwen3_tokenizer(qwen3_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


def test_gemma3_folds_the_system_turn_into_the_first_user_turn_and_trains_through_end_of_turn(gemma3_tokenizer):
    ids, mask = render_with_mask(gemma3_tokenizer, CONVERSATION)
    assert gemma3_tokenizer.decode(ids) == (
        "<bos><start_of_turn>user\nBe brief.\n\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n6<end_of_turn>\n")
    assert ids.count(gemma3_tokenizer.bos_token_id) == 1 and ids[0] == gemma3_tokenizer.bos_token_id
    assert trained_text(gemma3_tokenizer, ids, mask) == "4<end_of_turn>\n6<end_of_turn>\n"
    # <end_of_turn> is one control token, trained; the header before each answer is not.
    assert [i for i, m in zip(ids, mask, strict=True) if m].count(models.GEMMA3_END_OF_TURN) == 2


def test_gemma3_tokenizer_is_google_vocabulary(gemma3_tokenizer):
    """Spot checks of the vocabulary rebuilt from the GGUF (the export test compares it with llama.cpp's)."""
    assert len(gemma3_tokenizer) == 262144
    assert gemma3_tokenizer("Hello world")["input_ids"] == [2, 9259, 1902]  # <bos>, whole words, no dummy prefix
    assert gemma3_tokenizer.convert_ids_to_tokens([0, 1, 2, 105, 106]) == [
        "<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>"]
    text = "  two spaces\n\n<b>bold</b> 日本語 🤖"
    assert gemma3_tokenizer.decode(gemma3_tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_the_fits_offline_gemma3_270m_is_the_real_ones_shape(gemma3_dir):
    """A plan of google/gemma-3-270m-it with no network (trainer/fit/shape.py KNOWN) is of the real model's shape:
    the config.json transformers wrote from Google's GGUF on PyPI."""
    real = json.loads((gemma3_dir / "config.json").read_text())
    assert known("google/gemma-3-270m-it") == from_config(real)


def test_qwen3_trains_the_thinking_of_the_last_answer_and_drops_it_from_earlier_ones(qwen3_tokenizer):
    """Qwen3's template keeps an answer's thinking block only while it is the last answer, as at inference: the row is
    the template's rendering of the whole conversation, and each answer's tokens are found in it."""
    conversation = [*CONVERSATION[:2], {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"},
                    CONVERSATION[3], {"role": "assistant", "content": "<think>\nThree and three.\n</think>\n\n6"}]
    ids, mask = render_with_mask(qwen3_tokenizer, conversation)
    assert qwen3_tokenizer.decode(ids) == qwen3_tokenizer.apply_chat_template(conversation, tokenize=False)
    assert "Two and two" not in qwen3_tokenizer.decode(ids)
    assert trained_text(qwen3_tokenizer, ids, mask) == "4<|im_end|><think>\nThree and three.\n</think>\n\n6<|im_end|>\n"


def test_qwen3_answer_without_thinking_trains_the_empty_thinking_block(qwen3_tokenizer):
    """What Qwen3 generates with thinking off (the prompt then ends in the empty block) is what it is taught."""
    text, spans = assistant_spans(qwen3_tokenizer, CONVERSATION[1:3])
    assert [text[a:b] for a, b in spans] == ["<think>\n\n</think>\n\n4<|im_end|>\n"]
    assert text[:spans[0][0]].endswith("<|im_start|>assistant\n")


def test_a_system_prompt_moved_into_the_last_user_turn_still_finds_each_answer(mistral_tokenizer):
    """With Mistral's template the text before an answer differs from the prompt that asked for it (the system prompt
    moved away): each answer is found in the whole conversation, its leading space (SentencePiece's "\u2581") and EOS
    trained."""
    tokenizer = mistral_tokenizer
    ids, mask = render_with_mask(tokenizer, CONVERSATION)
    assert tokenizer.decode(ids) == "<s>[INST] What is 2+2?[/INST] 4</s>[INST] And 3+3?[/INST] 6</s>"
    # The space is trained as when the system prompt is absent and the prompt is the text before the answer.
    assert tokenizer.convert_ids_to_tokens([i for i, m in zip(ids, mask, strict=True) if m]) == [
        "\u2581", "4", "</s>", "\u2581", "6", "</s>"]
    without_system = render_with_mask(tokenizer, CONVERSATION[1:])
    assert without_system == (ids, mask)


def test_each_template_names_its_end_of_turn(llama_tokenizer, smol_tokenizer, qwen3_tokenizer, gemma3_tokenizer,
                                             mistral_tokenizer):
    def named(tokenizer):
        return tokenizer.convert_ids_to_tokens(end_of_turn(tokenizer))

    assert named(llama_tokenizer) == "<|eot_id|>" and named(smol_tokenizer) == "<|im_end|>"
    assert named(qwen3_tokenizer) == "<|im_end|>" and stop_token_ids(qwen3_tokenizer) == [151645]
    # Gemma's EOS is <eos>, but a turn ends with <end_of_turn>: a reply stops at either.
    assert named(gemma3_tokenizer) == "<end_of_turn>" and stop_token_ids(gemma3_tokenizer) == [106, 1]
    assert named(mistral_tokenizer) == "</s>" and stop_token_ids(mistral_tokenizer) == [2]


def test_phi3_gets_its_fused_projections_as_lora_targets():
    import torch
    from transformers import Phi3Config, Phi3ForCausalLM

    config = Phi3Config(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=1, pad_token_id=0)
    targets = families.lora_targets("phi", config.model_type, LLAMA_TARGETS)
    assert targets == ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
    with torch.device("meta"):
        names = {name.rsplit(".", 1)[-1] for name, _ in Phi3ForCausalLM(config).named_modules()}
    assert set(targets) <= names and not {"q_proj", "gate_proj"} & names
    assert families.lora_targets("phi", "phi3", ("qkv_proj",)) == ("qkv_proj",)  # what the user set wins
    assert families.lora_targets("gemma", "gemma3_text", LLAMA_TARGETS) == LLAMA_TARGETS


def test_a_family_we_do_not_support_is_refused_naming_those_we_do(tmp_path, smollm2_dir):
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    folder = tmp_path / "tiny-gpt2"
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    result = run_cli("--profile", "cpu", "--model", str(folder), "--dataset", "sample", "--max-steps", "1",
                     "--set", "eval_size=0", "--run-dir", str(tmp_path / "run"))
    assert_user_error(result, "is a gpt2 model", "llama, qwen3, gemma3, mistral, phi3")


def test_the_fit_knows_the_families_the_engines_train():
    """trainer/fit may not import the engines (tests/test_architecture.py): its own list of the families whose
    config.json it reads, and refuses others by, is the engines' list."""
    from trainer.fit.shape import CALIBRATED

    assert set(CALIBRATED) == set(families.FAMILIES)


@pytest.fixture(scope="module")
def gemma3_run(gemma3_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("gemma3") / "run"
    result = run_cli("--profile", "cpu", "--model", str(gemma3_dir), "--dataset", "sample", "--max-steps", "2",
                     "--set", "eval_size=0", "--set", "max_seq_length=256", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


@pytest.mark.slow
def test_gemma3_trains_and_chats(gemma3_run):
    losses = [json.loads(line)["loss"] for line in (gemma3_run / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line]
    assert len(losses) == 2 and all(0 < loss < 10 for loss in losses)  # a real model: no random-init 12.5
    adapter = json.loads((gemma3_run / "adapter" / "adapter_config.json").read_text())
    assert set(adapter["target_modules"]) == set(LLAMA_TARGETS)
    chat = chat_session(str(gemma3_run), "What is the capital of France?\n/exit\n", "--temperature", "0",
                        "--max-new-tokens", "8")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    reply = chat.stdout.split("model>", 1)[1].split("you>", 1)[0]
    assert reply.strip() and "<start_of_turn>" not in reply and "<end_of_turn>" not in reply


@pytest.mark.slow
def test_gemma3_exports_a_gguf_with_its_template_and_end_of_turn(gemma3_run):
    import gguf
    import llama_cpp
    from transformers import AutoTokenizer

    result = run_cli("export", str(gemma3_run), "--gguf", "f16")
    assert result.returncode == 0, result.stdout + result.stderr
    merged = json.loads((gemma3_run / "merged" / "generation_config.json").read_text())
    assert merged["eos_token_id"] == [106, 1]  # <end_of_turn> and <eos>, as Google's generation_config.json has them
    path = gemma3_run / "gguf" / "model-f16.gguf"
    fields = gguf.GGUFReader(path).fields
    assert fields["general.architecture"].contents() == "gemma3"
    assert fields["tokenizer.chat_template"].contents() == models.GEMMA3_TEMPLATE.read_text()
    # A SentencePiece vocabulary, not one taken for GPT-2's byte-level BPE (llama.cpp's converter without
    # tokenizer.model).
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    assert vocab.token_eos() == 1 and vocab._model.token_eot() == 106
    tokenizer = AutoTokenizer.from_pretrained(gemma3_run / "merged")
    for text in ["<start_of_turn>user\nWhat is  the capital?<end_of_turn>\n<start_of_turn>model\n",
                 "  leading spaces\tand tabs\n\n\nnewlines", "Ünïcödé ñ 日本語 🤖 <b>bold</b>",
                 "def f(x):\n    return x**2  # comment"]:
        assert vocab.tokenize(text.encode(), add_bos=False, special=True) == tokenizer(
            text, add_special_tokens=False)["input_ids"], text
    modelfile = (gemma3_run / "gguf" / "Modelfile").read_text()
    assert "<start_of_turn>model\n{{ .Content }}<end_of_turn>" in modelfile
    assert '{{ $.System }}\n\n{{ end }}' in modelfile and 'PARAMETER stop "<end_of_turn>"' in modelfile


@pytest.mark.slow
def test_a_tiny_qwen3_with_the_real_tokenizer_trains_on_multi_turn_rows_and_chats(qwen3_tokenizer_dir, tmp_path):
    """No Qwen3 weights are on PyPI: random weights of the Qwen3 architecture, Qwen3's real tokenizer and template.
    Multi-turn rows with thinking blocks, which the template renders differently once a later turn follows."""
    model = models.random_qwen3(qwen3_tokenizer_dir, tmp_path / "tiny-qwen3")
    thinking = [*CONVERSATION[:2], {"role": "assistant", "content": "<think>\nTwo and two.\n</think>\n\n4"},
                *CONVERSATION[3:]]
    data = tmp_path / "multi-turn.jsonl"
    data.write_text("".join(json.dumps({"messages": rows}) + "\n" for rows in [thinking, CONVERSATION] * 4))
    run_dir = tmp_path / "run"
    result = run_cli("--profile", "cpu", "--model", str(model), "--dataset", str(data), "--max-steps", "2",
                     "--set", "eval_size=0", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    chat = chat_session(str(run_dir), "Hello\n/exit\n", "--temperature", "0", "--max-new-tokens", "4")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert "model>" in chat.stdout


@pytest.mark.slow
def test_a_gemma3_that_reads_images_too_gets_adapters_on_its_language_model_only(gemma3_dir, tmp_path):
    """Gemma 3 4B and up carry an image encoder whose attention layers are named as the language model's; text
    training gives them no adapter (the transformers engine; unsloth's own filter is not run here)."""
    from safetensors.torch import load_file

    model = models.random_gemma3_with_images(gemma3_dir, tmp_path / "tiny-gemma3-images")
    run_dir = tmp_path / "run"
    result = run_cli("--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", "1",
                     "--set", "eval_size=0", "--set", "max_seq_length=128", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    adapted = {key.split(".lora_")[0] for key in load_file(run_dir / "adapter" / "adapter_model.safetensors")}
    assert len(adapted) == 2 * 7 and all(".language_model.layers." in key for key in adapted), sorted(adapted)


def test_the_unsloth_engine_takes_a_multimodal_processors_tokenizer(smol_llama_tokenizer_dir, tmp_path):
    """unsloth loads a checkpoint with an image encoder with its processor: training takes the processor's tokenizer,
    chat template included (the processor is what benchmarks/gpu_models.py saves beside Gemma 3 4B's shape)."""
    from transformers import AutoProcessor, AutoTokenizer

    from benchmarks import gpu_models
    from trainer.engines.unsloth_engine import text_tokenizer

    folder = gpu_models.build("gemma3-4B-images", smol_llama_tokenizer_dir, tmp_path, tiny=True)
    processor = AutoProcessor.from_pretrained(folder)
    tokenizer = text_tokenizer(processor)
    assert tokenizer is processor.tokenizer and not hasattr(tokenizer, "image_processor")
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=True)
    assert len(ids) > 1
    plain = AutoTokenizer.from_pretrained(smol_llama_tokenizer_dir)
    assert text_tokenizer(plain) is plain


@pytest.mark.slow
def test_a_tiny_mistral_trains_chats_and_exports_a_gguf_that_tokenizes_as_it_trained(mistral_tokenizer_dir, tmp_path):
    """No Mistral weights are on PyPI: random weights of the Mistral architecture, Mistral 7B v0.3's real SentencePiece
    tokenizer and [INST] template. llama.cpp would put a space after every special token ("[INST]", "▁▁", "What"
    where the run trained "[INST]", "▁What"); the GGUF says it must not, and the export's check finds the same
    tokens."""
    import gguf
    import llama_cpp
    from transformers import AutoTokenizer

    model = models.random_mistral(mistral_tokenizer_dir, tmp_path / "tiny-mistral")
    run_dir = tmp_path / "run"
    result = run_cli("--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", "2",
                     "--set", "eval_size=0", "--set", "max_seq_length=256", "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    chat = chat_session(str(run_dir), "Hello\n/exit\n", "--temperature", "0", "--max-new-tokens", "4")
    assert chat.returncode == 0 and "model>" in chat.stdout, chat.stdout + chat.stderr

    result = run_cli("export", str(run_dir), "--gguf", "f16")
    assert result.returncode == 0, result.stdout + result.stderr
    check = json.loads((run_dir / "export.json").read_text())["gguf_f16"]["check"]
    assert check["template_same_tokens"] == check["prompts"] == 6, check
    path = run_dir / "gguf" / "model-f16.gguf"
    fields = gguf.GGUFReader(path).fields
    assert fields["tokenizer.ggml.model"].contents() == "llama"
    assert fields["tokenizer.ggml.add_space_prefix"].contents() is False
    vocab = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "merged")
    for text in ["<s>[INST] What is the capital?[/INST] Paris.</s>[INST] And  of Spain?[/INST]",
                 "[INST] Ünïcödé ñ 日本語 🤖\n\tdef f(x):\n    return x[/INST]"]:
        assert vocab.tokenize(text.encode(), add_bos=False, special=True) == tokenizer(
            text, add_special_tokens=False)["input_ids"], text
    assert 'PARAMETER stop "</s>"' in (run_dir / "gguf" / "Modelfile").read_text()


# Ollama renders a Modelfile's TEMPLATE with Go's text/template; this program does the same with the conversation.
GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct{ Role, Content string }

func main() {
	var data struct {
		System   string
		Messages []Message
	}
	json.Unmarshal([]byte(os.Args[2]), &data)
	template.Must(template.New("t").Parse(os.Args[1])).Execute(os.Stdout, data)
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="Go's text/template renders Ollama's templates")
@pytest.mark.parametrize(("kind", "fixture", "bos"), [("gemma", "gemma3_tokenizer", "<bos>"),
                                                      ("chatml", "qwen3_tokenizer", ""),
                                                      ("llama3", "llama_tokenizer", "<|begin_of_text|>"),
                                                      ("mistral", "mistral_tokenizer", "<s>")])
def test_ollama_templates_render_what_the_jinja_templates_render(kind, fixture, bos, request, tmp_path):
    tokenizer = request.getfixturevalue(fixture)
    (tmp_path / "main.go").write_text(GO_RENDER)
    for conversation in (CONVERSATION[:4], CONVERSATION[1:2]):
        system = conversation[0]["content"] if conversation[0]["role"] == "system" else ""
        data = json.dumps({"System": system, "Messages": [
            {"Role": m["role"], "Content": m["content"]} for m in conversation]})
        go = subprocess.run(["go", "run", str(tmp_path / "main.go"), OLLAMA_TEMPLATES[kind][0], data], cwd=tmp_path,
                            capture_output=True, text=True, check=True, env={**os.environ, "GO111MODULE": "off"})
        jinja = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True,
                                              date_string=DATE_STRING)
        assert jinja.startswith(bos) and go.stdout == jinja.removeprefix(bos)  # llama.cpp adds the BOS itself
