"""`scc rebuild ARTIFACT.sop POLICY.json --ledger PATH`: is the artifact's module the one this source
compiles to? (scc/rebuild.py)"""

from __future__ import annotations

import argparse
import json

from axon.clikit import EXIT_FAIL, EXIT_OK, EXIT_USAGE
from axon.commands import verify as axon_verify
from axon.commands.loaders import LEDGER_ENV
from axon.keys import KEY_ENV
from axon.verify import VerifyError
from scc.commands.compile import compile_reporting, read_source
from scc.rebuild import compare

HELP = f"""Verify a .sop artifact with every Axon check (as `axon verify` does, in this process), then
compile POLICY.json with this scc, in memory, and say whether it gives the artifact's module byte
for byte (SIP-001 §7). An artifact built by another compiler version is a clear "cannot confirm";
a different source or different bytes is a "no". The rebuilt module is never written anywhere.

  scc rebuild boiler.sop boiler.json --ledger plant.ledger
  scc rebuild boiler.sop boiler.json --ledger plant.ledger --key node.key --json

The ledger comes from --ledger or ${LEDGER_ENV}; the node key from --key or ${KEY_ENV} (only needed
for encrypted artifacts).
exit status: 0 verified and rebuilt identically, 1 refused or the rebuild differs,
             2 usage or I/O error, or the source does not compile (its errors go to standard error)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("rebuild", help="verify an artifact and rebuild its module from source",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    axon_verify.add_arguments(parser)
    parser.add_argument("policy", metavar="POLICY.json", help="the source the artifact claims to come from")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    name, source = read_source(args.policy)
    try:
        verified = axon_verify.verify(args)
    except VerifyError as exc:
        return axon_verify.report_refused(args, exc)
    rebuilt = compile_reporting(name, source, "not rebuilt")
    if rebuilt is None:
        return EXIT_USAGE
    comparison = compare(verified, rebuilt)
    if args.json:
        result = axon_verify.verified_result(verified)
        result.update(ok=comparison.matches, rebuild=comparison.to_dict())
        print(json.dumps(result, indent=2))
    else:
        axon_verify.print_verified(args.artifact, verified)
        print(f"  rebuild    {comparison.reason}")
    return EXIT_OK if comparison.matches else EXIT_FAIL
