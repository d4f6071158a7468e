"""`axon tx decode`: show what a signed Ethereum transaction says, who signed it, and its id."""

from __future__ import annotations

import argparse
import json
import re
import sys

from axon import ethtx
from axon.clikit import EXIT_FAIL, EXIT_OK, STDIN, UsageError, help_for, read_text
from axon.constraint_node import GWEI, data_text

HELP = """Decode a signed legacy Ethereum transaction (ledger operations, constraint-node readings).

Prints its fields, its id (keccak-256 of the bytes, as block explorers show it), the sender's address
recovered from the signature, the EIP-155 chain id, and the data (as text when printable, else hex).
HEX may have a 0x prefix and whitespace; use - to read it from standard input.

exit codes: 0 decoded and the signature is valid, 1 malformed or badly signed, 2 not hex
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("tx", help="decode Ethereum transactions", description=HELP,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(title="tx commands", metavar="COMMAND")
    parser.set_defaults(run=help_for(parser))
    p = sub.add_parser("decode", help="decode a signed transaction", description=HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("hex", metavar="HEX", help="the raw transaction in hex, or - for standard input")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(run=run)


def _raw(text: str) -> bytes:
    text = read_text(STDIN, stdin=True) if text == STDIN else text
    digits = re.sub(r"\s+", "", text).removeprefix("0x").removeprefix("0X")
    if not re.fullmatch(r"([0-9a-fA-F]{2})+", digits):
        raise UsageError("the transaction must be an even number of hex digits (0x prefix optional)")
    return bytes.fromhex(digits)


def run(args: argparse.Namespace) -> int:
    raw = _raw(args.hex)
    try:
        tx = ethtx.decode(raw)
    except ethtx.TransactionError as exc:
        print(f"axon tx: {exc} [{exc.code}]", file=sys.stderr)
        return EXIT_FAIL
    try:
        public_key, problem = tx.sender(), None
    except ethtx.TransactionError as exc:
        public_key, problem = None, exc
    text = data_text(tx.data)
    result = {
        **tx.to_dict(), "tx_hash": "0x" + tx.hash.hex(),
        "sender": public_key.address if public_key else None,
        "public_key": public_key.hex() if public_key else None,
        "data_text": text, "signature_valid": problem is None,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        chain = "none (pre-EIP-155, replayable on any chain)" if tx.chain_id is None else str(tx.chain_id)
        data = f"{json.dumps(text)} ({len(tx.data)} bytes)" if text is not None else \
            f"0x{tx.data.hex()} ({len(tx.data)} bytes)"
        print("\n".join([
            f"tx hash:    0x{tx.hash.hex()}",
            f"sender:     {public_key.address if public_key else f'INVALID SIGNATURE: {problem}'}",
            f"chain id:   {chain}",
            f"nonce:      {tx.nonce}",
            f"gas price:  {tx.gas_price} wei ({tx.gas_price / GWEI:g} GWei)",
            f"gas limit:  {tx.gas_limit}",
            f"to:         {'0x' + tx.to.hex() if tx.to else '(none: contract creation)'}",
            f"value:      {tx.value} wei",
            f"data:       {data}",
            f"v, r, s:    {tx.v}, {hex(tx.r)}, {hex(tx.s)}",
        ]))
    if problem is not None:
        print(f"axon tx: {problem} [{problem.code}]", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_OK
