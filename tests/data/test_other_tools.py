"""Files as other tools write them (tests/data/files/, sources in its README): read when the rows can be trained as
text or tool calls (weights of 0 honoured), refused by name when they carry something this tool does not train
(images, labels)."""

import json
from itertools import groupby
from pathlib import Path

import pytest

from tests.helpers import assert_user_error, run_cli
from trainer.data import formats, preferences, sources, tokens
from trainer.data.render import check_tools, end_of_turn, render_with_mask
from trainer.data.sources import Table
from trainer.errors import UserError

FILES = Path(__file__).with_name("files")


def read(name: str) -> Table:
    return sources.read(str(FILES / name))


def test_openai_text_content_parts_are_joined():
    examples = formats.convert(read("openai_content_parts.jsonl"))
    assert examples.conversations == [[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."}]]


@pytest.mark.parametrize("name, where, field", [
    ("openai_vision.jsonl", "line 1 of", "part 1 of message 3 of 'messages' is of type 'image_url'"),
    ("llamafactory_v1_multimodal_demo.jsonl", "line 1 of", "part 1 of message 1 of 'messages' is of type 'image_url'"),
    ("llamafactory_mllm_demo.json", "row 1 of", "the field 'images' holds media"),
])
def test_vision_data_is_refused_naming_the_row_and_the_field(name, where, field):
    with pytest.raises(UserError) as e:
        formats.convert(read(name), skip_invalid=True)  # never skipped row by row: every row would be text
    assert e.value.message == f"{where} {FILES / name}: {field}: this is vision data; this tool trains text models"


def test_an_image_placeholder_without_an_images_field_is_refused():
    row = {"messages": [{"role": "user", "content": "<image>Who are they?"}, {"role": "assistant", "content": "Kane."}]}
    with pytest.raises(UserError, match="row 1 of f: message 1 of 'messages' holds the placeholder <image>: this is "
                                        "vision data"):
        formats.convert(Table("f", [row]))


def test_llamafactory_alpaca_reads_its_fields():
    examples = formats.convert(read("llamafactory_alpaca_en_demo.json"))
    assert examples.format == "alpaca" and len(examples) == 3
    assert examples.fields_read == ["instruction", "input", "output"] and examples.fields_unused == []


def test_alpaca_history_and_sharegpt_system_are_read_not_dropped():
    alpaca = {"instruction": "And 3 + 3?", "input": "", "output": "6", "system": "Be brief.",
              "history": [["What is 2 + 2?", "4"]]}
    assert formats.convert(Table("f", [alpaca])).conversations[0] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 2?"},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3 + 3?"},
        {"role": "assistant", "content": "6"}]
    sharegpt = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
                "system": "Be kind.", "id": 7}
    examples = formats.convert(Table("f", [sharegpt]))
    assert examples.conversations[0][0] == {"role": "system", "content": "Be kind."}
    assert (examples.fields_read, examples.fields_unused) == (["conversations", "system"], ["id"])


def test_kto_labels_are_refused_naming_the_field_and_the_method():
    """A label on a later row than the first (the first row's refuses the file: tests/data/test_unpaired.py)."""
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
    with pytest.raises(UserError) as e:
        formats.convert(Table("f", [row, {**row, "label": False}]), skip_invalid=True)
    assert e.value.message.startswith("row 2 of f: the field 'label' marks each answer good or bad")
    assert e.value.hint.startswith("Add --method kto to train on the answers marked good and bad")


def trained_spans(tokenizer, ids: list[int], mask: list[int]) -> list[str]:
    """The trained tokens, decoded span by span."""
    spans, position = [], 0
    for trained, group in groupby(mask):
        size = len(list(group))
        if trained:
            spans.append(tokenizer.decode(ids[position:position + size]))
        position += size
    return spans


