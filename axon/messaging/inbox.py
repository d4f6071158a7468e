"""Reading SIP-017 messages addressed to one identity from the embedded ledger (OpCode 9 entries).

`LedgerInbox.poll()` returns every new MESSAGE entry to this receiver's DID or address, in ledger order,
each as an `InboxItem`: a `Received` message, an ignored unknown type, or the MessagingError that
dropped it. The cursor (`after_seq`) advances past everything returned, so each entry is read once;
persisting it (`axon msg inbox` keeps it in a file) is the caller's choice.

Freshness reference: a live consumer (the sidecar) checks timestamps against its own clock, so a command
read late is stale (fail safe). A person reading their inbox later passes `at_entry_time=True`: each
message is then checked against the time the ledger accepted it, which says whether it was fresh when
it was posted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from axon.messaging.errors import MessagingError
from axon.messaging.receiver import LedgerEntry, Received, Receiver
from axon.messaging.signed import LedgerKeys, LedgerLike


class MessageLedger(LedgerLike, Protocol):
    def messages(self, to: str, after_seq: int = 0) -> list[Any]: ...


@dataclass(frozen=True)
class InboxItem:
    seq: int
    ledger_time: int
    sender_address: str
    received: Received | None  # None: dropped (see error) or an unknown type, ignored
    error: MessagingError | None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"seq": self.seq, "ledger_time": self.ledger_time,
                               "sender_address": self.sender_address}
        if self.received is not None:
            sender, message = self.received.sender, self.received.message
            doc.update(status="accepted", sender={"did": sender.did, "level": f"LVL_{sender.level}",
                                                  "source": sender.source},
                       message=message.to_dict())
        elif self.error is not None:
            doc.update(status="dropped", error=self.error.to_dict())
        else:
            doc.update(status="ignored", reason="unknown message type (SIP-017 §3.4 forward compatibility)")
        return doc


class LedgerInbox:
    def __init__(self, ledger: MessageLedger, receiver: Receiver, after_seq: int = 0) -> None:
        self.ledger = ledger
        self.receiver = receiver
        self.keys = LedgerKeys(ledger)
        self.after_seq = after_seq

    def poll(self, now: float | None = None, at_entry_time: bool = False) -> list[InboxItem]:
        entries: dict[int, LedgerEntry] = {}
        for name in sorted(self.receiver.names):
            entries.update((e.seq, e) for e in self.ledger.messages(name, self.after_seq))
        items = [self._item(entries[seq], entries[seq].timestamp if at_entry_time else now)
                 for seq in sorted(entries)]
        if entries:
            self.after_seq = max(entries)
        return items

    def _item(self, entry: LedgerEntry, now: float | None) -> InboxItem:
        try:
            received, error = self.receiver.accept_entry(entry, self.keys, now), None
        except MessagingError as exc:
            received, error = None, exc
        return InboxItem(entry.seq, entry.timestamp, entry.sender, received, error)
