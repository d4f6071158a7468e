"""`axon verify ARTIFACT.sop --ledger PATH`: may this artifact run here, now? (axon/verify.py)"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from axon import artifact_rebuild
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
  axon verify boiler.sop --ledger plant.ledger --rebuild boiler.json

--rebuild also compiles POLICY.json with this machine's scc (`python -m scc compile`, in a child
process) and says whether it gives the artifact's module byte for byte; a different compiler
version is a clear "cannot confirm".

The ledger comes from --ledger or ${LEDGER_ENV}; the node key from --key or ${KEY_ENV} (only needed
for encrypted artifacts).
exit status: 0 verified (and rebuilt identically), 1 refused or rebuild differs, 2 usage or I/O error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("verify", help="verify a .sop artifact against the ledger",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("artifact", metavar="ARTIFACT.sop")
    parser.add_argument("--ledger", metavar="PATH", help=f"the ledger file (default: ${LEDGER_ENV})")
    parser.add_argument("--key", metavar="NODEKEY", help=f"this node's key, to decrypt (default: ${KEY_ENV})")
    parser.add_argument("--installed", metavar="FILE",
                        help='JSON {"policy": "version"} of what this node runs: refuse rollbacks')
    parser.add_argument("--rebuild", metavar="POLICY.json", help="also rebuild from source and compare")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    data = read_bytes(args.artifact)
    installed = _installed(args.installed) if args.installed else None
    node = _node_key(args.key)
    ledger = open_ledger(args.ledger)
    try:
        verified = Verifier(ledger, VerifyConfig(), node).verify(data, installed)
    except VerifyError as exc:
        return _refused(args, exc)
    finally:
        ledger.close()
    result = {"ok": True, "artifact": verified.summary(), "checks": [c.__name__[6:] for c in CHECKS]}
    status = EXIT_OK
    if args.rebuild:
        comparison = _rebuild(args.rebuild, verified)
        result["rebuild"] = comparison.to_dict()
        result["ok"] = comparison.matches
        status = EXIT_OK if comparison.matches else EXIT_FAIL
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_verified(args.artifact, verified, result.get("rebuild"))
    return status


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


def _refused(args: argparse.Namespace, exc: VerifyError) -> int:
    if args.json:
        print(json.dumps({"ok": False, "error": exc.to_dict(), "passed": list(exc.passed)}, indent=2))
    else:
        print(f"{args.artifact}: REFUSED at the {exc.check} check [{exc.code}]\n  {exc}", file=sys.stderr)
    return EXIT_FAIL


def _rebuild(policy: str, verified: VerifiedArtifact) -> artifact_rebuild.RebuildComparison:
    if not Path(policy).is_file():
        raise UsageError(f"--rebuild {policy}: no such file")
    try:
        return artifact_rebuild.compare(verified, artifact_rebuild.rebuild(Path(policy)))
    except artifact_rebuild.RebuildFailed as exc:
        raise UsageError(f"--rebuild: {exc}") from None


def _print_verified(name: str, verified: VerifiedArtifact, rebuild: dict | None) -> None:
    s = verified.summary()
    print(f"{name}: VERIFIED {s['policy']} {s['version']}\n"
          f"  urn        {s['urn']}\n"
          f"  signed by  {s['kid']} ({s['signer_level']}; declares {s['authority_level']})\n"
          f"  module     {s['module_bytes']:,} bytes, {s['compiler_version']}, gas_max {s['gas_max']:,}"
          + (", decrypted in memory" if s["encrypted"] else "") + "\n"
          f"  checks     all {len(CHECKS)} passed")
    if rebuild is not None:
        print(f"  rebuild    {rebuild['reason']}")