def test_a_weight_of_zero_leaves_that_answer_untrained(llama_tokenizer):
    examples = formats.convert(read("openai_weights.jsonl"))
    assert [m.get("train", True) for m in examples.conversations[0]] == [True, True, False, True, True]
    ids, mask = render_with_mask(llama_tokenizer, examples.conversations[0])
    assert trained_spans(llama_tokenizer, ids, mask) == ["Paris, as if everyone doesn't know that already.<|eot_id|>"]
    assert "<|start_header_id|>assistant<|end_header_id|>\n\nParis<|eot_id|>" in llama_tokenizer.decode(ids)  # context
    ones = {"messages": [{"role": "user", "content": "Hi", "weight": 0},
                         {"role": "assistant", "content": "Hello", "weight": 1}]}
    assert formats.convert(Table("f", [ones])).conversations[0] == [{"role": "user", "content": "Hi"},
                                                                     {"role": "assistant", "content": "Hello"}]


def test_a_weight_other_than_0_or_1_is_refused_and_all_zero_is_no_answer():
    row = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello", "weight": 0.5}]}
    with pytest.raises(UserError) as e:
        formats.convert(Table("f", [row]), skip_invalid=True)  # never skipped: the file means something else
    assert e.value.message == ("row 1 of f: message 2 of 'messages' has 'weight': 0.5, and an answer is trained (1) or "
                               "not (0), nothing between")
    assert e.value.hint == "Set 'weight' to 0 (not trained) or 1 (trained)."
    row["messages"][1]["weight"] = 0
    with pytest.raises(UserError, match="row 1 of f: has weight 0 on every assistant turn, so there is no answer"):
        formats.convert(Table("f", [row]))


CALCULATE_AGE = {"type": "function", "function": {
    "name": "calculate_age", "description": "Calculate the age based on birthdate",
    "parameters": {"type": "object", "properties": {"birthdate": {"type": "string", "description":
                                                                  "The birthdate in YYYY-MM-DD format"}},
                   "required": ["birthdate"]}}}
AGE_CALL = {"type": "function", "function": {"name": "calculate_age", "arguments": {"birthdate": "1990-05-15"}}}


def test_sharegpt_tool_calls_are_read_as_transformers_tool_messages():
    examples = formats.convert(read("llamafactory_glaive_toolcall_en_demo.json"))
    assert examples.format == "sharegpt" and len(examples) == 4 and examples.rows_with_tools() == 4
    assert examples.fields_read == ["conversations", "tools"] and examples.fields_unused == []
    assert examples.conversations[1] == [
        {"role": "user", "content": "Hi, I was born on 1990-05-15. Can you tell me how old I am today?"},
        {"role": "assistant", "content": "", "tool_calls": [AGE_CALL]},
        {"role": "tool", "content": '{"age": 31}'},
        {"role": "assistant", "content": "Based on the birthdate you provided, you are 31 years old today."}]
    assert examples.tools[1] == [CALCULATE_AGE]  # glaive's JSON text of bare functions, as OpenAI's tools


def test_openai_tool_calls_are_read_in_either_layout():
    examples = formats.convert(read("openai_tools.jsonl"))
    call = {"type": "function", "function": {"name": "get_current_weather",
                                             "arguments": {"location": "San Francisco, USA", "format": "celsius"}}}
    assert examples.conversations[0][1] == {"role": "assistant", "content": "", "tool_calls": [{"id": "call_id",
                                                                                                  **call}]}
    assert [m["role"] for m in examples.conversations[1]] == ["user", "assistant", "tool", "assistant"]
    assert examples.conversations[1][2] == {"role": "tool", "tool_call_id": "call_id", "content":
                                            '{"temperature": 14, "unit": "celsius", "description": "Foggy"}'}
    assert examples.conversations[2][1] == {"role": "assistant", "content": "", "tool_calls": [call]}  # functions
    assert examples.tools[0] == examples.tools[1] == examples.tools[2]
    assert (examples.fields_read, examples.fields_unused) == (["messages", "tools", "functions"], [])


