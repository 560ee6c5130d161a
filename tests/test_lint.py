"""The code passes ruff (pyflakes, pycodestyle, bugbear) as configured in pyproject.toml."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_is_clean():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed (it is part of the dev extra)")
    packages = [p for p in ("privagg", "secagg", "he", "dp", "attacks", "tests", "benchmarks") if (ROOT / p).exists()]
    proc = subprocess.run([ruff, "check", "--output-format", "concise", *packages], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
