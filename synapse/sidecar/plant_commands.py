"""Commands into the sidecar: SIP-017 CMD and KEY_EXCHANGE messages, checked and carried out.

`PlantCommandProcessor.process(received, now)` is the pure core. It takes a message that already passed
every receiver rule (axon.messaging: decrypted, fresh, not replayed, sender known), and:

1. checks the sender's authority for this message (axon/messaging/authority.py; docs/messaging.md);
2. checks the command's body against `plant_commands.schema.json` (`set_context` also: expiry in the future
   and no further ahead than `max_context_ttl_s`);
3. carries it out through the injected `CommandHandlers` (load, unload, set_context) or itself (ping →
   a LOG reply; KEY_EXCHANGE offer → accept reply and an SCP session in `sessions`);
4. returns an `Outcome`: a record for the decision log and, maybe, a reply to send to the sender.

Nothing here raises for a bad message: every refusal is an outcome with a code and a reason.
`LedgerPlantCommandInbox` is the I/O edge: it reads OpCode 9 messages to this node, processes them, posts
replies on the ledger, and returns the records for the decision log
(`decision_log.append_event("command", **record)`).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import jsonschema

from axon import strictjson
from axon.keys import Identity
from axon.ledger import LedgerError, ops
from axon.messaging import authority, schemas
from axon.messaging import key_exchange as kx
from axon.messaging.envelope import seal
from axon.messaging.errors import KeyExchangeError, MessagingError, Unauthorised
from axon.messaging.inbox import InboxItem, LedgerInbox, MessageLedger
from axon.messaging.inner import Message
from axon.messaging.receiver import Received, Receiver, ReceiverConfig
from axon.messaging.signed import Sender

log = logging.getLogger("synapse.commands")

DEFAULT_MAX_CONTEXT_TTL_S = 24 * 3600


def _load_validators() -> dict[str, jsonschema.protocols.Validator]:
    schema_file = resources.files("synapse.sidecar").joinpath("plant_commands.schema.json")
    doc = strictjson.loads(schema_file.read_bytes())
    return {name: jsonschema.Draft202012Validator(schema) for name, schema in doc["$defs"].items()}


_VALIDATORS = _load_validators()
COMMANDS = frozenset(_VALIDATORS)


class CommandHandlers(Protocol):
    """What the sidecar does for each command. Each may return details for the record, or raise
    (preferably an error with a `.code`) to report a failure."""

    def load_artifact(self, urn: str, storage_hint: str | None = None) -> Mapping[str, Any] | None:
        """Serve `urn`; fetch it from `storage_hint` first if this node does not hold it."""
        ...

    def unload(self, urn: str) -> Mapping[str, Any] | None: ...

    def set_context(self, name: str, value: float | bool | str, expires_at: int) -> Mapping[str, Any] | None:
        ...


@dataclass(frozen=True)
class Outcome:
    record: dict[str, Any]  # status: ok | refused | failed | received | ignored | dropped
    reply: Message | None = None
    reply_to: Sender | None = None

    @property
    def status(self) -> str:
        return str(self.record["status"])


class _Refused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class PlantCommandProcessor:
    def __init__(self, handlers: CommandHandlers, node_did: str,
                 sessions: kx.Sessions | None = None,
                 max_context_ttl_s: int = DEFAULT_MAX_CONTEXT_TTL_S,
                 randbytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.handlers = handlers
        self.node_did = node_did
        self.sessions = sessions if sessions is not None else kx.Sessions()
        self.max_context_ttl_s = max_context_ttl_s
        self.randbytes = randbytes
        self._pending: dict[bytes, kx.PendingOffer] = {}

    # --- the core -------------------------------------------------------------------------------------

    def process(self, received: Received, now: float) -> Outcome:
        sender, message = received.sender, received.message
        record: dict[str, Any] = {"type": message.type, "from": sender.did, "level": f"LVL_{sender.level}",
                                  "nonce": message.nonce, "time": int(now)}
        if message.type == "CMD":
            record["command"] = authority.describe(message).removeprefix("CMD ")
        try:
            authority.authorise(sender, message)
            if message.type == "CMD":
                return self._command(sender, message, now, record)
            if message.type == "KEY_EXCHANGE":
                return self._key_exchange(sender, message, now, record)
            return Outcome({**record, "status": "received"})  # LOG, ALERT: information only
        except Unauthorised as exc:
            return Outcome({**record, "status": "refused", "code": exc.code, "reason": str(exc)})
        except _Refused as exc:
            log.warning("command refused: %s: %s", exc.code, exc)
            return Outcome({**record, "status": "refused", "code": exc.code, "reason": str(exc)})
        except KeyExchangeError as exc:
            return Outcome({**record, "status": "refused", "code": exc.code, "reason": str(exc)})

    def _command(self, sender: Sender, message: Message, now: float, record: dict[str, Any]) -> Outcome:
        body = message.body
        command = body.get("command")
        if command not in COMMANDS:
            raise _Refused("MSG-SCHEMA", f"CMD: unknown command; this node accepts {sorted(COMMANDS)}")
        reason = schemas.describe_error(_VALIDATORS[command], body, f"CMD {command}")
        if reason is not None:
            raise _Refused("MSG-SCHEMA", reason)
        if command == "ping":
            reply = {"in_reply_to": message.nonce, "command": "ping", "status": "ok", "node": self.node_did,
                     "time": int(now), **({"echo": body["echo"]} if "echo" in body else {})}
            return Outcome({**record, "status": "ok"}, Message.new("LOG", reply, now, self.randbytes), sender)
        if command == "set_context":
            self._check_expiry(body["expires_at"], now)
            record.update(name=body["name"], expires_at=body["expires_at"])
            return self._run(record, self.handlers.set_context, body["name"], body["value"],
                             body["expires_at"], confidential=True)
        record["urn"] = body["urn"]
        if command == "load":
            return self._run(record, self.handlers.load_artifact, body["urn"], body.get("storage_hint"))
        return self._run(record, self.handlers.unload, body["urn"])

    def _check_expiry(self, expires_at: int, now: float) -> None:
        if expires_at <= now:
            raise _Refused("MSG-SCHEMA", "CMD set_context /expires_at: already past")
        if expires_at - now > self.max_context_ttl_s:
            raise _Refused("MSG-SCHEMA", f"CMD set_context /expires_at: more than {self.max_context_ttl_s} s "
                                         "ahead (this node's max_context_ttl_s)")

    @staticmethod
    def _run(record: dict[str, Any], handler: Callable[..., Mapping[str, Any] | None], *args: Any,
             confidential: bool = False) -> Outcome:
        """`confidential`: the arguments may be secret (a context value), so neither what the handler
        returns nor its error's text reaches the record or the log; its code still does."""
        try:
            details = handler(*args)
        except Exception as exc:  # any handler failure is an outcome to record, never a crash
            code = str(getattr(exc, "code", "SYNAPSE-COMMAND-FAILED"))
            reason = (f"{type(exc).__name__} (its text is not recorded: it may hold the value)"
                      if confidential else str(exc)[:500])
            log.warning("command %s failed: %s: %s", record.get("command"), code, reason)
            return Outcome({**record, "status": "failed", "code": code, "reason": reason})
        return Outcome({**record, **(dict(details) if details and not confidential else {}), "status": "ok"})

    # --- KEY_EXCHANGE ---------------------------------------------------------------------------------

    def offer_session(self, responder: str, now: float, ttl_s: int = kx.DEFAULT_TTL_S) -> Message:
        """Start an SCP session with `responder`: the KEY_EXCHANGE message to send it."""
        pending = kx.offer(responder, now, ttl_s, self.randbytes)
        self._pending = {sid: p for sid, p in self._pending.items() if p.offer.expires_at >= now}
        self._pending[pending.offer.session_id] = pending
        return Message.new("KEY_EXCHANGE", pending.offer.to_body(), now, self.randbytes)

    def _key_exchange(self, sender: Sender, message: Message, now: float, record: dict[str, Any]) -> Outcome:
        kind = message.body.get("kx")
        if kind == "offer":
            answer, session = kx.accept(message.body, sender.did, self.node_did, now, self.randbytes)
            self.sessions.add(session, now)
            reply = Message.new("KEY_EXCHANGE", answer.to_body(), now, self.randbytes)
            return Outcome({**record, "kx": "offer", "session_id": session.session_id.hex(), "status": "ok"},
                           reply, sender)
        if kind == "accept":
            accepted = kx.SessionAccept.from_body(message.body)
            pending = self._pending.pop(accepted.session_id, None)
            if pending is None:
                raise KeyExchangeError("KEY_EXCHANGE accept for no offer this node has pending")
            session = kx.complete(pending, message.body, sender.did, self.node_did, now)
            self.sessions.add(session, now)
            return Outcome({**record, "kx": "accept", "session_id": session.session_id.hex(), "status": "ok"})
        raise KeyExchangeError("KEY_EXCHANGE body must have kx = offer or accept")


