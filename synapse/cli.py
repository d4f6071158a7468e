"""`synapse`: the Sopcos policy runtime's command line."""

from __future__ import annotations

from collections.abc import Sequence

from axon.clikit import run_cli

DESCRIPTION = """Run Sopcos policies in a wasmtime sandbox and report decisions. Anything that goes
wrong is a DENY with a reason: nothing fails open.

  synapse eval ARTIFACT.sop --ledger L --telemetry JSON --context JSON   (verified by Axon first)
  synapse eval MODULE.wasm --input FILE.jsonl    one decision per line (raw .wasm: development only)
  synapse serve --ledger L --artifact A.sop      REST /v1/evaluate, artifact lifecycle, /metrics
  synapse run --config sidecar.toml              the unattended sidecar beside a PLC
  synapse tags check sidecar.toml                read every PLC tag once (commissioning)
  synapse decisions verify LOG                   check a tamper-evident decision log

Exit status: 0 success, 1 verification/check failed, 2 usage or I/O error.
"""

# One module per subcommand; each adds itself with register(subparsers).
COMMANDS = [
    "synapse.commands.decisions",
    "synapse.commands.serve",
    "synapse.commands.run",
    "synapse.commands.tags",
    "synapse.commands.eval",
]


def main(argv: Sequence[str] | None = None) -> int:
    return run_cli("synapse", DESCRIPTION, COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())
