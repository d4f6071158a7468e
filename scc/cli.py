"""`scc`: the Sopcos policy compiler's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Check, compile, test and package SIP-001 safety policies.

  scc check POLICY.json                      report every error in a policy (exit 1 if any)
  scc compile POLICY.json -o OUT.wasm        a metered WebAssembly module (--emit wat to read it)
  scc test policies/                         run NAME.test.json cases against the compiled modules
  scc keygen -o KEYFILE --name NAME          a secp256k1 signing key (file mode 0600)
  scc package POLICY.json --key KEYFILE --kid DID -o OUT.sop
  scc inspect OUT.sop                        what an artifact claims (axon verify checks it)
  scc rebuild OUT.sop POLICY.json --ledger L
                                             verify, then: does the source rebuild its module byte for byte?
  scc analyze POLICY.json                    prove what it does for every input: dead rules, faults, gaps
  scc diff OLD.json NEW.json                 prove two versions equivalent, or show where they differ
  scc schema [-o FILE]                       the SIP-001 JSON Schema, for editors

Exit status: 0 success, 1 the policy/test/artifact failed, 2 usage or I/O error.
"""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "scc.commands.check",
    "scc.commands.compile",
    "scc.commands.keygen",
    "scc.commands.package",
    "scc.commands.inspect",
    "scc.commands.rebuild",
    "scc.commands.test",
    "scc.commands.analyze",
    "scc.commands.diff",
    "scc.commands.schema",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("scc", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
