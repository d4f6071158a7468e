"""`scc`: the Sopcos policy compiler's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Check, compile, test and package SIP-001 safety policies.

  scc check POLICY.json          report every error in a policy (exit 1 if any)
  scc compile POLICY.json -o OUT.wasm
  scc test policies/             run NAME.test.json cases against the compiled modules
"""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "scc.commands.check",
    "scc.commands.compile",
    "scc.commands.keygen",
    "scc.commands.package",
    "scc.commands.inspect",
    "scc.commands.test",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("scc", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
