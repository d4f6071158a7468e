"""`python benchmarks/run.py --quick` runs end to end and prints its table (no timing assertions:
performance targets live in the benchmark itself, not in tests)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
METRICS = ("compile, 10 rules", "compile, 1,000 rules", "10 rules/5 inputs p50", "speed-up over cedarpy",
           "10 rules/5 inputs p99", "10 rules/5 inputs throughput", "1,000 rules p50", "1,000 rules p99",
           "1,000 rules throughput", "replay 1,000 lines")


def test_quick_benchmark_prints_the_table():
    done = subprocess.run([sys.executable, "benchmarks/run.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("metric"))
    for column in ("Sopcos (wasm)", "plain Python", "cedarpy", "target"):
        assert column in header
    for metric in METRICS:
        row = next((line for line in lines if line.strip().startswith(metric)), None)
        assert row is not None, f"no row for {metric!r}:\n{done.stdout}"
        assert any(ch.isdigit() for ch in row.removeprefix(metric)), row
    assert "all three implementations agree" in done.stdout
