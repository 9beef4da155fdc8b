"""The real CLI in a subprocess: exit codes, messages that name the cause and the fix, nothing half-written."""

import json
import os
import re

import pytest
import torch

from tests.helpers import assert_user_error, run_cli
from trainer.runs import RunDir

SAMPLE_ROW = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}]}



def test_help_lists_commands_and_stays_light():
    result = run_cli("--help")
    commands = "{train,profiles,data,chat,eval,ui,serve,bench,export,doctor,runs}"
    assert result.returncode == 0 and commands in result.stdout
    train_help = run_cli("train", "--help")
    for flag in ("--profile", "--model", "--dataset", "--format", "--max-steps", "--epochs", "--run-dir", "--set",
                 "--detach"):
        assert flag in train_help.stdout


def test_help_imports_no_ml_libraries():
    import subprocess
    import sys

    code = ("import sys; from trainer import cli; cli.parser().format_help(); "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'unsloth', 'datasets') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_unsloth_can_be_imported_first(shared_tiny_llama):
    """Everything before the engine choice (config, profile, data checks) leaves transformers, peft and trl
    unimported, so the unsloth engine can patch them on import."""
    import subprocess
    import sys

    code = ("import sys; from trainer import profiles; from trainer.train import methods; "
            "c, _ = profiles.resolve('cpu'); methods.of(c).load(c); "
            # a card's profile: the fit and the plan told before the start (trainer/fit/) come before the engine too
            "from trainer.fit import budget, tell; "
            f"g, _ = profiles.resolve('rtx3070', ['dataset=sample', 'model.name={shared_tiny_llama}']); "
            "from trainer.train.recipe import check_family; check_family(g); "
            "assert tell.tokenizer_file(g.model.name) is not None; "
            "tell.prediction(g, methods.of(g).load(g), budget.budget(g)); "
            "print(sorted(m for m in ('transformers', 'trl', 'peft') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_profiles_table_and_one_profile():
    result = run_cli("profiles")
    assert result.returncode == 0
    for name in ("cpu", "rtx2060s", "rtx3070", "quadro-rtx5000"):
        assert name in result.stdout
    assert "auto → cpu" in result.stdout
    one = run_cli("profiles", "quadro-rtx5000")
    assert one.returncode == 0 and "unsloth/Llama-3.2-3B-Instruct-bnb-4bit" in one.stdout
    assert "train.grad_accum_steps" in one.stdout


@pytest.mark.parametrize("args, fragments", [
    (["--profile", "rtx4090"], ["unknown profile 'rtx4090'", "Valid profiles: auto, a4000, a5000, cpu"]),
    (["profiles", "nope"], ["unknown profile 'nope'"]),
    (["--set", "batch=4"], ["unknown setting 'batch'", "train.micro_batch_size"]),
    (["--set", "=4"], ["--set =4: expected KEY=VALUE", "e.g. --set learning_rate=1e-4"]),
    (["--set", "learning_rat=1e-4"], ["unknown setting 'learning_rat'", "Did you mean train.learning_rate?",
                                      "--set help lists every setting"]),
    (["--set", "micro_batch_size=-1"], ["train.micro_batch_size must be at least 1", "fix: Give a value in range, "
                                        "e.g. the built-in default: --set micro_batch_size=2"]),
    (["--set", "dtype=fp8"], ["model.dtype = 'fp8' is not one of", "fix: Use one of them, e.g. --set dtype=auto."]),
    (["--set", "learning_rate=fast"], ["train.learning_rate = 'fast' is not a valid float",
                                       "fix: Give a number, e.g. --set learning_rate=0.0002."]),
    (["--max-steps", "-3"], ["train.max_steps must not be negative", "the built-in default: --max-steps 60."]),
    (["--profile", "rtx3070"], ["loads the model in 4-bit, which needs an NVIDIA GPU", "--profile cpu"]),
    (["--profile", "cpu", "--set", "optimizer=adamw_8bit"], ["needs an NVIDIA GPU", "optimizer=adamw_torch"]),
    (["--profile", "cpu", "--set", "engine=unsloth", "--dataset", "sample"], ["engine=unsloth needs an NVIDIA GPU"]),
    pytest.param(["--profile", "cpu", "--model", "./no/such/model"], ["neither an existing folder nor a Hub id"],
                 marks=pytest.mark.slow),  # reached once the training libraries have loaded
])
def test_bad_flags_and_profiles(args, fragments, tmp_path):
    result = run_cli(*args, "--set", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(os.name == "nt", reason="the driver's stand-in is a shell script")
def test_a_card_that_torch_cannot_use_is_named_with_the_fix(tmp_path):
    """The usual slip of a Windows install: the NVIDIA driver lists the card, torch is a CPU-only build. auto's demo
    says so; a GPU profile is refused for that cause, not for "no GPU". nvidia-smi is a stand-in script printing what
    the driver's prints for `--query-gpu=driver_version,name --format=csv,noheader`."""
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\necho "560.94, NVIDIA GeForce RTX 3070"\n')
    smi.chmod(0o755)
    env = {"PATH": f"{smi.parent}{os.pathsep}{os.environ['PATH']}"}
    demo = run_cli("--dataset", "sample", "--dry-run", env=env, cwd=tmp_path)
    said = " ".join(demo.stdout.split())
    assert demo.returncode == 0, said
    assert ("running the offline CPU demo (nvidia-smi lists the card NVIDIA GeForce RTX 3070, but torch "
            f"{torch.__version__} is a CPU-only build. Run python -m trainer doctor: it says how to install the CUDA "
            "build)") in said
    refused = run_cli("--profile", "rtx3070", "--set", f"runs_root={tmp_path / 'runs'}", env=env, cwd=tmp_path)
    assert_user_error(refused, "nvidia-smi lists the card NVIDIA GeForce RTX 3070, but torch",
                      "is a CPU-only build, so profile rtx3070 cannot train on it",
                      "Run python -m trainer doctor: it says how to install the CUDA build; --profile cpu runs")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("command", ["serve", "ui"])
def test_a_port_out_of_range_is_refused_before_anything_starts(command, tmp_path):
    result = run_cli(command, str(tmp_path), "--port", "99999")
    assert result.returncode == 2 and "argument --port: 99999 is not a port number: give 0 to 65535" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("argv", [["chat", "--run", "runs/x"], ["--steps", "5"]])
def test_an_argument_a_command_does_not_take_is_said_with_that_commands_usage(argv):
    """argparse says it under the top parser's usage, which names the commands and none of their arguments."""
    result = run_cli(*argv)
    command = "train" if argv[0].startswith("-") else argv[0]  # train is the default command
    assert result.returncode == 2
    assert f"usage: python -m trainer {command} " in result.stderr
    assert f"python -m trainer {command}: error: unrecognized arguments: {argv[-2]}" in result.stderr
    assert f"python -m trainer {command} --help lists what it takes" in result.stderr


def test_an_unknown_setting_is_answered_with_the_near_one_not_every_name():
    result = run_cli("--set", "learning_rat=1e-4")
    assert_user_error(result, "Did you mean train.learning_rate?")
    assert "train.warmup_steps" not in result.stdout and "lora.dropout" not in result.stdout


def test_chat_with_a_run_folder_that_is_not_there_says_so_and_how_to_list_runs(tmp_path):
    """A typo'd run folder is a local path that does not exist, not a Hub id to fetch ("runs/nope" looks like one)."""
    run = tmp_path / "runs" / "20261206-101010-cpu"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "completed", "profile": "cpu"}))
    typo = run_cli("chat", "runs/20261206-101010-cp", cwd=tmp_path)
    assert_user_error(typo, "runs/20261206-101010-cp is neither an existing folder nor a Hub id: there is no folder "
                      "'20261206-101010-cp' in runs/",
                      "Did you mean runs/20261206-101010-cpu?", "`python -m trainer runs` lists the runs in runs/")
    elsewhere = run_cli("chat", str(tmp_path / "runs" / "nope"), cwd=tmp_path)
    assert_user_error(elsewhere, f"`python -m trainer runs --runs-root {tmp_path / 'runs'}` lists the runs")
    for result in (typo, elsewhere):  # not fetched from the Hub
        assert "could not load" not in result.stdout and "network" not in result.stdout
    (tmp_path / "empty").mkdir()  # chat and serve take the folder as their target: the fix names no --model
    assert_user_error(run_cli("chat", "empty", cwd=tmp_path), "empty is not a model folder (it has no config.json)",
                      "Give the folder a model was saved in (its config.json beside the weights), or a Hub id")


