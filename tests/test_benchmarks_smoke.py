"""`python benchmarks/run.py --quick` runs end to end and prints its tables (no timing assertions:
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
    for column in ("Sopcos (wasm)", "plain Python", "cedarpy", "regorus", "OPA (Go)", "target"):
        assert column in header
    for metric in METRICS:
        row = next((line for line in lines if line.strip().startswith(metric)), None)
        assert row is not None, f"no row for {metric!r}:\n{done.stdout}"
        assert any(ch.isdigit() for ch in row.removeprefix(metric)), row
    assert "all implementations agree" in done.stdout
    assert "DISAGREE" not in done.stdout
    # the scaling table: a row per size for Sopcos and for each peer (figures, or "not installed")
    for size in ("10", "100", "1,000", "4,096"):
        for engine in ("Sopcos (wasm)", "cedarpy", "regorus", "OPA (Go)"):
            row = next((line for line in lines if line.split("  ")[0] == size and engine in line), None)
            assert row is not None and ("MiB" in row or "not installed" in row), (size, engine, done.stdout)
    # the start-up table: each command line's trivial run, beside the interpreter's
    for command in ("python -c pass", "scc check", "scc compile", "synapse eval"):
        row = next((line for line in lines if line.startswith(command)), None)
        assert row is not None and " ms" in row, (command, done.stdout)
