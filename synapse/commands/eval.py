"""`synapse eval MODULE`: evaluate a policy module once, or once per line of a JSONL file."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from typing import IO

import orjson

from axon import strictjson
from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, read_lines
from synapse.artifacts import (
    ArtifactRefused,
    ArtifactSetupError,
    add_arguments,
    needs_settings,
    open_for_cli,
    read_settings,
)
from synapse.decision import Decision
from synapse.errors import LimitsError, ModuleError
from synapse.evaluate import Evaluator
from synapse.explain import not_run
from synapse.inputs import Reading, ReadingInvalid
from synapse.sandbox import Limits

HELP = """Evaluate a compiled policy module in the sandbox and print each decision as one line of JSON:
{"verdict", "code", "rule", "logs", "reason", "gas_used"}.

One decision:
  synapse eval boiler.wasm --telemetry '{"pressure_bar": 97.5, "valve_open": false}' \\
                           --context '{"mode": "AUTO"}'

Replay, one decision per input line, in order (FILE or - for stdin):
  synapse eval boiler.wasm --input readings.jsonl
  each line is a reading: {"telemetry": {...}, "context": {...}, "policy": NAME}, context and policy
  optional; a policy, if named, must be this module's (docs/service.md, "Readings")

A line that is not such a reading yields a DENY decision whose reason names the line; the replay goes on.
Every failure of an evaluation (a bad input, a fault, a trap, a limit) is a DENY decision with a reason.

Why: with --explain each decision also carries "explanation", read from the trace the module wrote
while it decided: every named condition's value, every rule's condition and outcome (decided, held,
false, faulted, not reached) and why (docs/abi.md, "Trace").

Signed artifacts: MODULE.sop is verified by Axon first (signature, hashes, the signer's authority,
revocation and supersession on --ledger) and decrypted in memory with --key; a .wasm runs unverified,
for development only, and says so on stderr.

Exit status: 0 decisions were printed (whatever they say), 1 the .sop artifact failed verification
(nothing was evaluated), 2 the module could not be read or was refused, or the arguments or input
file were unusable.
"""

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
    parser.add_argument("--eval-timeout-ms", "--deadline-ms", dest="eval_timeout_ms", type=float,
                        metavar="MS", help="wall-clock limit per evaluation (default: [limits] "
                                           "eval_timeout_ms of --config, else 100 ms)")
    parser.add_argument("--explain", action="store_true",
                        help="add each decision's explanation, from the module's own trace")
    parser.add_argument("--line-buffered", action="store_true",
                        help="flush after every decision (for a live stream on stdin)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.input is not None and args.context is not None:
        raise UsageError("--context goes with --telemetry; with --input each line carries its own context")
    try:
        settings = read_settings(args) if needs_settings(args) else None
        deadline_ms = Limits.deadline_ms if settings is None else settings.limits.eval_timeout_ms
        limits = Limits(gas=args.gas, fuel=args.fuel, deadline_ms=deadline_ms)
        evaluator = open_for_cli(args.module, settings, limits)
    except ArtifactRefused as exc:
        print(f"synapse: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_FAIL
    except (LimitsError, ModuleError, ArtifactSetupError) as exc:
        raise UsageError(f"{exc} [{exc.code}]") from None
    out = sys.stdout.buffer
    if args.telemetry is not None:
        doc = {"telemetry": _argument("--telemetry", args.telemetry)}
        if args.context is not None:
            doc["context"] = _argument("--context", args.context)
        try:
            reading = Reading.from_json(doc)
        except ReadingInvalid as exc:
            raise UsageError(f"{exc} [{exc.code}]") from None
        decide = evaluator.explain if args.explain else evaluator.evaluate
        decision = decide(reading.telemetry, reading.context)
        out.write(orjson.dumps(decision.to_dict(), option=_NEWLINE))
        out.flush()
        return EXIT_OK
    replay(evaluator, read_lines(args.input, stdin=True), out, line_buffered=args.line_buffered,
           explain=args.explain)
    out.flush()
    return EXIT_OK


def _argument(option: str, text: str) -> object:
    try:
        return strictjson.loads(text)
    except strictjson.JsonError as exc:
        raise UsageError(f"{option} is not strict JSON: {exc}") from None


def replay(
    evaluator: Evaluator, lines: Iterable[bytes], out: IO[bytes], *, line_buffered: bool = False,
    explain: bool = False,
) -> int:
    """Write one decision per input line, in order (each with its explanation with `explain`); return how
    many were written."""
    evaluate = evaluator.explain if explain else evaluator.evaluate
    dumps, write, parse = orjson.dumps, out.write, Reading.parse
    policy = evaluator.meta.policy
    count = 0
    for count, line in enumerate(lines, 1):  # noqa: B007 (count is the result)
        try:
            reading = parse(line)
        except ReadingInvalid as exc:
            decision = Decision.deny(f"line {count}: {exc}")
        else:
            if reading.policy is None or reading.policy == policy:
                decision = evaluate(reading.telemetry, reading.context)
            else:
                decision = Decision.deny(f"line {count}: the reading is for policy {reading.policy!r}; "
                                         f"this module is {policy!r}")
        if explain and decision.explanation is None:
            decision = decision.explained(not_run(decision.reason or ""))
        write(dumps(decision.to_dict(), option=_NEWLINE))
        if line_buffered:
            out.flush()
    return count
