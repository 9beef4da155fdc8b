"""The README stays true: its first two commands are what CI runs, and its GPU table is the committed records."""

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import verified_table  # noqa: E402


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
    assert ci[-3:] == ["export PYTHONUNBUFFERED=1", 'pip install -q -e ".[test]"', "pytest"]
    assert "bash scripts/install_llama_cpp.sh" in ci
    assert ci.index("bash scripts/install_llama_cpp.sh") < ci.index('pip install -q -e ".[test]"')
    # On a machine it has set up, plain pytest runs the tests (the Development section says so).
    development = (ROOT / "README.md").read_text().split("## Development", 1)[1].split("\n## ", 1)[0]
    assert "`. .venv/bin/activate && pytest`" in development


def test_verified_table_is_generated_from_the_records():
    readme = (ROOT / "README.md").read_text()
    assert verified_table.readme_with_table(readme) == readme, "run: python benchmarks/verified_table.py --write"


def test_gpu_records_say_what_was_measured():
    records = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("*.json")]
    assert records
    for record in records:
        assert {"test", "passed", "date", "gpu", "driver", "versions"} <= set(record)
        assert record["versions"]["torch"] and record["versions"]["transformers"]
