"""`synapse decisions verify LOG`: check a decision log's hash chain and seals."""

from __future__ import annotations

import argparse
import json

from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, io_error
from axon.keys import InvalidKey, KeyFileError, PublicKey, load_identity
from axon.ledger import Ledger, LedgerError
from synapse.service.decision_log import verify_log
from synapse.service.errors import DecisionLogError

HELP = """Check a decision log written by `synapse serve` / `synapse run`.

LOG is the log directory (every stream in it is checked, from its first segment) or one segment file
(checked alone, its first record taken as the anchor). Each record's hash, its link to the previous
record, the sequence numbers, the segment numbering and every seal's signature are checked; the first
bad record is named with file, line, seq and reason.

Only what the node vouches for passes: every record must be covered by a seal (--allow-unsealed-tail
accepts records after the last seal, e.g. of a running or crashed node, and says how many); a stream
stays bound to the node its first record declares; a missing or emptied segment, at the end too,
fails, and so does a directory with no segments left.

Pin the node key with --public-key (hex) or --node-key (a key file): otherwise the key the log itself
declares is used, which shows the log is consistent but not that your node wrote it.

With --ledger PATH the node's key must be the one the ledger registers for the DID the log declares,
and the log must contain every record the node anchored there (LOG_ANCHOR) with the same hash: records
cut off the end, or a stream deleted, after it was anchored are found even at a seal boundary.

Exit status: 0 the log is intact, 1 a bad record was found, 2 the log or key could not be read.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("decisions", help="inspect decision logs",
                                   description="Inspect decision logs.")
    sub = parser.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)
    verify = sub.add_parser("verify", help="check a decision log's hash chain and seals", description=HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    verify.add_argument("log", metavar="LOG", help="log directory or one segment file")
    pin = verify.add_mutually_exclusive_group()
    pin.add_argument("--public-key", metavar="HEX", help="the node's public key (hex, 33 or 65 bytes)")
    pin.add_argument("--node-key", metavar="FILE", help="the node's key file (its public key is used)")
    verify.add_argument("--ledger", metavar="PATH",
                        help="check the node key and the log's anchors on this ledger")
    verify.add_argument("--allow-unsealed-tail", action="store_true",
                        help="accept records after the last seal (reported with their count)")
    verify.add_argument("--json", action="store_true", help="print a JSON report")
    verify.set_defaults(run=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    pinned = None
    ledger = None
    try:
        if args.public_key:
            pinned = PublicKey.from_hex(args.public_key)
        elif args.node_key:
            pinned = load_identity(args.node_key).key.public_key
        if args.ledger:
            ledger = Ledger.open(args.ledger)
        reports = verify_log(args.log, pinned, allow_unsealed_tail=args.allow_unsealed_tail, ledger=ledger)
    except (InvalidKey, KeyFileError, DecisionLogError) as exc:
        raise UsageError(str(exc)) from exc
    except LedgerError as exc:
        raise UsageError(f"the ledger {args.ledger} cannot be read: {exc} [{exc.code}]") from exc
    except OSError as exc:
        raise io_error("read", exc.filename or args.log, exc) from None  # the segment that failed
    finally:
        if ledger is not None:
            ledger.close()
    if args.json:
        print(json.dumps({"ok": all(r.ok for r in reports), "streams": [r.to_dict() for r in reports]},
                         indent=2))
    else:
        for r in reports:
            if r.ok:
                print(f"OK   stream {r.stream}: {r.records} records ({r.decisions} decisions) in "
                      f"{r.segments} segment(s), {r.seals} seal(s) by {r.signer or 'unknown signer'}")
            else:
                print(f"BAD  stream {r.stream}: first bad record: {r.first_bad}")
            for note in r.notes:
                print(f"     note: {note}")
        if pinned is None and ledger is None:
            print("     note: no --public-key/--node-key/--ledger given: seals were checked against the key "
                  "the log declares")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAIL
