"""The UI's data preview: what `trainer data` found (its facts as JSON, data/preview.py) drawn as HTML: counts,
warnings, and the first examples with roles marked and the trained spans highlighted."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from trainer.errors import UserError

ROLES = ("system", "developer", "user", "assistant", "model", "tool", "ipython")
STYLE = {  # inline: the page's theme leaves them alone
    "trained": "background:#d1fae5; color:#065f46; font-weight:600; border-radius:3px",
    "context": "color:#6b7280",
    "rejected": "background:#fee2e2; color:#991b1b; font-weight:600; border-radius:3px",
    "label": "font-weight:700",
    "special": "font-size:10px; color:#6b7280; background:#f3f4f6; border:1px solid #e5e7eb; border-radius:3px; "
               "padding:0 2px",
    "role": "font-size:11px; font-weight:700; color:#1e40af; background:#dbeafe; border-radius:3px; padding:0 4px; "
            "text-transform:uppercase",
}
BOX = "border-radius:6px; padding:8px 10px; margin:6px 0"


def span(text: str, kind: str, tag: str = "span") -> str:
    return f'<{tag} class="dp-{kind}" style="{STYLE[kind]}">{escape(text)}</{tag}>'


def marked(text: str, kind: str, special: list[str]) -> str:
    """A span of the rendered text: the template's control tokens as small badges, and a role name right after one
    (`<|im_start|>user`, `<|start_header_id|>assistant<|end_header_id|>`) as a role badge."""
    if not special:
        return span(text, kind)
    pieces = re.split("(" + "|".join(re.escape(t) for t in special) + ")", text)
    out, after_special = [], False
    for piece in pieces:
        if piece in special:
            out.append(span(piece, "special"))
            after_special = True
            continue
        role = re.match(rf"(\s*)({'|'.join(ROLES)})\b", piece) if after_special else None
        if role:
            out.append(escape(role[1]) + span(role[2], "role"))
            piece = piece[role.end():]
        if piece:
            out.append(span(piece, kind))
        after_special = False
    return "".join(out)


def html(facts: dict[str, Any]) -> str:
    """The preview as HTML: what was read, counts, warnings, why it can't train, the examples."""
    special = facts.get("special_tokens", [])
    parts = ['<div id="data-preview" style="font-size:13px; line-height:1.45">',
             f"<div><b>{escape(facts['dataset'])}</b>: {escape(facts['summary'])}, tokenizer of "
             f"<code>{escape(facts['model'])}</code></div>",
             f"<div style=\"color:#6b7280\">Fields read: {escape(', '.join(facts['fields_read']) or 'none')}; not "
             f"used: {escape(', '.join(facts['fields_unused']) or 'none')}</div>"]
    cells = "".join(f'<td style="padding:2px 14px 2px 0; border:none"><span style="color:#6b7280">{escape(name)}'
                    f"</span><br><b>{escape(str(value))}</b></td>" for name, value in facts["counts"].items())
    parts.append(f'<table id="data-counts" style="margin:6px 0; border:none; width:auto"><tr>{cells}</tr></table>')
    if facts["problem"]:
        problem = facts["problem"]
        parts.append(f'<div id="data-problem" style="{BOX}; background:#fee2e2; color:#991b1b"><b>Too few to train '
                     f"on:</b> {escape(problem['message'])}<br><b>fix:</b> {escape(problem['hint'])}</div>")
    notes = [*facts["warnings"], *([facts["date"]] if facts.get("date") else [])]
    if notes:
        items = "".join(f"<li>{escape(note)}</li>" for note in notes)
        parts.append(f'<ul id="data-warnings" style="{BOX}; background:#fef3c7; color:#92400e; padding-left:24px">'
                     f"{items}</ul>")
    legend = " ".join(span(name, kind) for name, kind in (("trained", "trained"), ("context only", "context"),
                                                            ("role", "role"), ("<control token>", "special")))
    parts.append(f"<div style=\"margin-top:6px\">The first examples as the trainer gets them: {legend}</div>")
    for example in facts["examples"]:
        body = "".join(marked(text, kind, special) for text, kind in example["segments"])
        parts.append(f'<details open class="data-example" style="margin:6px 0"><summary><b>'
                     f"{escape(example['title'])}</b></summary><pre style=\"white-space:pre-wrap; font-size:12px; "
                     f'margin:4px 0; padding:8px; border:1px solid #e5e7eb; border-radius:6px">{body}</pre></details>')
    return "".join(parts) + "</div>"


def error_html(error: UserError) -> str:
    """`trainer data`'s UserError: the message and its fix, as the terminal says them."""
    hint = f"<br><b>fix:</b> {escape(error.hint)}" if error.hint else ""
    return (f'<div id="data-error" style="{BOX}; background:#fee2e2; color:#991b1b"><b>error:</b> '
            f"{escape(error.message)}{hint}</div>")


def output_html(output: str) -> str:
    """What the command printed, when it ended without its facts or a UserError (a bug: its traceback says which)."""
    return f'<pre style="white-space:pre-wrap; font-size:12px">{escape(output)}</pre>'