def test_bad_profile_file_names_file_and_line(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text("[train]\nmicro_batch_size = 4\nlearning_rate = \n")
    assert_user_error(run_cli("--profile", str(bad)), str(bad), "is not valid TOML", "line 3")
    bad.write_text("[train]\nbatch_size = 4\n")
    assert_user_error(run_cli("--profile", str(bad)), "unknown field 'batch_size' in [train]", "micro_batch_size")
    bad.write_text("[preference]\nbatch = 2\n")
    assert_user_error(run_cli("--profile", str(bad), "--method", "dpo"), "[preference]: unknown setting 'batch'",
                      "train.micro_batch_size")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("content, fragments", [
    ("", ["is empty: there are no rows to train on", "fix: Save your examples in it, one per row"]),
    ("\n\n", ["is empty: there are no rows to train on", "fix: Save your examples in it, one per row"]),
    ('{"conversations": []}\n{"oops"\n', ["line 2 of", "is not valid JSON (Expecting ':' delimiter at column 8)"]),
    (json.dumps({"prompt": "a", "answer": "b"}) + "\n", ["first row has the fields answer, prompt", "--format"]),
    (json.dumps({"conversations": [{"from": "human", "value": "a"}, {"from": "human", "value": "b"}]}) + "\n",
     ["line 1 of", "roles don't alternate user/assistant (user, user)", "skip_invalid_rows=true"]),
    (json.dumps(SAMPLE_ROW) + "\n" + json.dumps({"conversations": [{"from": "human"}]}) + "\n",
     ["line 2 of", "turn 1 needs the fields 'from' and 'value'"]),
    pytest.param((json.dumps(SAMPLE_ROW) + "\n") * 3,
                 ["has 3 rows to train on, but one optimizer step needs micro_batch_size x grad_accum_steps = 4",
                  "take fewer rows per step (--set micro_batch_size=3)"],
                 marks=pytest.mark.slow),  # reached once the rows are rendered with the model's tokenizer
    ('{"text": "ok"}\n{"text": "Caf\xe9"}\n'.encode("cp1252").decode("latin-1"),
     ["line 2 of", "is not UTF-8 (byte 0xe9 at column 14)", "Re-save the file as UTF-8"]),
])
def test_bad_datasets_exit_2_before_anything_is_written(tmp_path, content, fragments):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content.encode("latin-1"))
    result = run_cli("--profile", "cpu", "--dataset", str(path), "--set", "eval_size=0",
                     "--set", f"runs_root={tmp_path / 'runs'}", cwd=tmp_path)
    assert_user_error(result, *fragments)
    assert not (tmp_path / "runs").exists()


