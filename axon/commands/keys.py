"""`axon keys generate --token URI` / `axon keys show KEY`: keys in a PKCS#11 token (docs/keys.md)."""

from __future__ import annotations

import argparse
import json

from axon.clikit import EXIT_OK, UsageError, help_for
from axon.commands.loaders import load_key
from axon.keys import KEY_ENV, Identity, KeyMaterialError

HELP = f"""Keys that stay in a PKCS#11 token (an HSM, a smart card; SoftHSM2 for tests), named by an
RFC 7512 URI wherever a key file is accepted (--key, --node-key, [node] key, ${KEY_ENV}):

  pkcs11:token=LABEL;object=KEY?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:///etc/sopcos/pin

  axon keys generate --token 'pkcs11:token=plant;object=node?module-path=...&pin-source=...' --name node-7
  axon keys show 'pkcs11:token=plant;object=node?module-path=...&pin-source=...'

generate creates a secp256k1 key pair in the token (private half sensitive and not extractable: it
never leaves the token), stores its DID beside it, and prints the DID, public key and address to
register on the ledger. show prints those for a key file or a token key.

exit codes: 0 done, 2 bad URI, wrong PIN, missing module/token/key, or the label is taken
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("keys", help="create and show keys in a PKCS#11 token", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(title="keys commands", metavar="COMMAND")
    parser.set_defaults(run=help_for(parser))
    p = sub.add_parser("generate", help="create a key pair in a token", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--token", required=True, metavar="URI", help="pkcs11: URI naming the new key (object=)")
    p.add_argument("--name", help="the DID's name (did:sopcos:NAME#key-1); default: the key's address")
    p.add_argument("--json", action="store_true", help="print the public details as JSON")
    p.set_defaults(run=run_generate)
    p = sub.add_parser("show", help="the DID, public key and address of a key", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("key", metavar="KEY", nargs="?", help=f"a key file or pkcs11: URI (default: ${KEY_ENV})")
    p.add_argument("--json", action="store_true", help="print the public details as JSON")
    p.set_defaults(run=run_show)


def run_generate(args: argparse.Namespace) -> int:
    from axon.pkcs11_token import generate_token_key  # python-pkcs11 only for this command

    try:
        identity = generate_token_key(args.token, args.name)
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from None
    return _print(identity, args.json)


def run_show(args: argparse.Namespace) -> int:
    return _print(load_key(args.key), args.json)


def _print(identity: Identity, as_json: bool) -> int:
    details = {"did": identity.did, "public_key": identity.key.public_key.hex(),
               "address": identity.key.address}
    if as_json:
        print(json.dumps(details, indent=2))
    else:
        print("\n".join(f"{name + ':':12}{value}" for name, value in details.items()))
    return EXIT_OK
