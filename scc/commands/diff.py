"""`scc diff OLD NEW`: prove two policies decide alike, or show where they differ (docs/analysis.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, read_bytes
from scc.analysis.options import add_solver_options, solver_limits
from scc.commands.compile import read_source
from scc.errors import InternalError, PolicyError

HELP = """Compare two versions of a policy for every reading, for the exact IEEE-754 semantics of their
compiled modules (z3; docs/analysis.md). OLD and NEW are policy sources, or .sop artifacts with
--old-source / --new-source: the source must rebuild the artifact's module byte for byte.

Equivalent means the same verdict for every reading (including readings with an input missing, or
an enum value only one of them knows). Otherwise, for each pair of verdicts that occurs (ALLOW -> HALT,
...), up to three example readings, each replayed through both compiled modules, with the rule that
decided in each.

exit status: 0 proved equivalent; 1 they differ, or the solver could not decide in time (unknown:
review it as a difference); 2 usage or I/O error, or a policy that does not compile."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("diff", help="prove two policies equivalent or show where they differ",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("old", metavar="OLD", help="policy source (.json) or artifact (.sop)")
    parser.add_argument("new", metavar="NEW", help="policy source (.json) or artifact (.sop)")
    parser.add_argument("--old-source", metavar="POLICY.json", help="the source OLD.sop was built from")
    parser.add_argument("--new-source", metavar="POLICY.json", help="the source NEW.sop was built from")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print the comparison as JSON")
    output.add_argument("--sarif", action="store_true", help="print a SARIF 2.1.0 log (located in NEW)")
    add_solver_options(parser)
    parser.set_defaults(run=run)


def _load(path: str, source_path: str | None, option: str) -> Any:
    from scc.analysis.source import SourceMismatch, load, load_artifact

    try:
        if path.endswith(".sop"):
            if source_path is None:
                raise UsageError(f"{path} carries no source: give the policy it was built from with {option}")
            source_name, source = read_source(source_path)
            return load_artifact(path, read_bytes(path), source_name, source)
        name, source = read_source(path)
        return load(name, source)
    except PolicyError as exc:
        lines = [d.format(path if source_path is None else source_path) for d in exc.diagnostics]
        raise UsageError("\n".join([*lines, f"{path}: does not compile"])) from None
    except SourceMismatch as exc:
        raise UsageError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    # z3 and the analysis load only here: `scc` starts without them (issue 15).
    from scc.analysis import report
    from scc.analysis.diff import diff
    from scc.analysis.replay import CompiledModule, Replayer

    timeout, budget = solver_limits(args)
    old = _load(args.old, args.old_source, "--old-source")
    new = _load(args.new, args.new_source, "--new-source")
    module = CompiledModule()
    try:
        result = diff(old.policy, new.policy, Replayer(old.policy.document, [module]),
                      Replayer(new.policy.document, [module]), timeout, budget=budget)
    except InternalError as exc:  # an example a module decides otherwise: a bug report, not output
        print(f"scc: internal error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    if args.json:
        print(json.dumps(report.diff_json(args.old, args.new, result), indent=2))
    elif args.sarif:
        findings = report.diff_findings(new.policy, result)
        print(json.dumps(report.sarif(new.name, findings, new.position, "scc diff", result.solver), indent=2))
    else:
        sys.stdout.write(report.diff_text(args.old, args.new, result))
    return EXIT_OK if result.equivalent else EXIT_FAIL
