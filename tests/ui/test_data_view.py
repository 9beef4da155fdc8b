"""The data preview's HTML and the Compare tab's eval report, in process: a real tokenizer's chat template rendered,
its roles marked and its trained span highlighted."""

from __future__ import annotations

import json

from trainer.data.preview import segments
from trainer.data.render import ControlTokens, encode, render
from trainer.ui.compare_tab import eval_report
from trainer.ui.data_view import marked


def test_roles_and_control_tokens_are_marked_and_the_answer_is_the_trained_span(smol_tokenizer):
    conversation = [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "It is 4."}]
    ((ids, mask),) = encode(smol_tokenizer, [render(smol_tokenizer, conversation, ControlTokens(smol_tokenizer),
                                                    "26 Jul 2024", False, None)])
    parts = segments(smol_tokenizer, ids.tolist(), mask.tolist())
    assert [kind for _, kind in parts] == ["context", "trained"] and parts[1][0].startswith("It is 4."), parts
    shown = "".join(marked(text, kind, ["<|im_start|>", "<|im_end|>"]) for text, kind in parts)
    assert '<span class="dp-role"' in shown and ">user</span>" in shown and ">assistant</span>" in shown, shown
    assert '<span class="dp-special"' in shown and "&lt;|im_start|&gt;" in shown, shown
    assert '<span class="dp-trained" style="background:#d1fae5; color:#065f46; font-weight:600; border-radius:3px">' \
           "It is 4." in shown, shown
    assert "&lt;b&gt;x&lt;/b&gt;" in marked("<b>x</b>", "context", [])  # the data's text, never raw HTML


def test_the_compare_tab_shows_the_runs_eval_report_or_how_to_make_one(tmp_path):
    run = tmp_path / "run-a"
    (run / "eval").mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "completed"}))
    assert "No eval report for `run-a` yet: `python -m trainer eval" in eval_report(tmp_path, "run-a")
    (run / "eval" / "report.md").write_text("# Eval of run-a\n\n| | base | tuned |\n")
    for choice in ("run-a", str(run), "run-a/checkpoint-3"):  # by id, by folder, a checkpoint of it
        shown = eval_report(tmp_path, choice)
        assert shown.endswith("# Eval of run-a\n\n| | base | tuned |\n") and "eval.json" in shown, (choice, shown)
    assert eval_report(tmp_path, "base model (of the other side)").startswith("Pick a run")
