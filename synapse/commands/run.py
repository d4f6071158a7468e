"""`synapse run`: the unattended sidecar (docs/service.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from axon.clikit import UsageError
from synapse.commands.serve import add_service_arguments, config_from_args, start

HELP = """Run unattended beside a PLC: load the configured artifacts through Axon, evaluate policies on
a schedule from a telemetry feed, log every decision (hash-chained, sealed), raise SIP-017 alerts and
take SIP-017 commands when configured, and serve the same HTTP API as `synapse serve`.

The [sidecar] section of the config says what to load and how to read the feed:

  [sidecar]
  artifacts = ["boiler-guard.sop"]   # loaded through Axon at start
  source = "telemetry.jsonl"         # JSON lines; "-" for standard input
  interval = 1.0                     # seconds between evaluations; 0: every line as it arrives
  policies = ["boiler-guard"]        # default: every policy with an active artifact

A feed line is {"telemetry": {...}, "context": {...}, "policy": NAME} or a bare telemetry object.

SIGTERM (or SIGINT) stops it cleanly: the evaluation in progress finishes and is logged, the log is
sealed, then the process exits 0. Exit status 2 for a usage, configuration or key error.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run the unattended sidecar", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    add_service_arguments(parser)
    parser.add_argument("--source", metavar="FILE", help="telemetry feed: a JSON-lines file, or - for stdin")
    parser.add_argument("--interval", type=float, metavar="S",
                        help="seconds between evaluations (0: every line as it arrives)")
    parser.add_argument("--artifact", metavar="SOP", action="append", type=Path, default=[],
                        help="load this .sop at start as well (repeatable)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with a [plant] section: evaluate and log, write nothing to the plant")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from synapse.sidecar.loop import Sidecar  # the messaging stack loads only for the sidecar

    if args.config is None:
        raise UsageError("synapse run needs --config (the [sidecar] section says what to run)")
    config = config_from_args(args)
    if args.dry_run:
        if config.plant is None:
            raise UsageError("--dry-run is for a sidecar with a [plant] section (docs/plc.md)")
        config.plant.dry_run = True
    sidecar = Sidecar(config.sidecar, mqtt=config.mqtt, plant=config.plant)
    return start(config, args, preload=[*config.sidecar.artifacts, *args.artifact], background=[sidecar.run])
