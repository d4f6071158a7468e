"""`axon`: the Sopcos trust layer's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Axon, the trust layer: verify artifacts, keep the ledger, exchange SIP-017 messages.

  axon verify ARTIFACT.sop --ledger L [--key NODEKEY]
  axon ledger init --ledger L --root-key ROOT.key     (then register-key, register-artifact, ...)
  axon msg send --to DID --type CMD --body JSON --key KEYFILE --ledger L
  axon tx decode HEX                                  fields, hash and sender of a transaction
  axon keys generate --token 'pkcs11:...'             a key that stays in a PKCS#11 token

Exit status: 0 success, 1 verification failed, 2 usage or I/O error.
"""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "axon.commands.keys",
    "axon.commands.ledger",
    "axon.commands.msg",
    "axon.commands.tx",
    "axon.commands.verify",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("axon", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
