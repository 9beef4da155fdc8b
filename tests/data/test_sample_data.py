"""The bundled sample dataset is what scripts/make_sample_data.py generates (it is never edited by hand)."""

import subprocess
import sys

from tests.helpers import ROOT


def test_sample_data_is_up_to_date():
    result = subprocess.run([sys.executable, "scripts/make_sample_data.py", "--check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is up to date (320 rows)" in result.stdout
