"""`synapse tags check CONFIG`: commissioning a [plant] section (docs/plc.md)."""

from __future__ import annotations

import argparse
import asyncio

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, help_for

HELP = """Connect to every source of the config's [plant] section, read every tag once and print a table:
tag, source, address, raw value, scaled value, quality, age. Nothing is written to any PLC, broker or
server. MQTT tags wait up to 5 s for a message on their topic.

Exit status: 0 every tag was read with good quality, 1 some tag could not be read (the table says why),
2 the config is wrong or has no [plant] section.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tags", help="commission the plant's tags",
                                   description="Commission the [plant] section's tags.")
    parser.set_defaults(run=help_for(parser))
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND")
    check = sub.add_parser("check", help="read every tag once and print a table (writes nothing)",
                           description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("config", metavar="CONFIG", help="the sidecar's TOML config")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from synapse.plant.check import read_tags, render  # the protocol libraries load only here
    from synapse.service.config import load_config
    from synapse.service.errors import ConfigError

    try:
        config = load_config(args.config).validate()
    except ConfigError as exc:
        raise UsageError(exc.message) from None
    if config.plant is None or not config.plant.tags:
        raise UsageError(f"{args.config}: no [plant] tags to check")
    rows = asyncio.run(read_tags(config.plant, config.mqtt))
    print(render(rows))
    unreadable = [row.tag for row in rows if not row.readable]
    if unreadable:
        print(f"{len(unreadable)} of {len(rows)} tags unreadable: {', '.join(unreadable)}")
        return EXIT_FAIL
    print(f"all {len(rows)} tags read")
    return EXIT_OK
