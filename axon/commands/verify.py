"""`axon verify ARTIFACT.sop --ledger PATH`: may this artifact run here, now? (axon/verify.py)"""

from __future__ import annotations

import argparse
import json
import os
import sys

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, read_bytes, read_text
from axon.commands.loaders import LEDGER_ENV, load_key, open_ledger
from axon.keys import KEY_ENV, Identity
from axon.verify import CHECKS, InstalledVersions, VerifiedArtifact, Verifier, VerifyConfig, VerifyError

HELP = f"""Run every Axon check on a .sop artifact, in order, and stop at the first that fails:
size, strict JSON, schema, magic/version/type, signer known and not revoked, signature, integrity
hash, URN, declared authority <= the signer's level, registered on the ledger, the signer may
publish under the policy name, not revoked, not superseded (the successor is named), not expired,
not older than the installed version (--installed), decryption (with --key, in memory), module
imports/exports. Each failure has a stable code (AXON-VERIFY-...; docs/artifacts.md lists them).

  axon verify boiler.sop --ledger plant.ledger
  axon verify boiler.sop --ledger plant.ledger --key node.key --json

Whether the module is the one its source compiles to is a question for the compiler, asked with
`scc rebuild ARTIFACT.sop POLICY.json --ledger PATH` (it runs these same checks first).

The ledger comes from --ledger or ${LEDGER_ENV}; the node key from --key or ${KEY_ENV} (only needed
for encrypted artifacts).
exit status: 0 verified, 1 refused, 2 usage or I/O error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="verify a .sop artifact against the ledger",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    # Axon does not compile (README, "Layout"): a script still passing --rebuild is told where it went.
    parser.add_argument("--rebuild", metavar="POLICY.json", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """What names an artifact and the trust to verify it against (`scc rebuild` takes them too)."""
    parser.add_argument("artifact", metavar="ARTIFACT.sop")
    parser.add_argument("--ledger", metavar="PATH", help=f"the ledger file (default: ${LEDGER_ENV})")
    parser.add_argument("--key", metavar="NODEKEY", help=f"this node's key, to decrypt (default: ${KEY_ENV})")
    parser.add_argument("--installed", metavar="FILE",
                        help='JSON {"policy": "version"} of what this node runs: refuse rollbacks')
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    if args.rebuild is not None:
        raise UsageError(f"axon verify no longer compiles; rebuild and compare with the compiler: "
                         f"scc rebuild {args.artifact} {args.rebuild} --ledger PATH")
    try:
        verified = verify(args)
    except VerifyError as exc:
        return report_refused(args, exc)
    if args.json:
        print(json.dumps(verified_result(verified), indent=2))
    else:
        print_verified(args.artifact, verified)
    return EXIT_OK


def verify(args: argparse.Namespace) -> VerifiedArtifact:
    """Every check on `args.artifact` against the ledger; VerifyError names the first that fails."""
    data = read_bytes(args.artifact)
    installed = _installed(args.installed) if args.installed else None
    node = _node_key(args.key)
    ledger = open_ledger(args.ledger)
    try:
        return Verifier(ledger, VerifyConfig(), node).verify(data, installed)
    finally:
        ledger.close()


def verified_result(verified: VerifiedArtifact) -> dict[str, object]:
    """The --json document of a verified artifact."""
    return {"ok": True, "artifact": verified.summary(), "checks": [c.__name__[6:] for c in CHECKS]}


def _installed(path: str) -> InstalledVersions:
    text = read_text(path, what="--installed")
    try:
        return InstalledVersions.from_json(text)
    except ValueError as exc:
        raise UsageError(f"--installed {path}: {exc}") from None


def _node_key(path: str | None) -> Identity | None:
    """Only encrypted artifacts need the node's key: none given is not an error here."""
    if path is None and not os.environ.get(KEY_ENV):
        return None
    return load_key(path)


def report_refused(args: argparse.Namespace, exc: VerifyError) -> int:
    """Say which check refused the artifact (as JSON with --json); the refusal's exit status."""
    if args.json:
        print(json.dumps({"ok": False, "error": exc.to_dict(), "passed": list(exc.passed)}, indent=2))
    else:
        print(f"{args.artifact}: REFUSED at the {exc.check} check [{exc.code}]\n  {exc}", file=sys.stderr)
    return EXIT_FAIL


def print_verified(name: str, verified: VerifiedArtifact) -> None:
    s = verified.summary()
    print(f"{name}: VERIFIED {s['policy']} {s['version']}\n"
          f"  urn        {s['urn']}\n"
          f"  signed by  {s['kid']} ({s['signer_level']}; declares {s['authority_level']})\n"
          f"  module     {s['module_bytes']:,} bytes, {s['compiler_version']}, gas_max {s['gas_max']:,}"
          + (", decrypted in memory" if s["encrypted"] else "") + "\n"
          f"  checks     all {len(CHECKS)} passed")
