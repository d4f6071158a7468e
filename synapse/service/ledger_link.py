"""The service's view of the ledger: reachable or not, and the facts an artifact's verification used.

`LedgerLink` opens the ledger lazily and again after any failure, or when the file was replaced, so
the service survives a ledger file that is missing, locked or broken, and reports that state (/readyz)
instead of stopping.

A ledger never goes backwards unnoticed. The link remembers, in the node state shared by the workers
and kept across restarts (node_state.py), the highest head (seq, entry hash) it verified, and on every
open and every check it requires the ledger to hold that very entry: a ledger cut short (an older
copy, a truncated file) lacks it, a rewritten one of any length has another hash there. Such a ledger
is not used (`LedgerRolledBack`: no upload, no load, no signed request, no anchor; the service serves
only what it verified before, as when the ledger is away) until it holds the entry again. Within one
open connection the ledger library already refuses entries changed under it (ChainBroken); the
remembered head covers what one connection cannot see: a restart, a replaced file, another worker.

`RecordingLedger` wraps a live ledger while Axon verifies an artifact and notes every record Axon
reads (signer key, artifact record, policy name, groups). Those facts are stored beside the artifact; when the
ledger cannot be reached at a restart, `SnapshotLedger` answers Axon's questions from them, so the
signature, URN and authority checks still run, against the last known good state of the ledger.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from axon.keys import PublicKey, Signer
from axon.ledger import ArtifactRecord, GroupRecord, KeyRecord, Ledger, LedgerError, PolicyRecord
from axon.ledger.chain import ChainLedger
from synapse.service.errors import ServiceError
from synapse.service.node_state import Head, NodeState, NodeStateError


class LedgerUnreachable(ServiceError):
    code = "SYNAPSE-SVC-LEDGER-UNREACHABLE"
    status = 503


class LedgerRolledBack(LedgerUnreachable):
    """The ledger does not hold the head this node verified: it went backwards or was rewritten."""

    code = "SYNAPSE-SVC-LEDGER-ROLLED-BACK"


EventFn = Callable[..., None]


def rollback_reason(remembered: Head, found: Head | None, head_seq: int) -> str | None:
    """Why a ledger whose head is `head_seq` and whose entry at the remembered seq is `found` (None: it
    has no such entry) does not extend the `remembered` head; None when it does."""
    seq, verified = remembered
    if found is None:
        return (f"the ledger ends at entry {head_seq}, but this node verified entry {seq} (hash "
                f"{verified.hex()[:16]}...): entries {head_seq + 1}..{seq} are missing (a truncated or "
                "older copy of the ledger)")
    if found[1] != verified:
        return (f"entry {seq} of the ledger is not the one this node verified (hash {found[1].hex()[:16]}... "
                f"instead of {verified.hex()[:16]}...): the ledger was rewritten")
    return None


def ledger_opener(checkpoint_keys: Sequence[PublicKey] = ()) -> Callable[[Path], Ledger]:
    """Opens a ledger file, from the newest checkpoint one of `checkpoint_keys` signed (LedgerLink's
    `opener`)."""
    def open_file(path: Path) -> Ledger:
        return Ledger.open(path, checkpoint_keys)
    return open_file


def chain_opener(url: str, confirmations: int, start_block: int,
                 checkpoint_keys: Sequence[PublicKey] = ()) -> Callable[[Path], Ledger]:
    """Opens the node's index of the ledger on the Ethereum node at `url` (LedgerLink's `opener`)."""
    def open_index(path: Path) -> Ledger:
        return ChainLedger.connect(url, path, confirmations=confirmations, start_block=start_block,
                                   checkpoint_keys=checkpoint_keys)
    return open_index


class LedgerLink:
    """`heads`: where the verified head is remembered (None: nowhere, for one-shot use). `opener`: how
    the file at `path` is opened (chain_opener for the index of a ledger on a chain; each check then
    first brings the index up to the chain's confirmed head)."""

    def __init__(self, path: Path | None, clock: Callable[[], float] = time.time, *,
                 heads: NodeState | None = None, events: EventFn | None = None,
                 opener: Callable[[Path], Ledger] = Ledger.open, checkpoint_signer: Signer | None = None,
                 checkpoint_every: int = 0) -> None:
        self.path = path
        self._opener = opener
        # Every `checkpoint_every` entries the node signs a checkpoint with its key, and opens from its own
        # newest one: start-up does not replay all history (axon/ledger/checkpoint.py).
        self._checkpoint_signer = checkpoint_signer
        self._checkpoint_every = checkpoint_every
        self._checkpointed = 0  # the seq of the last checkpoint this link wrote
        self.chain_error: str | None = None  # the chain is away: the index answers as it last was
        self._clock = clock
        self._heads = heads
        self._events = events or (lambda *a, **k: None)
        self._lock = threading.RLock()  # the follower thread and request handlers share the connection
        self._ledger: Ledger | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) of the file the connection reads
        self._verified: Head | None = None  # the head last checked on this connection
        self.reachable = False
        self.error: str | None = "not checked yet" if path is not None else "no ledger configured"
        self.rolled_back: str | None = None  # why the ledger is not used, when it does not extend
        self.last_ok: float | None = None
        self.head_seq: int | None = None

    def ledger(self) -> Ledger:
        """The open ledger, or LedgerUnreachable / LedgerRolledBack (and the link is marked down)."""
        if self.path is None:
            raise LedgerUnreachable("no ledger is configured")
        with self._lock:
            ledger = self._connection(self.path)
            if self.rolled_back is not None:
                raise LedgerRolledBack(self.rolled_back)
            return ledger

    def check(self) -> int:
        """Check the ledger still extends the verified head and remember its head; returns its seq.
        Raises LedgerUnreachable or LedgerRolledBack."""
        if self.path is None:
            raise LedgerUnreachable("no ledger is configured")
        with self._lock:
            ledger = self._connection(self.path)
            if isinstance(ledger, ChainLedger):
                self._follow_chain(ledger)
                if self.chain_error is not None:  # the index still answers: stale, so not "reachable"
                    self.reachable, self.error = False, self.chain_error
                    raise LedgerUnreachable(f"the chain cannot be reached; the node's index answers as it "
                                            f"last was: {self.chain_error}")
            try:
                head = self._verify_head(ledger)
            except (LedgerError, OSError) as exc:
                self._fail(exc)
            self.mark_ok(head)
            self._checkpoint(ledger, head)
            return head

    def _follow_chain(self, ledger: ChainLedger) -> None:
        """Index the chain's confirmed blocks. The chain away is not the ledger away: the index keeps
        answering (the last known good state) and the event says so once."""
        try:
            report = ledger.follow_to_head()
        except LedgerError as exc:
            if self.chain_error is None:
                self._events("ledger_chain_unavailable", reason=str(exc))
            self.chain_error = str(exc)
            return
        if self.chain_error is not None:
            self._events("ledger_chain_back", chain_head=report.chain_head,
                         indexed_block=report.indexed_block)
            self.chain_error = None
        if report.fork_block is not None:
            self._events("ledger_chain_reorganised", fork_block=report.fork_block,
                         rewound_entries=report.rewound_entries)
        for refused in report.refused:
            self._events("ledger_operation_refused", block=refused.block,
                         tx_hash="0x" + refused.tx_hash.hex(), code=refused.code, reason=refused.reason)

    def _checkpoint(self, ledger: Ledger, head: int) -> None:
        last = max(ledger.checkpoint_seq, self._checkpointed)
        due = self._checkpoint_every > 0 and head - last >= self._checkpoint_every
        if self._checkpoint_signer is None or not due:
            return
        try:
            self._checkpointed = ledger.write_checkpoint(self._checkpoint_signer)
        except (LedgerError, OSError) as exc:  # the next check tries again; nothing depends on it
            self._events("ledger_checkpoint_failed", reason=str(exc))
            return
        self._events("ledger_checkpointed", seq=self._checkpointed)

    def mark_ok(self, head: int | None = None) -> None:
        self.reachable, self.error, self.last_ok = True, None, self._clock()
        if head is not None:
            self.head_seq = head

    def failed(self, exc: BaseException) -> None:
        """Someone else's read of the ledger failed: drop the connection, note why."""
        with self._lock:
            self._drop(f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        with self._lock:
            self._drop(self.error)

    def _connection(self, path: Path) -> Ledger:
        """The connection, (re)opened and its head checked when there is none or the file was replaced.
        A ledger that does not extend the verified head stays open (so that the next check sees it
        come right) but only `check` uses it."""
        if self._ledger is not None and _file_id(path) != self._file:
            self._drop("the ledger file disappeared or was replaced")
        if self._ledger is None:
            file = _file_id(path)  # before opening: a file replaced meanwhile is reopened next time
            try:
                self._ledger = self._opener(path)
                self._file, self._verified = file or _file_id(path), None
                if isinstance(self._ledger, ChainLedger):  # an index is caught up before its first use
                    self._follow_chain(self._ledger)
                self._verify_head(self._ledger)
            except LedgerRolledBack:
                pass
            except (LedgerError, OSError) as exc:
                self._fail(exc)
        return self._ledger  # type: ignore[return-value]

    def _verify_head(self, ledger: Ledger) -> int:
        """Require `ledger` to hold the remembered head and remember its own (see the module docstring)."""
        head = (ledger.head_seq, ledger.head_hash)
        if self._heads is None or head == self._verified:
            return head[0]

        def extension(remembered: Head | None) -> Head:
            start = head[0] if remembered is None else remembered[0]
            entries = ledger.entries(after_seq=start - 1)
            if remembered is not None:
                found = (entries[0].seq, entries[0].entry_hash) if entries else None
                reason = rollback_reason(remembered, found, ledger.head_seq)
                if reason is not None:
                    raise LedgerRolledBack(reason)
            return (entries[-1].seq, entries[-1].entry_hash) if entries else head

        try:
            self._heads.advance_head(extension)
        except LedgerRolledBack as exc:
            self._refuse(ledger, exc.message)
            raise
        except NodeStateError as exc:  # without the remembered head the ledger cannot be checked
            self._drop(exc.message)
            raise LedgerUnreachable(exc.message) from None
        self._verified = head
        if self.rolled_back is not None:
            self._events("ledger_extends_again", head_seq=head[0], previously=self.rolled_back)
            self.rolled_back = None
        return head[0]

    def _refuse(self, ledger: Ledger, reason: str) -> None:
        """Stop using a ledger that does not extend the verified head: whoever holds the connection
        (a command inbox, a verification under way) loses it, and a fresh one is kept for `check`."""
        if self.rolled_back != reason:
            self._events("ledger_rolled_back", path=str(self.path), reason=reason)
        self.rolled_back = reason
        if self._verified is not None and self.path is not None:  # in use: close it under its holders
            self._drop(reason)
            with contextlib.suppress(LedgerError, OSError):  # the next check reopens if this fails
                self._file = _file_id(self.path)
                self._ledger = self._opener(self.path)
        self._verified = None
        self.reachable = False
        self.error = reason

    def _fail(self, exc: BaseException) -> None:
        self._drop(f"{type(exc).__name__}: {exc}")
        raise LedgerUnreachable(f"the ledger {self.path} cannot be read: {exc}") from None

    def _drop(self, reason: str | None) -> None:
        if self._ledger is not None:
            with contextlib.suppress(Exception):  # closing a broken connection may fail too
                self._ledger.close()
        self._ledger = None
        self._verified = None
        self.reachable = False
        self.error = reason


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


# --- facts ------------------------------------------------------------------------------------------


def _key_to_dict(rec: KeyRecord) -> dict[str, Any]:
    return {**asdict(rec), "public_key": rec.public_key.hex()}


def _key_from_dict(doc: dict[str, Any]) -> KeyRecord:
    return KeyRecord(**{**doc, "public_key": PublicKey.from_hex(doc["public_key"])})


def _group_from_dict(doc: dict[str, Any]) -> GroupRecord:
    return GroupRecord(**{**doc, "members": tuple(doc["members"])})


def _artifact_from_dict(doc: dict[str, Any]) -> ArtifactRecord:
    known = {f.name for f in fields(ArtifactRecord)}
    return ArtifactRecord(**{k: v for k, v in doc.items() if k in known})


class RecordingLedger:
    """Passes reads through to a live ledger and records what was read (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self.facts: dict[str, Any] = {"chain_id": ledger.chain_id, "keys": {}, "addresses": {},
                                      "artifacts": {}, "policies": {}, "groups": {}, "group_members": {}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def key(self, did: str) -> KeyRecord | None:
        rec = self._ledger.key(did)
        self.facts["keys"][did] = None if rec is None else _key_to_dict(rec)
        return rec

    def key_by_address(self, address: str) -> KeyRecord | None:
        rec = self._ledger.key_by_address(address)
        self.facts["addresses"][address] = None if rec is None else _key_to_dict(rec)
        return rec

    def artifact(self, urn: str) -> ArtifactRecord | None:
        rec = self._ledger.artifact(urn)
        self.facts["artifacts"][urn] = None if rec is None else asdict(rec)
        return rec

    def policy(self, name: str) -> PolicyRecord | None:
        rec = self._ledger.policy(name)
        self.facts["policies"][name] = None if rec is None else asdict(rec)
        return rec

    def group(self, group_did: str) -> GroupRecord | None:
        rec = self._ledger.group(group_did)
        self.facts["groups"][group_did] = None if rec is None else asdict(rec)
        return rec

    def group_members(self, group_did: str) -> list[KeyRecord]:
        members = self._ledger.group_members(group_did)
        self.facts["group_members"][group_did] = [_key_to_dict(m) for m in members]
        return members


class SnapshotLedger:
    """Answers from recorded facts; a question never asked while online cannot be answered offline."""

    def __init__(self, facts: dict[str, Any]) -> None:
        self._facts = facts

    @property
    def chain_id(self) -> int:
        return int(self._facts.get("chain_id", 0))

    def _get(self, table: str, key: str) -> Any:
        found = self._facts.get(table, {})
        if key not in found:
            raise LedgerUnreachable(f"the ledger cannot be reached and its last known state has no {table} "
                                    f"record for {key}")
        return found[key]

    def key(self, did: str) -> KeyRecord | None:
        doc = self._get("keys", did)
        return None if doc is None else _key_from_dict(doc)

    def key_by_address(self, address: str) -> KeyRecord | None:
        doc = self._get("addresses", address)
        return None if doc is None else _key_from_dict(doc)

    def artifact(self, urn: str) -> ArtifactRecord | None:
        doc = self._get("artifacts", urn)
        return None if doc is None else _artifact_from_dict(doc)

    def policy(self, name: str) -> PolicyRecord | None:
        doc = self._get("policies", name)  # facts stored before policy names were bound have none
        return None if doc is None else PolicyRecord(**doc)

    def group(self, group_did: str) -> GroupRecord | None:
        doc = self._get("groups", group_did)
        return None if doc is None else _group_from_dict(doc)

    def group_members(self, group_did: str) -> list[KeyRecord]:
        return [_key_from_dict(d) for d in self._get("group_members", group_did)]
