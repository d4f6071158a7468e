"""`scc schema`: the SIP-001 JSON Schema scc checks policies against, for editors (docs/quickstart.md)."""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

from axon.clikit import EXIT_OK, write_atomic

HELP = """Print the SIP-001 JSON Schema (Draft 2020-12) that scc checks policy structure against, exactly
as shipped, or write it to FILE. Its $id, https://sopcos.example/schemas/sip-001.schema.json, is what a
policy's "$schema" names; an editor that cannot fetch that address (a plant network) is pointed at
this file instead (docs/quickstart.md, "Editors").

  scc schema -o sip-001.schema.json

exit status: 0 written, 2 the file cannot be written."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the SIP-001 JSON Schema (for editors)",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it here (default: print it)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    schema = resources.files("scc").joinpath("schema", "sip-001.schema.json").read_bytes()
    if args.output is None:
        sys.stdout.buffer.write(schema)
        sys.stdout.flush()
    else:
        write_atomic(args.output, schema, what="the schema")
        print(f"{args.output}: the SIP-001 JSON Schema", file=sys.stderr)
    return EXIT_OK
