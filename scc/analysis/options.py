"""The solver's time limits on the command line, for `scc analyze` and `scc diff` alike.

The commands register these options when their parser is built, so this module imports neither z3
nor the rest of the analysis at its top (issue 15): the default per-question limit is read from
scc/analysis/solve.py only when a command runs."""

from __future__ import annotations

import argparse

from axon.clikit import UsageError


def add_solver_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                        help="time for all questions together; once spent, the rest are reported unknown")
    parser.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="time limit per solver question (default 10); a question that runs out is "
                             "reported as unknown")


def solver_limits(args: argparse.Namespace) -> tuple[float, float | None]:
    """(seconds per solver question, seconds for all questions together or None) as
    `add_solver_options` parsed them, the first defaulting to solve.DEFAULT_TIMEOUT; a limit that is not
    a positive number of seconds is a usage error."""
    from scc.analysis.solve import DEFAULT_TIMEOUT

    timeout = DEFAULT_TIMEOUT if args.timeout is None else args.timeout
    if not timeout > 0 or (args.budget is not None and not args.budget > 0):
        raise UsageError("--timeout and --budget must be positive numbers of seconds")
    return timeout, args.budget
