"""`scc compile POLICY.json -o OUT.wasm`: compile a policy to a metered WebAssembly module."""

from __future__ import annotations

import argparse
import sys

from axon.clikit import EXIT_FAIL, EXIT_OK, STDIN, UsageError, read_bytes, write_atomic
from scc.compiler import CompileResult, compile_policy
from scc.errors import InternalError, PolicyError

HELP = """Compile a SIP-001 policy into a policy module (docs/abi.md): a deterministic WebAssembly
module that imports only the three Sopcos host functions, meters its own gas and records its
worst-case gas, its source hash and its inputs in the `sopcos.meta` section. The same source and
the same scc version always give the same bytes.

  scc compile boiler.json -o boiler.wasm     write the module
  scc compile boiler.json --emit wat         print the readable WebAssembly text

A one-line summary (size, gas_max) and any warnings go to standard error.
exit status: 0 compiled, 1 the policy has errors, 2 usage or I/O error."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compile", help="compile a policy to a WebAssembly policy module", description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("policy", metavar="POLICY.json", help="the policy source; - reads standard input")
    parser.add_argument("-o", "--output", metavar="OUT", help="where to write the module (or the WAT)")
    parser.add_argument("--emit", choices=("wasm", "wat"), default="wasm",
                        help="wasm (default) writes the binary module to -o; wat writes the text to -o, "
                             "or to standard output without -o")
    parser.set_defaults(run=run)


def read_source(path: str) -> tuple[str, bytes]:
    """(display name, bytes) of a policy file or of standard input ("-")."""
    return ("<stdin>" if path == STDIN else path), read_bytes(path, stdin=True)


def compile_reporting(name: str, source: bytes, not_done: str) -> CompileResult | None:
    """Compile, printing errors and warnings to standard error; None when the policy does not compile
    (the last line then says `NAME: NOT_DONE: N error(s)`)."""
    try:
        result = compile_policy(source)
    except PolicyError as exc:
        for diagnostic in exc.diagnostics:
            print(diagnostic.format(name), file=sys.stderr)
        if exc.hidden:
            print(f"{name}: {exc.hidden} more errors not shown", file=sys.stderr)
        print(f"{name}: {not_done}: {len(exc.errors) + exc.hidden} error(s)", file=sys.stderr)
        return None
    except InternalError as exc:
        print(f"scc: internal error: {exc}", file=sys.stderr)
        return None
    for diagnostic in result.warnings:
        print(diagnostic.format(name), file=sys.stderr)
    return result


def run(args: argparse.Namespace) -> int:
    if args.emit == "wasm" and not args.output:
        raise UsageError("say where to write the module with -o OUT.wasm "
                         "(or use --emit wat to print the text)")
    name, source = read_source(args.policy)
    result = compile_reporting(name, source, "not compiled")
    if result is None:
        return EXIT_FAIL
    if args.emit == "wat":
        if args.output:
            write_atomic(args.output, result.wat.encode("utf-8"))
        else:
            sys.stdout.write(result.wat)
    else:
        write_atomic(args.output, result.wasm)
    meta = result.meta
    where = f" -> {args.output}" if args.output else ""
    warnings = len(result.warnings)
    print(f"{name}: compiled {meta['policy']} {meta['version']}{where}: {len(result.wasm):,} bytes, "
          f"gas_max {meta['gas_max']:,}, {len(meta['rules'])} rules, "
          f"{warnings} warning{'s' if warnings != 1 else ''}", file=sys.stderr)
    return EXIT_OK
