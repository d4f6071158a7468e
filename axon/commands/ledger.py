"""`axon ledger ...`: create, inspect, verify and append to the embedded ledger (docs/ledger.md)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from axon import strictjson
from axon.clikit import EXIT_FAIL, EXIT_OK, UsageError, help_for, read_text
from axon.commands.loaders import (
    INDEX_ENV,
    LEDGER_ENV,
    chain_index_path,
    ledger_location,
    ledger_path,
    load_key,
    open_ledger_to_check,
)
from axon.errors import AxonError
from axon.keys import KEY_ENV
from axon.ledger import DEFAULT_CHAIN_ID, ChainBroken, Entry, Ledger, RejectedTransaction, ops

HELP = f"""Keep the embedded ledger: keys and their authority levels, groups, artifacts and messages.

Every change is an operation signed by a registered key (an EIP-155 Ethereum transaction) and appended
to a hash-chained SQLite file. The ledger path comes from --ledger or ${LEDGER_ENV}; the signing key
from --key or ${KEY_ENV} (key file JSON or 64 hex digits).

--ledger may be an Ethereum node's JSON-RPC URL (http://...): operations are then sent to the chain
with eth_sendRawTransaction and counted once --confirmations blocks are on top of them; the command
keeps a local index of the chain (--index, ${INDEX_ENV}, else a file under ~/.cache/sopcos).
`axon ledger status` shows the chain id, head, confirmations and how far the index lags (docs/fleet.md).

exit codes: 0 done, 1 refused by the ledger or verification failed, 2 bad arguments, key or file
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("ledger", help="keep the embedded ledger (keys, artifacts, messages)",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(title="ledger commands", metavar="COMMAND")
    parser.set_defaults(run=help_for(parser))

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--ledger", metavar="PATH|URL",
                        help=f"the ledger file, or an Ethereum node's URL (default: ${LEDGER_ENV})")
    common.add_argument("--json", action="store_true", help="print the result as JSON")
    common.add_argument("--index", metavar="PATH", help="with a URL: the local index of the chain")
    common.add_argument("--confirmations", type=int, metavar="N",
                        help="with a URL: blocks on top of an operation before it counts (default 0)")
    signed = argparse.ArgumentParser(add_help=False, parents=[common])
    signed.add_argument("--key", metavar="KEYFILE", help=f"the signing key file (default: ${KEY_ENV})")

    def command(name: str, help_text: str, run: Callable[[argparse.Namespace], int],
                parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, parents=parents)
        p.set_defaults(run=run)
        return p

    p = command("init", "create a ledger whose root (LVL_5) is the given key", _init, [common])
    p.add_argument("--root-key", metavar="KEYFILE", help=f"the root's key file (default: ${KEY_ENV})")
    p.add_argument("--chain-id", type=int, default=DEFAULT_CHAIN_ID,
                   help=f"EIP-155 chain id of this ledger (default {DEFAULT_CHAIN_ID}; pick your own)")

    p = command("verify", "re-check every entry from genesis; exit 1 naming the first bad entry", _verify,
                [common])
    p.add_argument("--expect-head", metavar="HEX",
                   help="also require this head hash (from an earlier verify): detects cut-off entries")

    command("status", "where the ledger is: its chain id and head (and on a chain, confirmations, lag)",
            _status, [common])

    p = command("show", "list the entries, oldest first", _show, [common])
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="only entries after this seq")

    p = command("register-key", "register a key at a level below the signer's", _register_key, [signed])
    p.add_argument("--did", required=True, help="the new key's DID, e.g. did:sopcos:alice#key-1")
    p.add_argument("--public-key", required=True, metavar="HEX", help="its secp256k1 public key (hex)")
    p.add_argument("--level", required=True, metavar="LVL_n", help="its authority level, LVL_1..LVL_4")

    p = command("revoke-key", "revoke a key (itself, or one of a lower level)", _revoke_key, [signed])
    p.add_argument("--did", required=True, help="the key to revoke")

    p = command("group", "define (or redefine) a group of keys; LVL_4+", _group, [signed])
    p.add_argument("--group", required=True, metavar="DID",
                   help="the group's DID, e.g. did:sopcos:group:line-1")
    p.add_argument("--member", required=True, nargs="+", metavar="DID", help="member key DIDs")

    p = command("register-artifact", "register an artifact's URN (from a .sop file or given fields)",
                _register_artifact, [signed])
    p.add_argument("--sop", metavar="FILE", type=Path,
                   help="read urn, policy, version and authority_level from the envelope's meta")
    p.add_argument("--urn")
    p.add_argument("--policy")
    p.add_argument("--version")
    p.add_argument("--authority", metavar="LVL_n", help="the artifact's declared authority level")

    p = command("revoke-artifact", "revoke an artifact", _revoke_artifact, [signed])
    p.add_argument("--urn", required=True)
    p.add_argument("--reason", required=True)

    p = command("supersede", "mark an artifact as replaced by a newer one of the same policy", _supersede,
                [signed])
    p.add_argument("--urn", required=True, metavar="OLD")
    p.add_argument("--by", required=True, metavar="NEW", help="the successor's URN")