@pytest.mark.parametrize("turns, message", [
    ([{"role": "tool", "content": "22C"}], "roles are out of order (user, tool, assistant)"),
    ([{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": "{oops"}}]},
      {"role": "tool", "content": "22C"}], "the arguments of call 1 of message 2 (tool_calls) is text that is not "
                                           "valid JSON"),
    ([{"role": "assistant", "tool_calls": [{"function": {"arguments": "{}"}}]}], "call 1 of message 2 (tool_calls) "
                                                                                 "has no function name"),
    ([{"role": "user", "content": "Hi", "tool_calls": [AGE_CALL]}], "message 2 has 'tool_calls' but the role 'user'"),
])
def test_bad_tool_turns_name_the_message(turns, message):
    row = {"messages": [{"role": "user", "content": "Weather?"}, *turns, {"role": "assistant", "content": "Sunny"}]}
    with pytest.raises(UserError) as e:
        formats.convert(Table("f", [row]))
    assert e.value.message.startswith(f"1 of 1 rows in f can't be used as openai:\n  row 1 of f: {message}")


@pytest.fixture(scope="module")
def qwen3_tokenizer(qwen3_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)


@pytest.mark.parametrize("name", ["llama_tokenizer", "qwen3_tokenizer"])
def test_calls_and_answers_train_and_tool_results_do_not(name, request):
    tokenizer = request.getfixturevalue(name)
    examples = formats.convert(read("llamafactory_glaive_toolcall_en_demo.json"))
    ids, mask = render_with_mask(tokenizer, examples.conversations[3], tools=examples.tools_of(3))
    text, trained = tokenizer.decode(ids), "".join(trained_spans(tokenizer, ids, mask))
    assert "Calculate the age based on birthdate" in text and "Calculate the age" not in trained  # the tools
    result = examples.conversations[3][2]["content"]
    assert result in text.replace('\\"', '"') and result not in trained  # Llama's template writes it as JSON text
    assert "31}" not in trained
    spans = trained_spans(tokenizer, ids, mask)
    assert len(spans) == 3  # the call, the answer to its result, the answer to the next question
    assert '"name": "calculate_age"' in spans[0] and '{"birthdate": "1990-05-15"}' in spans[0]
    assert "you are 31 years old today." in spans[1] and "You're welcome!" in spans[2]
    end = tokenizer.convert_ids_to_tokens(end_of_turn(tokenizer))  # each span ends with its end-of-turn token
    assert all(span.rstrip("\n").endswith(end) for span in spans)


def test_llama_renders_the_call_as_its_template_writes_it(llama_tokenizer):
    examples = formats.convert(read("openai_tools.jsonl"))
    ids, mask = render_with_mask(llama_tokenizer, examples.conversations[1], tools=examples.tools_of(1))
    assert trained_spans(llama_tokenizer, ids, mask) == [
        '{"name": "get_current_weather", "parameters": {"location": "San Francisco, USA", "format": "celsius"}}'
        "<|eot_id|>", "It is 14 degrees Celsius and foggy in San Francisco.<|eot_id|>"]
    assert ('<|start_header_id|>ipython<|end_header_id|>\n\n"{\\"temperature\\": 14'
            in llama_tokenizer.decode(ids))


def test_parallel_calls_train_where_the_template_takes_them_and_are_named_where_it_refuses(llama_tokenizer,
                                                                                         qwen3_tokenizer):
    calls = '[{"name": "f", "arguments": {"x": 1}}, {"name": "g", "arguments": {"y": 2}}]'
    row = {"conversations": [{"from": "human", "value": "Both?"}, {"from": "function_call", "value": calls},
                             {"from": "observation", "value": "result 1"}, {"from": "observation", "value": "result 2"},
                             {"from": "gpt", "value": "Done."}]}
    examples = formats.convert(Table("f", [row]))
    ids, mask = render_with_mask(qwen3_tokenizer, examples.conversations[0])
    call, answer = trained_spans(qwen3_tokenizer, ids, mask)
    assert '{"name": "f", "arguments": {"x": 1}}' in call and '{"name": "g", "arguments": {"y": 2}}' in call
    assert "Done." in answer and "result" not in call + answer and "result 2" in qwen3_tokenizer.decode(ids)
    settings = tokens.Settings(512, "26 Jul 2024", False)
    with pytest.raises(UserError) as e:
        tokens.in_memory(examples, [0], llama_tokenizer, settings)
    assert e.value.message.endswith("refuses conversation 1 of the rows read: This model only supports single "
                                    "tool-calls at once!")


def test_a_template_without_tool_support_is_refused_naming_the_fix(smol_tokenizer, llama_tokenizer):
    check_tools(llama_tokenizer, 4)
    with pytest.raises(UserError) as e:
        check_tools(smol_tokenizer, 4)
    assert e.value.message.startswith("4 rows define or call tools, but the chat template of ")
    assert e.value.message.endswith("has no tool support: it leaves out the tool definitions and the tool calls")
    assert e.value.hint.startswith("Use a model whose chat template renders tools")


@pytest.mark.parametrize("name", ["llamafactory_dpo_en_demo.json", "llamafactory_v1_dpo_demo.jsonl",
                                  "openai_dpo.jsonl"])
def test_preference_files_given_to_sft_name_the_method(name):
    with pytest.raises(UserError) as e:
        formats.convert(read(name), skip_invalid=True)
    assert "is preference data" in e.value.message
    assert e.value.hint == "Add --method dpo (or --method orpo) to train on the pairs."
    assert "skip_invalid_rows" not in e.value.hint  # it could only end in "no usable rows"
    assert len(preferences.convert(read(name))) > 0  # and that method reads it


def test_llamafactory_preference_rows_are_pairs():
    pairs = preferences.convert(read("llamafactory_dpo_en_demo.json"))
    assert (pairs.format, len(pairs), pairs.fields_unused) == ("llamafactory", 3, [])
    assert pairs.prompts[0][-1]["role"] == "user" and pairs.chosen[0] != pairs.rejected[0]
    alpaca = {"instruction": "Add", "input": "2 and 3", "chosen": "5", "rejected": "6"}
    assert preferences.convert(Table("f", [alpaca])).prompts == [[{"role": "user", "content": "Add\n\n2 and 3"}]]


def test_openai_dpo_rows_are_pairs():
    pairs = preferences.convert(read("openai_dpo.jsonl"))
    assert pairs.format == "openai"
    assert pairs.prompts[1] == [{"role": "user", "content": "What's the capital of France?"}]
    assert (pairs.chosen[1], pairs.rejected[1]) == ("Paris.", "Lyon.")
    with_tools = {"input": {"messages": [{"role": "user", "content": "Weather?"}], "tools": [{"type": "function"}]},
                  "preferred_output": [{"role": "assistant", "content": "a"}],
                  "non_preferred_output": [{"role": "assistant", "content": "b"}]}
    with pytest.raises(UserError, match="row 1 of f: the field 'tools' defines tools, and tool calls are trained as "
                                        "SFT conversations only"):
        preferences.convert(Table("f", [with_tools]))


def test_chosen_and_rejected_messages_with_text_parts_are_pairs():
    pairs = preferences.convert(read("llamafactory_v1_dpo_demo.jsonl"))
    assert (pairs.format, len(pairs)) == ("messages", 3)
    assert [m["role"] for m in pairs.prompts[0]] == ["system", "user"]
    assert all(isinstance(m["content"], str) for m in pairs.prompts[0])


def test_sft_data_given_as_pairs_says_to_leave_out_the_method():
    with pytest.raises(UserError, match="is not preference data") as e:
        preferences.convert(read("llamafactory_alpaca_en_demo.json"))
    assert "leave out --method" in e.value.hint


@pytest.mark.parametrize("args, fragments", [
    (["--dataset", str(FILES / "llamafactory_dpo_en_demo.json")],
     ["is preference data (its first row has 'chosen' and 'rejected')", "Add --method dpo (or --method orpo)"]),
    (["--dataset", str(FILES / "llamafactory_mllm_demo.json")],
     [f"row 1 of {FILES / 'llamafactory_mllm_demo.json'}: the field 'images' holds media: this is vision data; this "
      "tool trains text models"]),
    (["--dataset", str(FILES / "llamafactory_kto_en_demo.json")], ["is KTO data (its first row's 'label'",
                                                                    "Add --method kto"]),
    (["--dataset", str(FILES / "trl_unpaired_standard.jsonl")], ["is KTO data", "Add --method kto"]),
    (["--method", "dpo", "--dataset", str(FILES / "openai_vision.jsonl")], ["is not preference data"]),
])
def test_the_cli_refuses_by_name_before_any_model_is_read(args, fragments):
    result = run_cli("data", "--profile", "cpu", "--model", "no/such-model", *args)
    assert_user_error(result, *fragments)
    assert "skip_invalid_rows" not in result.stdout + result.stderr


@pytest.mark.slow
def test_data_lists_the_fields_and_the_step_limit(tmp_path, shared_tiny_llama):
    rows = [{"instruction": f"Add {i} and {i}.", "output": str(2 * i), "id": i} for i in range(999)]
    path = tmp_path / "sums.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run_cli("data", "--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", str(path), "-n", "1")
    out = result.stdout.replace("\n", " ")
    assert result.returncode == 0, out
    assert "Fields read: instruction, output; not used: id" in out
    assert "max_steps=40 (profile cpu) trains at most 160 of the 983 train rows (4 a step); --set max_steps=0 " \
           "trains them all" in out
    pairs = run_cli("data", "--profile", "cpu", "--method", "dpo", "--model", str(shared_tiny_llama), "--dataset",
                    str(FILES / "openai_dpo.jsonl"), "-n", "1")
    assert pairs.returncode == 0, pairs.stdout + pairs.stderr
    assert "2 preference pairs, format openai" in pairs.stdout
    assert "Fields read: input, preferred_output, non_preferred_output; not used: none" in pairs.stdout


def test_fields_with_other_names_train_after_one_setting(tmp_path):
    from trainer.data import stage
    from trainer.profiles import resolve

    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"Question": "2 + 2?", "Answer": "4", "id": 1}) + "\n")
    with pytest.raises(UserError) as e:
        stage.load_rows(resolve("cpu", [f"dataset={path}"])[0])
    assert e.value.hint.endswith("or map them: --set columns=Question:instruction,Answer:output.")
    config = resolve("cpu", [f"dataset={path}", "columns=Question:instruction,Answer:output"])[0]
    examples = stage.load_rows(config)
    assert examples.conversations == [[{"role": "user", "content": "2 + 2?"}, {"role": "assistant", "content": "4"}]]
    assert (examples.fields_read, examples.fields_unused) == (["instruction", "output"], ["id"])
    assert examples.fingerprint != sources.read(str(path)).fingerprint  # cached tokens follow the mapping


