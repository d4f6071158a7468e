"""The solver's limits on the command line (scc/analysis/options.py): `scc analyze` and `scc diff` take
and check them the one same way."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from scc.analysis.options import add_solver_options, solver_limits
from scc.analysis.solve import DEFAULT_TIMEOUT
from scc.cli import main as scc

BOILER = str(Path(__file__).resolve().parents[2] / "policies" / "boiler-guard.json")


@pytest.mark.parametrize("command", [["analyze", BOILER], ["diff", BOILER, BOILER]], ids=["analyze", "diff"])
@pytest.mark.parametrize("limit", [["--timeout", "0"], ["--timeout", "nan"], ["--budget", "-1"]])
def test_a_limit_that_is_not_a_positive_number_of_seconds_is_a_usage_error(command, limit, capsys):
    assert scc([*command, *limit]) == 2
    err = capsys.readouterr().err
    assert "scc: error: --timeout and --budget must be positive numbers of seconds" in err
    assert "Traceback" not in err


def test_the_timeout_defaults_to_the_solvers_and_the_help_says_which():
    parser = argparse.ArgumentParser()
    add_solver_options(parser)
    assert solver_limits(parser.parse_args([])) == (DEFAULT_TIMEOUT, None)
    assert solver_limits(parser.parse_args(["--timeout", "2.5", "--budget", "30"])) == (2.5, 30.0)
    assert f"(default {DEFAULT_TIMEOUT:g})" in " ".join(parser.format_help().split())


@pytest.mark.slow
def test_building_the_analyze_and_diff_parsers_loads_no_solver():
    """The options are registered at start-up (issue 15): neither command's parser may bring in z3."""
    probe = ("import argparse, sys\n"
             "import scc.commands.analyze, scc.commands.diff\n"
             "sub = argparse.ArgumentParser().add_subparsers()\n"
             "scc.commands.analyze.register(sub)\n"
             "scc.commands.diff.register(sub)\n"
             "print(sorted(m for m in sys.modules if m == 'z3' or m.startswith(('z3.', 'scc.analysis.'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2], check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['scc.analysis.options']"
