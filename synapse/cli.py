"""`synapse`: the Sopcos policy runtime's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Run compiled Sopcos policies in a wasmtime sandbox and report decisions.

  synapse eval MODULE --telemetry JSON --context JSON
  synapse eval MODULE --input FILE.jsonl      one decision per line, in order
"""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "synapse.commands.decisions",
    "synapse.commands.serve",
    "synapse.commands.run",
    "synapse.commands.eval",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("synapse", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