# --- edges: output --------------------------------------------------------------------------------------


def _fail(exc: AxonError) -> int:
    print(f"axon ledger: {exc} [{exc.code}]", file=sys.stderr)
    return EXIT_FAIL


def _print(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2) if args.json else text)


def _summary(entry: Entry) -> str:
    op = entry.op
    subject = {
        "KEY_REGISTER": lambda: f"{op.get('did')} {op.get('level')}",
        "KEY_REVOKE": lambda: str(op.get("did")),
        "GROUP_DEFINE": lambda: f"{op.get('group')} = {', '.join(op.get('members', []))}",
        "ARTIFACT_REGISTER": lambda: f"{op.get('urn')} {op.get('policy')} {op.get('version')} "
                                     f"{op.get('authority_level')}",
        "ARTIFACT_REVOKE": lambda: f"{op.get('urn')} ({op.get('reason')})",
        "ARTIFACT_SUPERSEDE": lambda: f"{op.get('urn')} -> {op.get('successor')}",
        "MESSAGE": lambda: f"to {op.get('to')}",
        "LOG_ANCHOR": lambda: f"{op.get('node')} stream {op.get('stream_id')} seq {op.get('seq')} "
                              f"{op.get('head')}",
    }[entry.op_name]()
    return f"{entry.seq:>6}  {entry.timestamp}  {entry.op_name:<18} {subject}  (by {entry.sender})"


# --- commands --------------------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> Ledger:
    return open_ledger_to_check(args.ledger, args.index, args.confirmations)


def _status(args: argparse.Namespace) -> int:
    location = ledger_location(args.ledger)
    if not location.lower().startswith(("http://", "https://")):
        try:
            with _open(args) as ledger:
                data = {"ledger": location, "chain_id": ledger.chain_id, "entries": ledger.head_seq,
                        "head_hash": ledger.head_hash.hex()}
        except ChainBroken as exc:
            return _fail(exc)
        _print(args, data, f"embedded ledger {location}: chain id {data['chain_id']}, {data['entries']} "
                           f"entries, head {data['head_hash']}")
        return EXIT_OK
    from axon.ledger.chain import ChainLedger

    try:
        ledger = ChainLedger.connect(location, chain_index_path(location, args.index),
                                     confirmations=args.confirmations or 0)
    except AxonError as exc:
        raise UsageError(f"cannot use the ledger on {location}: {exc} [{exc.code}]") from None
    with ledger:
        with contextlib.suppress(AxonError):  # away: the status says so
            ledger.follow_to_head()
        status = ledger.status()
    data = status.to_dict()
    if status.error is not None:
        _print(args, data, f"chain {status.node}: unreachable ({status.error}); the index holds "
                           f"{status.entries} entries up to block {status.indexed_block}")
        return EXIT_FAIL
    _print(args, data, f"chain {status.node}: chain id {status.chain_id}, head block {status.chain_head}, "
                       f"confirmations {status.confirmations}, indexed to block {status.indexed_block} "
                       f"(lag {status.lag_blocks} blocks), {status.entries} entries")
    return EXIT_OK


def _init(args: argparse.Namespace) -> int:
    if ledger_location(args.ledger).lower().startswith(("http://", "https://")):
        return _init_on_chain(args)
    path = ledger_path(args.ledger)
    root = load_key(args.root_key)
    try:
        ledger = Ledger.init(path, root, args.chain_id, now=int(time.time()))
    except AxonError as exc:  # an existing file, a bad chain id or key: nothing about ledger rules
        raise UsageError(f"{exc} [{exc.code}]") from exc
    with ledger:
        genesis = ledger.entries()[0]
        _print(args, {"ledger": str(path), "chain_id": ledger.chain_id, "root": root.did,
                      "root_address": root.key.address, "genesis": genesis.to_dict()},
               f"created ledger {path} (chain id {ledger.chain_id}); root {root.did} at LVL_5")
    return EXIT_OK


