"""The README stays true and short: its first two commands are what CI runs, it fits on a screen and leads to every
guide in docs/, every relative link there resolves, and the GPU table of docs/benchmarks.md is the committed records."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import verified_table  # noqa: E402

DOCS = ROOT / "docs"
# [text](target): the text may wrap onto the next line; the target has no spaces.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


INSTALL_TESTS = 'pip install -q -e ".[test]" --constraint scripts/constraints-tests.txt'


def first_commands():
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    return [line.split("#")[0].strip() for line in block.strip().splitlines()]


def test_readme_starts_with_setup_and_test_commands_and_ci_runs_the_test_command():
    setup, tests = first_commands()[:2]
    assert setup == "pip install -e . && python -m trainer"
    # CI runs `bash .ci/run`: the README's test command is the same script, which installs what the tests need
    # (Chromium, ShellCheck, a C++ compiler, llama.cpp built for any CPU) and ends with the tests.
    assert tests == "bash .ci/run"
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-3:] == ["export PYTHONUNBUFFERED=1", INSTALL_TESTS, "pytest"]
    assert "bash scripts/install_llama_cpp.sh" in ci
    assert ci.index("bash scripts/install_llama_cpp.sh") < ci.index(INSTALL_TESTS)
    # On a machine it has set up, plain pytest runs the tests (the development guide says so).
    assert "`. .venv/bin/activate && pytest`" in (DOCS / "development.md").read_text()


def test_readme_fits_on_a_screen_and_links_every_guide_on_its_first():
    readme = (ROOT / "README.md").read_text().splitlines()
    assert len(readme) <= 150, f"README.md has {len(readme)} lines: move the detail into docs/"
    first_screen = {target.split("#")[0] for target in LINK.findall("\n".join(readme[:40]))}
    guides = {f"docs/{path.name}" for path in DOCS.glob("*.md")}
    assert guides, "docs/ holds the guides"
    assert guides <= first_screen, f"not linked from the README's first 40 lines: {sorted(guides - first_screen)}"


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation but hyphens dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_relative_links_in_the_readme_and_the_guides_point_to_what_exists():
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists() or (anchor and linked.suffix == ".md" and anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_verified_table_is_generated_from_the_records():
    page = verified_table.PAGE.read_text()
    assert verified_table.page_with_table(page) == page, "run: python benchmarks/verified_table.py --write"


def test_gpu_records_say_what_was_measured():
    records = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("*.json")]
    assert records
    for record in records:
        assert {"test", "passed", "date", "gpu", "driver", "versions"} <= set(record)
        assert record["versions"]["torch"] and record["versions"]["transformers"]
