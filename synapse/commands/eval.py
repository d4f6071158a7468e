"""`synapse eval MODULE`: evaluate a policy module once, or once per line of a JSONL file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import IO

import orjson

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, read_lines
from axon.strictjson import JsonError, refuse_repeated_keys
from synapse.artifacts import ArtifactRefused, ArtifactSetupError, add_arguments, open_for_cli
from synapse.decision import Decision
from synapse.errors import LimitsError, ModuleError
from synapse.evaluate import Evaluator
from synapse.sandbox import Limits

HELP = """Evaluate a compiled policy module in the sandbox and print each decision as one line of JSON:
{"verdict", "code", "rule", "logs", "reason", "gas_used"}.

One decision:
  synapse eval boiler.wasm --telemetry '{"pressure_bar": 97.5, "valve_open": false}' \\
                           --context '{"mode": "AUTO"}'

Replay, one decision per input line, in order (FILE or - for stdin):
  synapse eval boiler.wasm --input readings.jsonl
  each line: {"telemetry": {...}, "context": {...}}  (either may be left out: an empty object)

A line that is not such an object yields a DENY decision whose reason names the line; the replay goes on.
Every failure of an evaluation (a bad input, a fault, a trap, a limit) is a DENY decision with a reason.

Signed artifacts: MODULE.sop is verified by Axon first (signature, hashes, the signer's authority,
revocation and supersession on --ledger) and decrypted in memory with --key; a .wasm runs unverified,
for development only, and says so on stderr.

Exit status: 0 decisions were printed (whatever they say), 1 the .sop artifact failed verification
(nothing was evaluated), 2 the module could not be read or was refused, or the arguments or input
file were unusable.
"""

_RECORD_KEYS = frozenset(("telemetry", "context"))
_EMPTY: dict = {}


def _size(value: object) -> int:
    """Keys an input object holds (0 for anything else, which the evaluator refuses anyway)."""
    return len(value) if type(value) is dict else 0
_NEWLINE = orjson.OPT_APPEND_NEWLINE


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="evaluate a policy module on telemetry (once, or per JSONL line)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("module", metavar="MODULE",
                        help="signed artifact (.sop, verified by Axon); a raw .wasm for development only")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--telemetry", metavar="JSON", help="telemetry object for one decision")
    source.add_argument("--input", metavar="FILE",
                        help="JSONL file of {telemetry, context} lines; - for stdin")
    parser.add_argument("--context", metavar="JSON", help="context object for one decision (default {})")
    parser.add_argument("--gas", type=int, metavar="N", help="gas budget (default: the module's gas_max)")
    parser.add_argument("--fuel", type=int, metavar="N",
                        help="wasmtime fuel per evaluation (default: from the gas budget)")
    parser.add_argument("--deadline-ms", type=float, metavar="MS", default=Limits.deadline_ms,
                        help="wall-clock limit per evaluation (default %(default)g ms)")
    parser.add_argument("--line-buffered", action="store_true",
                        help="flush after every decision (for a live stream on stdin)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.input is not None and args.context is not None:
        raise UsageError("--context goes with --telemetry; with --input each line carries its own context")
    try:
        limits = Limits(gas=args.gas, fuel=args.fuel, deadline_ms=args.deadline_ms)
        evaluator = open_for_cli(args, limits)
    except ArtifactRefused as exc:
        print(f"synapse: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_FAIL
    except (LimitsError, ModuleError, ArtifactSetupError) as exc:
        raise UsageError(f"{exc} [{exc.code}]") from None
    out = sys.stdout.buffer
    if args.telemetry is not None:
        telemetry = _argument_object("--telemetry", args.telemetry)
        context = _argument_object("--context", args.context) if args.context is not None else {}
        out.write(orjson.dumps(evaluator.evaluate(telemetry, context).to_dict(), option=_NEWLINE))
        out.flush()
        return EXIT_OK
    replay(evaluator, read_lines(args.input, stdin=True), out, line_buffered=args.line_buffered)
    out.flush()
    return EXIT_OK


def _argument_object(option: str, text: str) -> dict:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{option} must be a JSON object")
    return value


def replay(
    evaluator: Evaluator, lines: Iterable[bytes], out: IO[bytes], *, line_buffered: bool = False
) -> int:
    """Write one decision per input line, in order; return how many were written."""
    loads, dumps, evaluate, write = orjson.loads, orjson.dumps, evaluator.evaluate, out.write
    count = 0
    for count, line in enumerate(lines, 1):  # noqa: B007 (count is the result)
        try:
            record = loads(line)
        except orjson.JSONDecodeError as exc:
            decision = Decision.deny(f"line {count}: not valid JSON: {exc}")
        else:
            if type(record) is dict and record.keys() <= _RECORD_KEYS:
                telemetry, context = record.get("telemetry", _EMPTY), record.get("context", _EMPTY)
                try:  # a reading sent twice on one line is ambiguous: which did the plant mean?
                    refuse_repeated_keys(line, len(record) + _size(telemetry) + _size(context))
                except JsonError as exc:
                    decision = Decision.deny(f"line {count}: not strict JSON: {exc}")
                else:
                    decision = evaluate(telemetry, context)
            else:
                decision = Decision.deny(
                    f'line {count}: expected an object with "telemetry" and "context" (and nothing else)'
                )
        write(dumps(decision.to_dict(), option=_NEWLINE))
        if line_buffered:
            out.flush()
    return count
