"""`scc package POLICY.json --key KEYFILE -o OUT.sop`: compile, optionally encrypt, and sign an artifact."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from axon.artifact_crypto import ArtifactCryptoError, Recipients, resolve_recipients
from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, write_atomic
from axon.commands.loaders import load_key, open_ledger
from axon.envelope import LEVELS, ArtifactEnvelope, PackageSpec, build
from axon.errors import AxonError
from axon.keys import DID_RE, KEY_ENV, Identity
from axon.ledger import Ledger, authority, ops
from axon.ledger.errors import AuthorityDenied
from axon.ledger.records import KeyRecord
from scc.commands.compile import compile_reporting, read_source
from scc.reader import read

SOURCE_DATE_EPOCH = "SOURCE_DATE_EPOCH"

HELP = f"""Compile a SIP-001 policy and package it as a signed .sop artifact (SIP-009 v1.1,
docs/artifacts.md).

  scc package boiler.json --key author.key -o boiler.sop
  scc package boiler.json --key author.key -o boiler.sop --ledger plant.ledger \\
      --encrypt-for did:sopcos:group:plant --expires 90d

The module is signed (secp256k1, over the RFC 8785 form of the envelope) by the key in KEYFILE
(default ${KEY_ENV}) as --kid (default: the key file's DID). The envelope declares the policy's
`authority_level` (LVL_1 when the source declares none); Axon refuses it if the signer holds less.

--encrypt-for takes group DIDs, key DIDs (resolved on --ledger) or public keys in hex: the module is
encrypted with AES-256-GCM and its key wrapped for each recipient (revoked keys are left out).
With --ledger, the signer's key is checked on the ledger before anything is written, and so is its
right to publish under the policy's name (the name's owner, or a LVL_4+ key at or above it, at the
name's level: ledger rule 12); --register also records the artifact's URN there (signed by the same
key), which Axon requires before it runs.

created_at is now, or ${SOURCE_DATE_EPOCH} when set (reproducible packaging).
exit status: 0 packaged, 1 the policy has errors or its name is not the signer's to publish under,
2 usage, key, ledger or file error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("package", help="compile and sign a policy as a .sop artifact",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", metavar="POLICY.json", help="the policy source; - reads standard input")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.sop", help="the artifact to write")
    parser.add_argument("--key", metavar="KEYFILE", help=f"signing key file (default: ${KEY_ENV})")
    parser.add_argument("--kid", metavar="DID", help="the signer's DID URL (default: the key file's DID)")
    parser.add_argument("--encrypt-for", nargs="+", metavar="RECIPIENT",
                        help="group DID, key DID or public key (hex) that may decrypt the module")
    parser.add_argument("--ledger", metavar="PATH", help="ledger to resolve DIDs and check the signer on")
    parser.add_argument("--register", action="store_true", help="register the artifact's URN on --ledger")
    parser.add_argument("--expires", metavar="WHEN",
                        help="when Axon stops accepting it: a duration (90d, 12h, 30m, 600s) or a UTC time "
                             "(2027-01-31T00:00:00Z)")
    parser.add_argument("--storage-hint", default="", metavar="URL",
                        help="where the artifact will be stored (distribution.storage_hint)")
    parser.add_argument("--claims", nargs="?", const="", metavar="TEST.json",
                        help="prove the claims of the policy's test file (default: NAME.test.json beside "
                             "it) and record them, with the solver, in the signed meta; not packaged unless "
                             "every claim is proven (docs/analysis.md)")
    parser.add_argument("--json", action="store_true", help="print a summary as JSON on standard output")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.register and not args.ledger:
        raise UsageError("--register needs --ledger PATH")
    signer = _signer(args)
    created_at = _created_at()
    expires_at = parse_expiry(args.expires, created_at) if args.expires else None
    name, source = read_source(args.policy)
    result = compile_reporting(name, source, "not packaged")
    if result is None:
        return EXIT_FAIL
    level = read(source).value.get("authority_level") or LEVELS[0]
    claims = _proven_claims(args.policy, args.claims, source) if args.claims is not None else None
    if claims is False:
        return EXIT_FAIL
    ledger = open_ledger(args.ledger) if args.ledger else None
    try:
        if ledger is not None:
            record = check_signer(ledger, signer, level)
            try:  # the rule --register meets on the ledger and the artifact at Axon's check 11
                authority.may_publish_policy(record, ledger.policy(result.meta["policy"]),
                                             LEVELS.index(level) + 1)
            except AuthorityDenied as exc:
                print(f"{name}: not packaged: {exc} [{exc.code}]", file=sys.stderr)
                return EXIT_FAIL
        recipients = _recipients(args.encrypt_for, ledger) if args.encrypt_for else None
        spec = PackageSpec(level, created_at, expires_at, args.storage_hint, recipients, claims)
        try:
            envelope = build(result.wasm, signer, spec)
        except AxonError as exc:
            raise UsageError(f"cannot package {name}: {exc}") from None
        write_atomic(args.output, envelope.to_bytes())
        if args.register:
            _register(ledger, signer, envelope)
    finally:
        if ledger is not None:
            ledger.close()
    _report(name, args, envelope, recipients)
    return EXIT_OK


def _proven_claims(policy: str, test_path: str, source: bytes) -> dict[str, Any] | bool:
    """meta.claims for the envelope, or False (said on standard error) when a claim is not proven."""
    # z3 loads only here (issue 15): packaging without --claims never imports it.
    from scc.analysis.solve import SOLVER
    from scc.testing import TestFileError, claim_text, load_test_file, prove_claims

    if not test_path:
        if policy == "-":
            raise UsageError("--claims: name the test file when the policy comes from standard input")
        test_path = str(Path(policy).with_name(Path(policy).name.removesuffix(".json") + ".test.json"))
    try:
        test_file = load_test_file(Path(test_path))
        tested = test_file.policy_path.read_bytes()
    except (TestFileError, OSError) as exc:
        raise UsageError(f"--claims: {exc}") from None
    if tested != source:
        raise UsageError(f"--claims: {test_path} tests {test_file.policy_path}, not the policy packaged")
    if not test_file.claims:
        raise UsageError(f"--claims: {test_path} states no claims")
    results = prove_claims(test_file)
    failed = [r for r in results if not r.proven]
    for result in failed:
        print(f"{test_path}: claim {result.name!r} is {result.status.value}", file=sys.stderr)
        print("\n".join("    " + line for line in claim_text(result).splitlines()), file=sys.stderr)
    if failed:
        print(f"{policy}: not packaged: {len(failed)} claim(s) not proven", file=sys.stderr)
        return False
    keep = ("name", "when", "verdict", "rule")
    return {"solver": SOLVER, "proven": [{k: r.claim[k] for k in keep if k in r.claim} for r in results]}


def _signer(args: argparse.Namespace) -> Identity:
    identity = load_key(args.key)
    if args.kid is None:
        return identity
    if not DID_RE.match(args.kid):
        raise UsageError(f"--kid {args.kid!r} is not a DID URL like did:sopcos:NAME#key-1")
    return Identity(identity.key, args.kid)


def _created_at() -> int:
    value = os.environ.get(SOURCE_DATE_EPOCH)
    if value is None:
        return int(time.time())
    if not value.isdigit():
        raise UsageError(f"${SOURCE_DATE_EPOCH} must be Unix seconds, not {value!r}")
    return int(value)


_DURATION = re.compile(r"^([1-9][0-9]{0,9})([dhms])$")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_expiry(text: str, created_at: int) -> int:
    """Unix seconds from a duration after `created_at` (90d, 12h, 30m, 600s) or an RFC 3339 UTC time."""
    match = _DURATION.match(text)
    if match:
        return created_at + int(match[1]) * _UNIT_SECONDS[match[2]]
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--expires {text!r}: give a duration like 90d, 12h, 30m, 600s or a UTC time like "
                         "2027-01-31T00:00:00Z") from None
    if when.tzinfo is None:
        raise UsageError(f"--expires {text!r}: say the time zone (for example a trailing Z for UTC)")
    expires_at = int(when.timestamp())
    if expires_at <= created_at:
        raise UsageError(f"--expires {text!r} is not after the artifact's creation time")
    return expires_at