def test_missing_dataset_file_and_forced_format(tmp_path):
    assert_user_error(run_cli("--profile", "cpu", "--dataset", str(tmp_path / "none.jsonl")), "does not exist")
    path = write_jsonl(tmp_path / "d.jsonl", [SAMPLE_ROW] * 8)
    assert_user_error(run_cli("--profile", "cpu", "--dataset", str(path), "--format", "alpaca"),
                      "has no 'instruction' field (format alpaca needs instruction, output)")


@pytest.mark.slow
def test_hub_dataset_unreachable_is_a_clear_error(tmp_path):
    result = run_cli("--profile", "cpu", "--dataset", "no-such-org/no-such-dataset", cwd=tmp_path)
    assert_user_error(result, "could not load dataset 'no-such-org/no-such-dataset'", "--dataset sample")


@pytest.mark.slow
def test_hub_datasets_are_read_for_sft_and_for_preference_pairs(hub, tmp_path, shared_tiny_llama):
    """datasets.load_dataset against the local Hub (tests/hub_server.py): a JSON Lines repo of conversations for SFT,
    a Parquet repo of pairs for DPO; a repo that is not there is exit 2."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.helpers import hub_env

    chats = [{"messages": [{"role": "user", "content": f"Name a colour, {i}."},
                           {"role": "assistant", "content": f"Teal number {i}."}]} for i in range(8)]
    hub.datasets["alice/chats"] = {"data/train.jsonl": "".join(json.dumps(r) + "\n" for r in chats).encode()}
    pairs = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([{"prompt": f"2 + {i}?", "chosen": f"{2 + i}, exactly", "rejected": "no idea"}
                                         for i in range(8)]), pairs)
    hub.datasets["alice/pairs"] = {"train.parquet": pairs.getvalue()}
    env = hub_env(hub, tmp_path, token=None)  # public datasets: no token needed
    common = ("data", "--profile", "cpu", "--model", str(shared_tiny_llama), "-n", "1")
    sft = run_cli(*common, "--dataset", "alice/chats", env=env)
    assert sft.returncode == 0, sft.stdout + sft.stderr
    assert "Teal number" in sft.stdout
    dpo = run_cli(*common, "--method", "dpo", "--dataset", "alice/pairs", env=env)
    assert dpo.returncode == 0, dpo.stdout + dpo.stderr
    assert "exactly" in dpo.stdout and "no idea" in dpo.stdout
    fetched = [r for r in hub.requests if r.startswith("GET /datasets/")]
    assert [r.rsplit("/", 1)[-1] for r in fetched] == ["train.jsonl", "train.parquet"]
    assert_user_error(run_cli(*common, "--dataset", "alice/no-such-pairs", env=env),
                      "could not load dataset 'alice/no-such-pairs'", "--dataset sample")


@pytest.mark.slow
def test_unwritable_run_dir(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    result = run_cli("--profile", "cpu", "--run-dir", str(tmp_path / "file" / "run"), "--max-steps", "1")
    assert_user_error(result, f"cannot create the run directory {tmp_path / 'file' / 'run'}: Not a directory")


@pytest.mark.slow
def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("precious")
    result = run_cli("--profile", "cpu", "--run-dir", str(tmp_path / "run"), "--max-steps", "1")
    assert_user_error(result, "already exists and is not empty")
    assert (tmp_path / "run" / "keep.txt").read_text() == "precious"


@pytest.mark.slow
def test_data_command_highlights_trained_tokens(smollm2_dir):
    result = run_cli("data", "--profile", "cpu", "-n", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "train example 1" in result.stdout and "train example 2" in result.stdout
    assert "trained tokens:" in result.stdout and "Answer:" in result.stdout


@pytest.mark.slow
def test_a_small_file_keeps_rows_to_train_and_a_too_small_one_is_inspected(tmp_path, shared_tiny_llama):
    """The cpu profile holds out 16 rows for eval (none below 20 rows) and trains 4 per step."""
    six = write_jsonl(tmp_path / "six.jsonl", [SAMPLE_ROW] * 6)
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", str(six), "--max-steps", "1",
                     "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 rows: no eval hold-out (eval_size asks for 16) below 20 rows, every row trains" in result.stdout
    assert "max_steps=1 (profile cpu) trains at most 4 of the 6 train rows" in result.stdout
    assert "Tokenized 4 train / 0 eval rows" in result.stdout

    three = write_jsonl(tmp_path / "three.jsonl", [SAMPLE_ROW] * 3)
    shown = run_cli("data", "--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", str(three))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "train example 3" in shown.stdout and "no eval hold-out" in shown.stdout
    assert "Too few rows to train on: " in shown.stdout and "(--set micro_batch_size=3)" in shown.stdout
    assert "--set grad_accum_steps" not in shown.stdout  # already 1 in the cpu profile: never suggested
    refused = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", str(three),
                      "--run-dir", str(tmp_path / "refused"))
    assert_user_error(refused, "has 3 rows to train on", "--set micro_batch_size=3")


@pytest.mark.slow
def test_data_shows_the_date_and_counts_typed_control_tokens(tmp_path, real_llama):
    """A compressed file with a byte-order mark, on the real Llama 3.2 tokenizer."""
    import gzip

    typed = {"conversations": [{"from": "human", "value": "What is <|eot_id|>?"}, {"from": "gpt", "value": "A token."}]}
    rows = [SAMPLE_ROW] * 7 + [typed]
    path = tmp_path / "data.jsonl.gz"
    path.write_bytes(gzip.compress(("\ufeff" + "".join(json.dumps(r) + "\n" for r in rows)).encode()))
    for settings, how in (([], "encoded as control tokens; --set control_tokens_as_text=true encodes them as plain "
                               "text"), (["--set", "control_tokens_as_text=true"], "encoded as plain text")):
        result = run_cli("data", "--profile", "cpu", "--model", str(real_llama), "--dataset", str(path),
                         "--set", "eval_size=0", "-n", "8", *settings)
        out = result.stdout
        assert result.returncode == 0, out + result.stderr
        assert "date_string = \"26 Jul 2024\"" in out and "Today Date: 26 Jul 2024" in out
        assert "1 rows spell a control token of the tokenizer in their text (such as <|eot_id|>): " + how in out
        assert "rows spelling a control token: 1" in out


def test_set_help_and_train_help_list_every_setting_from_the_schema():
    from trainer.config import SETTINGS

    listing = run_cli("--set", "help")
    assert listing.returncode == 0, listing.stdout
    train_help = run_cli("train", "--help").stdout
    for key in SETTINGS:
        assert key in listing.stdout and key in train_help
    assert "sft|dpo|orpo|kto, default sft" in listing.stdout and "int >= 1, default 2" in listing.stdout
    assert SETTINGS["train.learning_rate"].help in " ".join(listing.stdout.split())


def test_a_second_training_in_the_same_runs_root_is_refused(tmp_path):
    """One training at a time: the CLI refuses as the UI does, before anything is created (a fabricated run whose
    launch record names a live process: it is loading)."""
    import subprocess
    import sys
    from datetime import datetime

    from trainer.runs.run_dir import process_identity

    root = tmp_path / "runs"
    (root / "busy").mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        record = {"launched": datetime.now().isoformat(timespec="seconds"), "profile": "cpu",
                  **process_identity(sleeper.pid)}
        (root / "busy" / "launch.json").write_text(json.dumps(record))
        for extra in (["--run-dir", str(root / "second")], ["--set", f"runs_root={root}"],
                      ["--run-dir", str(root / "third"), "--detach"]):
            assert_user_error(run_cli("--profile", "cpu", "--dataset", "sample", *extra, cwd=tmp_path),
                              "run busy is training", "one training at a time", "Stop it first")
        assert sorted(p.name for p in root.iterdir()) == ["busy"]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_user_error_is_also_written_as_data_for_a_front_end(tmp_path):
    from trainer.commands import read_error

    error_file = tmp_path / "error.json"
    result = run_cli("--profile", "cpu", "--set", "learning_rate=3", env={"TRAINER_ERROR_FILE": str(error_file)})
    assert_user_error(result, "train.learning_rate = 3.0 is out of range")
    error = read_error(error_file)
    assert error is not None and error.message == "--set: train.learning_rate = 3.0 is out of range"
    assert error.hint == "Typical LoRA values: 1e-4 to 5e-4."
    assert read_error(tmp_path / "none.json") is None


@pytest.mark.slow
def test_a_short_run_on_own_data_says_what_is_true_of_it_and_what_comes_next(tmp_path, shared_tiny_llama):
    """auto's CPU profile on the user's own file: no "offline CPU demo"; 3 steps against the profile's eval every 20
    and warmup of 4: eval at the start and the end, the warmup clipped with a word; elapsed time with its unit; at
    the end, the commands to use the run; the runs list gives the run's speed as benchmark.json does."""
    data = write_jsonl(tmp_path / "mine.jsonl", [SAMPLE_ROW] * 24)
    run_dir = tmp_path / "runs" / "short"
    result = run_cli("--model", str(shared_tiny_llama), "--dataset", str(data), "--max-steps", "3",
                     "--set", "eval_size=4", "--run-dir", str(run_dir), cwd=tmp_path)
    out = " ".join(result.stdout.split())
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Profile cpu: no CUDA GPU detected: training {shared_tiny_llama} on the CPU, on {data}" in out
    assert "running the offline CPU demo" not in out
    assert "Eval loss on 4 held-out rows at the start and at the end" in out and "every 20 steps" not in out
    assert ("Warmup clipped to 0 steps (a fifth of this run's 3): warmup_steps=4 would leave the learning rate below "
            "0.001 for all of the run") in out
    assert "warmup_steps=0" in out and RunDir(run_dir).read_config().train.warmup_steps == 0  # what trained
    assert re.search(r"step 3/3 100% .* elapsed \d+ s ETA 0 s", out), out
    assert out.endswith(f"Next: chat with it: python -m trainer chat {run_dir} compare it with its base model: "
                        f"python -m trainer eval {run_dir} or all of it in the browser: python -m trainer ui"), out
    speed = json.loads((run_dir / "benchmark.json").read_text())["numbers"]["tokens_per_s"]
    listing = run_cli("runs", "--runs-root", str(tmp_path / "runs"))
    assert re.search(rf"short .* 3/3 .* {speed:,.0f} ", listing.stdout), listing.stdout
