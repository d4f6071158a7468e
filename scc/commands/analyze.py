"""`scc analyze POLICY.json`: what a policy does for every valid input, proved (docs/analysis.md)."""

from __future__ import annotations

import argparse
import json
import sys

from axon.clikit import EXIT_FAIL, EXIT_OK
from scc.analysis.options import add_solver_options, solver_limits
from scc.commands.compile import read_source
from scc.errors import InternalError

HELP = """Prove what a policy does for every valid input, for the exact IEEE-754 semantics of its
compiled module (z3, floating-point theory; docs/analysis.md):

  SCC-A001 warning  a rule that can never hold within the declared input ranges
  SCC-A002 warning  a rule that can hold but never decides (an earlier or more severe rule takes it)
  SCC-A003 note     the default decides somewhere (with an example input)
  SCC-A004 warning  a reachable fault: division by zero or a NaN result (with the input reaching it)
  SCC-A005 note     first-match: rules with different verdicts overlap, and their order decides
  SCC-A006 warning  unknown: the solver ran out of time on a question (never reported as proven)

Every example input is replayed through the compiled module before it is shown.

exit status: 0 no warnings, 1 warnings (or the policy has errors), 2 usage or I/O error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("analyze", help="prove what a policy does for every valid input",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", metavar="POLICY.json", help="the policy source; - reads standard input")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the analysis as JSON")
    output.add_argument("--sarif", action="store_true", help="print a SARIF 2.1.0 log (CI code scanning)")
    add_solver_options(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # z3 and the analysis load only here: `scc` starts without them (issue 15).
    from scc.analysis import report
    from scc.analysis.checks import analyze
    from scc.analysis.replay import CompiledModule, Replayer
    from scc.analysis.source import load
    from scc.commands.compile import compile_reporting

    timeout, budget = solver_limits(args)
    name, source = read_source(args.policy)
    if compile_reporting(name, source, "not analysed") is None:
        return EXIT_FAIL
    loaded = load(name, source)
    try:
        analysis = analyze(loaded.policy, Replayer(loaded.policy.document, [CompiledModule()]), timeout,
                           budget=budget)
    except InternalError as exc:  # a witness the module decides otherwise: a bug report, not output
        print(f"scc: internal error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(report.to_json(analysis, loaded.position), indent=2))
    elif args.sarif:
        log = report.sarif(name, analysis.findings, loaded.position, "scc analyze", analysis.solver)
        print(json.dumps(log, indent=2))
    else:
        sys.stdout.write(report.text(name, analysis, loaded.position))
    return EXIT_FAIL if analysis.warnings else EXIT_OK