def _init_on_chain(args: argparse.Namespace) -> int:
    """The genesis entry (the root registering itself at LVL_5) sent to the chain; its chain id is the
    node's, not --chain-id."""
    root = load_key(args.root_key)
    with _open(args) as ledger:
        if ledger.head_seq:
            raise UsageError(f"the chain already holds a ledger (root {ledger.root_did}): one per chain")
        try:
            genesis = ledger.sign_and_submit(root, ops.register_key(root.did, root.key.public_key, "LVL_5"),
                                             now=int(time.time()))
        except AxonError as exc:
            return _fail(exc)
        _print(args, {"ledger": args.ledger, "chain_id": ledger.chain_id, "root": root.did,
                      "root_address": root.key.address, "genesis": genesis.to_dict()},
               f"created the ledger on chain id {ledger.chain_id}; root {root.did} at LVL_5 "
               f"(tx 0x{genesis.tx_hash.hex()})")
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    try:
        with _open(args) as ledger:
            report = ledger.verify_chain()
    except ChainBroken as exc:
        if args.json:
            print(json.dumps({"ok": False, **exc.to_dict()}, indent=2))
        return _fail(exc)
    if args.expect_head and args.expect_head.lower().removeprefix("0x") != report.head_hash.hex():
        if args.json:
            print(json.dumps({"ok": False, **report.to_dict(), "expected_head": args.expect_head}, indent=2))
        print(f"axon ledger: head is entry {report.head_seq} {report.head_hash.hex()}, not the expected "
              f"{args.expect_head}: entries were cut off or replaced", file=sys.stderr)
        return EXIT_FAIL
    _print(args, report.to_dict(),
           f"ok: {report.entries} entries verified; head entry {report.head_seq} "
           f"hash {report.head_hash.hex()}")
    return EXIT_OK


def _show(args: argparse.Namespace) -> int:
    try:
        with _open(args) as ledger:
            entries = ledger.entries(args.after)
    except ChainBroken as exc:
        return _fail(exc)
    if args.json:
        print(json.dumps([e.to_dict() for e in entries], indent=2))
    else:
        for entry in entries:
            print(_summary(entry))
    return EXIT_OK


def _append(args: argparse.Namespace, build: Callable[[], dict[str, Any]]) -> int:
    try:
        op = build()
    except AxonError as exc:  # a malformed DID, level, URN...: the arguments are wrong
        raise UsageError(str(exc)) from exc
    signer = load_key(args.key)
    try:
        with _open(args) as ledger:
            entry = ledger.sign_and_submit(signer, op, now=int(time.time()))
    except (RejectedTransaction, ChainBroken) as exc:
        return _fail(exc)
    _print(args, entry.to_dict(), f"appended entry {entry.seq}: {_summary(entry).split(maxsplit=2)[2]}\n"
                                  f"  tx 0x{entry.tx_hash.hex()}")
    return EXIT_OK


def _register_key(args: argparse.Namespace) -> int:
    return _append(args, lambda: ops.register_key(args.did, args.public_key, args.level))


def _revoke_key(args: argparse.Namespace) -> int:
    return _append(args, lambda: ops.revoke_key(args.did))


def _group(args: argparse.Namespace) -> int:
    return _append(args, lambda: ops.define_group(args.group, args.member))


def _register_artifact(args: argparse.Namespace) -> int:
    fields = {"urn": args.urn, "policy": args.policy, "version": args.version,
              "authority_level": args.authority}
    if args.sop is not None:
        given = [f"--{k.split('_')[0]}" for k, v in fields.items() if v is not None]
        if given:
            raise UsageError(f"--sop reads every field from the envelope; drop {', '.join(given)}")
        fields = _sop_fields(args.sop)
    missing = [f"--{k.split('_')[0]}" for k, v in fields.items() if v is None]
    if missing:
        raise UsageError(f"register-artifact needs --sop FILE or all of --urn --policy --version --authority "
                         f"(missing {', '.join(missing)})")
    return _append(args, lambda: ops.register_artifact(**fields))


def _sop_fields(path: Path) -> dict[str, Any]:
    try:
        envelope = strictjson.loads(read_text(path))
    except strictjson.JsonError as exc:
        raise UsageError(f"{path} is not a JSON .sop envelope") from exc
    meta = envelope.get("meta") if isinstance(envelope, dict) else None
    if not isinstance(meta, dict):
        raise UsageError(f"{path} has no meta object")
    fields = {name: meta.get(name) for name in ("urn", "policy", "version", "authority_level")}
    missing = [f"meta.{k}" for k, v in fields.items() if not isinstance(v, str)]
    if missing:
        raise UsageError(f"{path}: {', '.join(missing)} missing or not a string")
    return fields


def _revoke_artifact(args: argparse.Namespace) -> int:
    return _append(args, lambda: ops.revoke_artifact(args.urn, args.reason))


def _supersede(args: argparse.Namespace) -> int:
    return _append(args, lambda: ops.supersede_artifact(args.urn, args.by))
