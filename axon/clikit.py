"""The one command-line skeleton shared by `scc`, `axon` and `synapse`.

Each subcommand lives in its own module with `register(subparsers)`, which adds a parser and sets
`run=callable(args) -> int`. Exit codes scripts can trust: 0 success, 1 a policy/verification/test
failure, 2 a usage or I/O error (argparse also exits 2 on bad usage).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with how the command was called or with the files it was given (exit 2)."""


def run_cli(prog: str, description: str, command_modules: Sequence[str], argv: Sequence[str] | None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in command_modules:
        importlib.import_module(name).register(sub)
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
