"""`trainer export` on real runs: merge equivalence, the model card, pushes to a local Hub server, no token leaks."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard

from tests.helpers import HUB_TOKEN as TOKEN
from tests.helpers import hub_env, run_cli
from trainer.export import merge, model_card


def train(model, run_dir, *settings):
    result = run_cli("--profile", "cpu", "--model", str(model), "--dataset", "sample", "--max-steps", "3",
                     "--set", "eval_size=0", "--set", "learning_rate=3e-2", *settings, "--run-dir", str(run_dir))
    assert result.returncode == 0, result.stdout + result.stderr
    return run_dir


@pytest.fixture(scope="module")
def tiny_run(shared_tiny_llama, tmp_path_factory):
    return train(shared_tiny_llama, tmp_path_factory.mktemp("export") / "run")


def assert_merged_equals_base_plus_adapter(run_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check = json.loads((run_dir / "export.json").read_text())["merged_16bit"]
    assert check["merge_max_abs_diff"] <= merge.MERGE_TOLERANCE
    assert check["saved_max_abs_diff"] <= check["saved_tolerance"] == merge.SAVED_TOLERANCE * check["logit_scale"]
    # The check can fail: the trained adapter moves the logits by far more than the tolerance.
    assert check["adapter_max_abs_effect"] > 3 * check["saved_tolerance"], check
    # Independently of the recorded check: plain transformers loads merged/ and reproduces base + adapter.
    source = merge.open_source(str(run_dir))
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "merged")
    merged = AutoModelForCausalLM.from_pretrained(run_dir / "merged", dtype=torch.float32)
    assert tokenizer.chat_template and merged.generation_config.eos_token_id == tokenizer.eos_token_id
    from peft import PeftModel

    base = AutoModelForCausalLM.from_pretrained(json.loads((source.adapter / "adapter_config.json").read_text())[
        "base_model_name_or_path"], dtype=torch.float32)
    reference = PeftModel.from_pretrained(base, source.adapter).eval()
    inputs = merge.check_inputs(tokenizer)
    diff = (merge.logits(merged, inputs) - merge.logits(reference, inputs)).abs().max().item()
    assert diff <= check["saved_tolerance"]
    return check


@pytest.mark.slow
def test_merge_equivalence_on_a_tiny_llama(tiny_run):
    result = run_cli("export", str(tiny_run))
    assert result.returncode == 0, result.stdout + result.stderr
    check = assert_merged_equals_base_plus_adapter(tiny_run)
    assert check["dtype"] == "float16" and "logits match base + adapter" in result.stdout
    assert not list(tiny_run.glob(".merged-*"))  # no staging folder left behind


@pytest.mark.slow
def test_merge_equivalence_on_smollm2(smollm2_dir, tmp_path):
    run_dir = train("HuggingFaceTB/SmolLM2-135M-Instruct", tmp_path / "run", "--set", "learning_rate=1e-2")
    result = run_cli("export", str(run_dir), "--merged-16bit")
    assert result.returncode == 0, result.stdout + result.stderr
    check = assert_merged_equals_base_plus_adapter(run_dir)
    assert check["same_next_token"]


def test_model_card_has_hub_metadata_and_the_facts(tiny_run):
    if not (tiny_run / "merged" / "README.md").is_file():
        assert run_cli("export", str(tiny_run)).returncode == 0
    card = ModelCard.load(tiny_run / "merged" / "README.md")
    assert card.data.license == "other" and card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "text-generation" and "lora" in card.data.tags
    assert card.data.base_model is None  # a local folder is no Hub id; the Hub would reject it
    text = card.text
    for fact in ("| dataset | sample", "| profile | cpu", "r=16, alpha=16", "lr 0.03", "training time",
                 "tokens/s", "## Intended use", "AutoModelForCausalLM.from_pretrained(\"USER/NAME\")", "steps/min"):
        assert fact in text, fact


def test_model_card_for_a_hub_base_names_it_and_its_license():
    assert model_card.license_of("unsloth/Llama-3.2-1B-Instruct-bnb-4bit", "/nonexistent") == "llama3.2"
    assert model_card.license_of("HuggingFaceTB/SmolLM2-135M-Instruct", "/nonexistent") == "apache-2.0"
    assert model_card.is_hub_id("unsloth/Llama-3.2-1B-Instruct") and not model_card.is_hub_id("./models/x")


def test_push_creates_the_repo_and_uploads_merged_model_and_card(tiny_run, hub, tmp_path):
    result = run_cli("export", str(tiny_run), "--push", "alice/tiny-export", "--private",
                     env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    repo = hub.repos["alice/tiny-export"]
    assert repo["private"]
    local = {p.name: p.read_bytes() for p in (tiny_run / "merged").iterdir()}
    assert repo["files"] == local  # every file, byte for byte, README.md (the card) included
    assert b"alice/tiny-export" in repo["files"]["README.md"]
    assert json.loads((tiny_run / "export.json").read_text())["push"]["repo"] == "alice/tiny-export"
    assert_no_token(tiny_run, tmp_path, result)


@pytest.mark.slow
def test_push_resumes_after_a_failure_without_uploading_again(tiny_run, hub, tmp_path):
    hub.fail_uploads = 1  # one storage error: huggingface_hub retries that upload itself
    hub.fail_commits = 10  # then the commit keeps failing: our retries give up
    first = run_cli("export", str(tiny_run), "--push", "alice/resume", env=hub_env(hub, tmp_path))
    out = first.stdout + first.stderr
    assert first.returncode == 2 and "Traceback" not in out, out
    assert "failed 3 times" in out and "Run the same command again" in out and "trying again in 2 s" in out
    assert hub.repos["alice/resume"]["files"] == {}  # nothing committed
    uploaded_before = list(hub.uploads)
    assert uploaded_before  # the large files reached LFS storage before the commit failed
    local_before = {p.name: p.read_bytes() for p in (tiny_run / "merged").iterdir()}
    assert local_before  # local artifacts are untouched by a failed push
    hub.fail_commits = 1  # the network is better now: one more failure, retried within the run
    second = run_cli("export", str(tiny_run), "--push", "alice/resume", env=hub_env(hub, tmp_path))
    assert second.returncode == 0, second.stdout + second.stderr
    assert sorted(hub.uploads) == sorted(uploaded_before)  # nothing stored before was uploaded again
    assert hub.repos["alice/resume"]["files"] == {p.name: p.read_bytes() for p in (tiny_run / "merged").iterdir()}
    assert_no_token(tiny_run, tmp_path, first, second)


def test_adapter_only_push(tiny_run, hub, tmp_path):
    result = run_cli("export", str(tiny_run), "--push", "alice/adapter", "--adapter-only", env=hub_env(hub, tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    files = hub.repos["alice/adapter"]["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(files)
    assert "training_args.bin" not in files and "config.json" not in files
    assert ModelCard(files["README.md"].decode()).data.library_name == "peft"


@pytest.mark.parametrize("setup, args, fragments", [
    ("none", [], ["no Hugging Face token found", "HF_TOKEN", ".hftoken"]),
    ("bad", [], ["rejected the token", "settings/tokens"]),
    ("file", ["--token-file", "{tmp}/tok"], []),
    ("notebook", [], []),
])
def test_token_sources_and_bad_tokens(tiny_run, hub, tmp_path, setup, args, fragments):
    cwd = tmp_path / "notebooks"
    cwd.mkdir()
    (tmp_path / "tok").write_text(TOKEN + "\n")
    if setup == "notebook":
        (cwd / ".hftoken").write_text(TOKEN)
    token = {"bad": "hf_wrongwrongwrong"}.get(setup)
    result = run_cli("export", str(tiny_run), "--push", f"alice/tok-{setup}",
                     *[a.format(tmp=tmp_path) for a in args], cwd=cwd, env=hub_env(hub, tmp_path, token=token))
    out = result.stdout + result.stderr
    if fragments:
        assert result.returncode == 2 and "Traceback" not in out, out
        assert all(f in out for f in fragments), out
        assert "hf_wrongwrongwrong" not in out
        assert f"alice/tok-{setup}" not in hub.repos
    else:
        assert result.returncode == 0, out
        assert f"alice/tok-{setup}" in hub.repos
    assert_no_token(tiny_run, tmp_path / "hf-home", result)


@pytest.mark.parametrize("args, fragments", [
    (["{missing}"], ["does not exist"]),
    (["{run}", "--gguf", "q3_x"], ["--gguf q3_x is not a GGUF type", "f16, q8_0, q4_k_m"]),
    (["{run}", "--push", "not a repo"], ["is not a Hub repository name", "USER/NAME"]),
    (["{run}", "--push", "a/b/c"], ["is not a Hub repository name"]),
    (["{run}", "--adapter-only"], ["there is no --push"]),
    (["{unfinished}"], ["has no finished adapter yet (status: interrupted)"]),
])
def test_bad_inputs_exit_2_naming_the_fix(tiny_run, tmp_path, args, fragments):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.toml").write_text("")
    (unfinished / "status.json").write_text('{"state": "interrupted"}')
    paths = {"missing": tmp_path / "nope", "run": tiny_run, "unfinished": unfinished}
    result = run_cli("export", *[a.format(**paths) for a in args])
    out = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in out, out
    assert all(f in out for f in fragments), out
    assert not (unfinished / "merged").exists()


def assert_no_token(run_dir, other_dir, *results):
    """The token appears in no output and in no file the export wrote (run dir, HF_HOME)."""
    for result in results:
        assert TOKEN not in result.stdout + result.stderr
    for folder in (run_dir, other_dir):
        for path in folder.rglob("*"):
            if path.is_file():
                assert TOKEN.encode() not in path.read_bytes(), path
