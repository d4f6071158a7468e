"""`scc test [PATH ...]`: run NAME.test.json cases against the compiled policies (docs/policy-tests.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, write_atomic
from scc.testing import DEFAULT_PATHS, ModuleRefused, TestFileError, junit_xml, render_console, run_tests

HELP = "run the NAME.test.json cases of policies against their compiled modules"
DESCRIPTION = """Compile each policy named by a NAME.test.json file and run every case in it through
the runtime (synapse's evaluator, in this process), exactly as the policy will run beside the PLC.

Prints every failing case with the decision it got (verdict, deciding rule, reason, logs), the rules
that no case made decide, and a closing line "N passed, N failed".

exit status: 0 every case passed; 1 a case failed or a policy does not compile;
             2 usage or I/O error (no test files, a test file that is unreadable or malformed)

The test-file format is described in docs/policy-tests.md."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "test", help=HELP, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH",
        help=f"test files or directories to search for *.test.json (default: {' '.join(DEFAULT_PATHS)}/)",
    )
    parser.add_argument("--junit", metavar="FILE", type=Path,
                        help="also write the results as JUnit XML to FILE (for CI servers)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        suites = run_tests(args.paths)
    except (TestFileError, ModuleRefused) as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(render_console(suites))
    if args.junit is not None:
        write_atomic(args.junit, junit_xml(suites))
    return EXIT_FAIL if any(s.failed for s in suites) else EXIT_OK
