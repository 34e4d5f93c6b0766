"""The test run itself: what it leaves out is said in its own output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def test_a_run_without_the_corpus_says_so_in_its_summary(tmp_path: Path) -> None:
    environment = {**os.environ, "TRAILSIGHT_CORPUS": str(tmp_path / "no-corpus")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-p", "no:cacheprovider", "-o",
                          "addopts=", "-q", str(TESTS / "test_roundtrip.py"), "-k", "corpus_round_trips"],
                         capture_output=True, text=True, env=environment, cwd=TESTS.parent, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:]
    assert "real CloudTrail samples not tested" in run.stdout
    assert f"corpus test(s) skipped: no corpus at {tmp_path / 'no-corpus'}" in run.stdout
