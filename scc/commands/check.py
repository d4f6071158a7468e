"""`scc check POLICY.json`: report every error and warning in a policy, without compiling it."""

from __future__ import annotations

import argparse
import json
import sys

from axon.clikit import EXIT_FAIL, EXIT_OK
from scc.commands.compile import read_source
from scc.compiler import check_policy

HELP = """Check a SIP-001 policy and report every problem at once, each with its JSON Pointer, line and
column, a stable code (docs/errors.md) and what to change.

exit status: 0 the policy is valid (warnings may be printed), 1 it has errors, 2 usage or I/O error
(for example the file does not exist)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check", help="report every error and warning in a policy", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("policy", metavar="POLICY.json", help="the policy source; - reads standard input")
    parser.add_argument("--json", action="store_true",
                        help='print {"valid": ..., "errors": [...], "warnings": [...]} to standard output')
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name, source = read_source(args.policy)
    result = check_policy(source)
    if args.json:
        report = {
            "valid": result.valid,
            "errors": [d.to_dict() for d in result.errors],
            "warnings": [d.to_dict() for d in result.warnings],
        }
        if result.hidden_errors or result.hidden_warnings:
            report["not_shown"] = {"errors": result.hidden_errors, "warnings": result.hidden_warnings}
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for diagnostic in result.diagnostics:
            print(diagnostic.format(name))
        for count, what in ((result.hidden_errors, "error"), (result.hidden_warnings, "warning")):
            if count:
                print(f"{name}: {count} more {what}{'s' if count != 1 else ''} not shown")
        errors = len(result.errors) + result.hidden_errors
        warnings = len(result.warnings) + result.hidden_warnings
        verdict = "valid" if result.valid else f"{errors} error{'s' if errors != 1 else ''}"
        print(f"{name}: {verdict}, {warnings} warning{'s' if warnings != 1 else ''}", file=sys.stderr)
    return EXIT_OK if result.valid else EXIT_FAIL