def test_preference_and_labelled_files_map_their_fields_too(tmp_path):
    from trainer.data import preferences, unpaired

    pairs_file, labelled_file = tmp_path / "pairs.jsonl", tmp_path / "labelled.jsonl"
    pairs_file.write_text(json.dumps({"question": "2 + 2?", "good": "4", "bad": "5"}) + "\n")
    labelled_file.write_text("".join(json.dumps({"question": "2 + 2?", "reply": reply, "ok": ok}) + "\n"
                                     for reply, ok in (("5", False), ("4", True))))
    pairs = preferences.load(str(pairs_file), "train", False, ("question:prompt", "good:chosen", "bad:rejected"))
    assert (pairs.prompts, pairs.chosen, pairs.rejected) == ([[{"role": "user", "content": "2 + 2?"}]], ["4"], ["5"])
    answers = unpaired.load(str(labelled_file), "train", False, ("question:prompt", "reply:completion", "ok:label"))
    assert (answers.completions, answers.labels) == (["5", "4"], [False, True])
    with pytest.raises(UserError, match="data.columns maps 'query'"):
        preferences.load(str(pairs_file), "train", False, ("query:prompt",))


@pytest.mark.parametrize("row, hint", [
    ({"prompt": "p", "completion": "c"}, "--set columns=prompt:instruction,completion:output"),
    ({"instruction": "i", "response": "r"}, "--set columns=response:output"),
    ({"q": "q", "answer": "a"}, "--set columns=q:instruction,answer:output"),
    ({"a": 1, "b": 2}, "--set columns=YOUR_PROMPT_FIELD:instruction,YOUR_ANSWER_FIELD:output"),
    ({"q": "q", "answer": "a", "id": 1}, "--set columns=YOUR_PROMPT_FIELD:instruction,answer:output"),
])
def test_the_unknown_fields_error_fills_the_setting_in_with_the_files_names(row, hint):
    with pytest.raises(UserError) as e:
        formats.convert(Table("f", [row]))
    assert e.value.hint.endswith(f"or map them: {hint}.")
    # what a front end offers to apply (the UI's Check data): only a mapping with no placeholder left to fill
    assert e.value.setting == ("" if "YOUR_" in hint else hint.removeprefix("--set "))