def check_signer(ledger: Ledger, signer: Identity, level: str) -> KeyRecord:
    """Refuse to sign what Axon would refuse for the signer's sake (checks 5 and 9 of axon/verify.py);
    the signer's ledger record."""
    record = ledger.key(signer.did)
    if record is None:
        raise UsageError(f"{signer.did} is not registered on the ledger; register the key first "
                         "(axon ledger register-key)")
    if record.revoked:
        raise UsageError(f"{signer.did} is revoked on the ledger")
    if record.public_key != signer.key.public_key:
        raise UsageError(f"the ledger binds {signer.did} to another public key than this key file's")
    if LEVELS.index(level) + 1 > record.level:
        raise UsageError(f"the policy declares {level}; {signer.did} holds LVL_{record.level}")
    return record


def _recipients(names: list[str], ledger: Ledger | None) -> Recipients:
    try:
        return resolve_recipients(names, ledger)
    except ArtifactCryptoError as exc:
        raise UsageError(f"--encrypt-for: {exc}") from None


def _register(ledger: Ledger, signer: Identity, envelope: ArtifactEnvelope) -> None:
    op = ops.register_artifact(envelope.urn, envelope.policy, envelope.version,
                               envelope.meta["authority_level"])
    try:
        ledger.sign_and_submit(signer, op, int(time.time()))
    except AxonError as exc:
        raise UsageError(f"wrote the artifact, but the ledger refused to register it: {exc} "
                         f"[{exc.code}]") from None


def _report(name: str, args: argparse.Namespace, envelope: ArtifactEnvelope,
            recipients: Recipients | None) -> None:
    summary = {"output": args.output, "urn": envelope.urn, "policy": envelope.policy,
               "version": envelope.version, "kid": envelope.kid,
               "authority_level": envelope.meta["authority_level"], "bytes": len(envelope.to_bytes()),
               "encrypted": envelope.encrypted, "recipients": len(recipients.keys) if recipients else 0,
               "expires_at": envelope.expires_at, "registered": bool(args.register),
               "claims": len(envelope.meta.get("claims", {}).get("proven", []))}
    if args.json:
        print(json.dumps(summary, indent=2))
    extra = f", encrypted for {summary['recipients']} recipient(s)" if recipients else ""
    if summary["claims"]:
        extra += f", {summary['claims']} claim(s) proven"
    print(f"{name}: packaged {envelope.policy} {envelope.version} -> {args.output}: {envelope.urn}, "
          f"signed by {envelope.kid} at {summary['authority_level']}{extra}"
          + (", registered on the ledger" if args.register else ""), file=sys.stderr)
