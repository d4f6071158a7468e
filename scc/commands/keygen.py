"""`scc keygen`: create a secp256k1 signing key file for packaging artifacts (docs/keys.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from axon.clikit import EXIT_OK, UsageError
from axon.keys import PASSPHRASE_ENV, KeyMaterialError, SigningKey, did_for, write_key_file

HELP = f"""Create a new signing key and write it to KEYFILE, readable by you only (mode 0600).

Prints the key's DID (did:sopcos:NAME#key-1), public key and Ethereum-style address, which are what
the ledger administrator needs to register it; the secret is never printed. With --encrypt the secret
is stored encrypted (scrypt + AES-256-GCM) under the passphrase in ${PASSPHRASE_ENV}. An existing
file is never overwritten.

exit codes: 0 created, 2 bad arguments, missing passphrase, or the file exists / cannot be written
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keygen", help="create a signing key file", description=HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-o", "--output", required=True, type=Path, metavar="KEYFILE",
                   help="the key file to create")
    p.add_argument("--name", help="the DID's name (did:sopcos:NAME#key-1); default: the key's address")
    p.add_argument("--encrypt", action="store_true", help=f"encrypt the secret under ${PASSPHRASE_ENV}")
    p.add_argument("--json", action="store_true", help="print the public details as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    passphrase = None
    if args.encrypt:
        passphrase = os.environ.get(PASSPHRASE_ENV)
        if not passphrase:
            raise UsageError(f"--encrypt needs the passphrase in {PASSPHRASE_ENV}")
    key = SigningKey.generate()
    try:
        did = did_for(key.public_key, args.name)
        write_key_file(args.output, key, did, passphrase)
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from exc
    details = {"did": did, "public_key": key.public_key.hex(), "address": key.address,
               "key_file": str(args.output), "encrypted": passphrase is not None}
    if args.json:
        print(json.dumps(details, indent=2))
    else:
        print(f"wrote {args.output} (mode 0600{', encrypted' if passphrase else ''})\n"
              f"did:        {did}\npublic key: {key.public_key.hex()}\naddress:    {key.address}")
    return EXIT_OK
