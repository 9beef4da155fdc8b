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
    assert tests == 'pip install -e ".[test]" && pytest'
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()


def test_verified_table_is_generated_from_the_records():
    readme = (ROOT / "README.md").read_text()
    assert verified_table.readme_with_table(readme) == readme, "run: python benchmarks/verified_table.py --write"


def test_gpu_records_say_what_was_measured():
    records = [json.loads(p.read_text()) for p in (ROOT / "benchmarks" / "results").glob("*.json")]
    assert records
    for record in records:
        assert {"test", "passed", "date", "gpu", "driver", "versions"} <= set(record)
        assert record["versions"]["torch"] and record["versions"]["transformers"]
