"""`axon`: the Sopcos trust layer's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Verify artifacts, keep the ledger, and exchange SIP-017 messages."""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "axon.commands.ledger",
    "axon.commands.msg",
    "axon.commands.tx",
    "axon.commands.verify",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("axon", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