def test_a_mapping_that_names_no_field_or_hides_one_is_refused():
    table = Table("f", [{"question": "q", "answer": "a", "output": "o"}])
    with pytest.raises(UserError, match="data.columns maps 'query', which no row of f has \\(its fields: answer, "
                                        "output, question\\)"):
        formats.rename_columns(table, ("query:instruction",))
    with pytest.raises(UserError, match="maps 'answer' to 'output', but row 1 of f already has 'output'"):
        formats.rename_columns(table, ("question:instruction", "answer:output"))


def test_kto_data_given_as_pairs_names_kto():
    with pytest.raises(UserError, match="holds unpaired answers marked good or bad by 'label'") as e:
        preferences.convert(read("llamafactory_kto_en_demo.json"))
    assert e.value.hint == "Train them with --method kto (TRL's KTOTrainer)."


def test_an_empty_tools_field_is_no_tool_use():
    """109 of the 300 rows of LLaMA-Factory's glaive_toolcall_en_demo.json have "tools": "[]" and no calls."""
    row = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}], "tools": "[]"}
    assert len(formats.convert(Table("f", [row, {**row, "tools": []}, {**row, "images": []}]))) == 3


@pytest.mark.slow
def test_tool_calls_show_in_data_and_are_refused_for_a_template_without_tools(tmp_path, real_llama, smollm2_dir):
    """glaive's rows on the real Llama 3.2 template: `data` counts them and renders one that calls a tool (and counts
    OpenAI's answers of weight 0); training on SmolLM2 (its template has no tools) is exit 2 naming the fix, before a
    run folder exists."""
    glaive = str(FILES / "llamafactory_glaive_toolcall_en_demo.json")
    shown = run_cli("data", "--profile", "cpu", "--model", str(real_llama), "--dataset", glaive, "-n", "0")
    out = " ".join(shown.stdout.split())
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "Fields read: conversations, tools; not used: none" in out
    assert "Rows with tools: 4 of 4, 2 of them calling one" in out
    assert '{"name": "calculate_age", "parameters": {"birthdate": "1990-05-15"}}<|eot_id|>' in out
    weights = run_cli("data", "--profile", "cpu", "--model", str(real_llama), "--dataset",
                      str(FILES / "openai_weights.jsonl"), "-n", "0")
    assert "Answers with weight 0: 1 (rendered as context, not trained)" in weights.stdout, weights.stdout
    refused = run_cli("--profile", "cpu", "--model", str(smollm2_dir), "--dataset", glaive,
                      "--run-dir", str(tmp_path / "refused"))
    assert_user_error(refused, "4 rows define or call tools, but the chat template of", "has no tool support",
                      "Use a model whose chat template renders tools")
    assert not (tmp_path / "refused").exists()