class LedgerPlantCommandInbox:
    """The sidecar's edge to the ledger: read OpCode 9 messages to this node, process them, post the
    replies (OpCode 9 to the sender), and return one decision-log record per message.

    Starts at the ledger's head: messages posted while the sidecar was down are not acted on (they
    would be stale anyway), and the receiver refuses anything stamped before it started."""

    def __init__(self, ledger: Any, identity: Identity, processor: PlantCommandProcessor,
                 config: ReceiverConfig | None = None, clock: Callable[[], float] = time.time,
                 after_seq: int | None = None) -> None:
        self.ledger: MessageLedger = ledger
        self.identity = identity
        self.processor = processor
        self.clock = clock
        self.receiver = Receiver(identity.key, config, clock, did=identity.did, started_at=clock())
        self.inbox = LedgerInbox(ledger, self.receiver, ledger.head_seq if after_seq is None else after_seq)

    def poll(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [self._handle(item, now) for item in self.inbox.poll(now)]

    def _handle(self, item: InboxItem, now: float) -> dict[str, Any]:
        where = {"seq": item.seq, "sender_address": item.sender_address}
        if item.received is None:
            if item.error is None:
                return {**where, "status": "ignored", "reason": "unknown message type", "time": int(now)}
            return {**where, "status": "dropped", **item.error.to_dict(), "reason": item.error.message,
                    "time": int(now)}
        outcome = self.processor.process(item.received, now)
        record = {**where, **outcome.record}
        if outcome.reply is not None and outcome.reply_to is not None:
            record.update(self.send(outcome.reply, outcome.reply_to, now))
        return record

    def send(self, message: Message, to: Sender, now: float) -> dict[str, Any]:
        """Seal `message` to `to` and post it as OpCode 9; {"reply_seq": n} or {"reply_error": ...}."""
        try:
            op = ops.message(to.did, seal(to.public_key, message).to_dict())
            entry = self.ledger.sign_and_submit(self.identity, op, int(now))
        except (LedgerError, MessagingError) as exc:
            log.warning("reply to %s not sent: %s: %s", to.did, exc.code, exc)
            return {"reply_error": exc.to_dict()}
        return {"reply_seq": entry.seq}
