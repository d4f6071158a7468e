"""The sidecar's SIP-017 messages through an MQTT broker (docs/messaging.md, "SIP-017 over MQTT").

Beside the ledger's OpCode 9 edge (plant_commands.LedgerPlantCommandInbox, alerts.AlertSender), not a
second messaging stack: the same Receiver rules, the same PlantCommandProcessor, the same Alerter and
recipient book. What changes is the carrier: signed wrappers (axon/messaging/signed.py) on the topic
`<prefix>/to/<address>` (axon/messaging/mqtt.py), QoS 1.

- `MqttPlantCommandInbox.handle(payload)` (blocking: it reads the ledger for the sender's key): one
  payload → the receiver's checks → the processor → a decision-log record and maybe a reply to publish.
  Its nonces live in the node state (`NodeStateNonces`), so a message redelivered or replayed after a
  restart is dropped as MSG-REPLAY, not acted on twice.
- `AlertQueue`: alerts waiting for the broker, oldest first, bounded. An alert is sealed and signed
  when it is published, and sealed again (fresh timestamp and nonce) when it waited longer than half
  the receivers' window, so one held back while the broker was away is not stale on arrival; a retry
  soon after a lost acknowledgement reuses the same envelope, which the recipient drops as a replay.
- `MqttMessaging`: the asyncio shell the sidecar runs: the link, the alert sender, the command handler.

The broker going away never blocks or changes a decision: evaluation goes on, alerts wait in the queue
(each one logged `alert_queued`), are sent when the broker is back, and what cannot be kept (the queue
overflowing, the node stopping) is logged and recorded in the decision log as `alert_dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from axon.keys import Identity
from axon.messaging.envelope import seal
from axon.messaging.errors import (
    BrokerUnavailable,
    MessagingError,
    ReplayCacheFull,
    ReplayedMessage,
    StaleMessage,
)
from axon.messaging.inner import Message
from axon.messaging.mqtt import BrokerSettings, MqttLink, topic_for
from axon.messaging.receiver import DEFAULT_MAX_NONCES, Receiver, ReceiverConfig
from axon.messaging.signed import LedgerKeys, SignedEnvelope, sign
from synapse.service import logs
from synapse.service.config import MqttConfig
from synapse.service.errors import ConfigError, ServiceError
from synapse.service.node_state import (
    NONCE_CACHE_FULL,
    NONCE_FORGOTTEN,
    NONCE_REPLAYED,
    NodeState,
)
from synapse.sidecar.alerts import Recipient
from synapse.sidecar.plant_commands import PlantCommandProcessor

log = logging.getLogger("synapse.sidecar.mqtt")


def broker_settings(config: MqttConfig, identity: Identity | None) -> BrokerSettings:
    """The [mqtt] section as BrokerSettings; the password read from its file (ConfigError if unreadable).
    Without an identity (the plant's tag connection, synapse/plant/mqtt.py): a client id of the broker's
    choosing and no persistent session, so nothing queued while away is taken for a fresh value."""
    password = None
    if config.password_file is not None:
        try:
            password = Path(config.password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"mqtt.password_file {config.password_file}: {exc.strerror}") from None
    return BrokerSettings(config.host, config.port, tls=config.tls, ca_file=config.ca_file,
                          client_cert=config.client_cert, client_key=config.client_key,
                          username=config.username, password=password,
                          client_id=None if identity is None
                          else config.client_id or f"sopcos-{identity.key.public_key.address}",
                          keepalive=config.keepalive, topic_prefix=config.topic_prefix)


class NodeStateNonces:
    """The Receiver's nonce store in the node state (node_state.py, `message_nonces`): it outlives
    restarts and is shared by the node's workers."""

    forgotten_until = -1  # kept in the node state; the Receiver's in-memory start floor is not used

    def __init__(self, state: NodeState, limit: int = DEFAULT_MAX_NONCES) -> None:
        self.state = state
        self.limit = limit

    def evict(self, now: float) -> None:
        """Pruning happens inside `add`, in the same transaction."""

    def add(self, nonce: str, expires_at: int, now: float) -> None:
        answer = self.state.accept_message_nonce(nonce, expires_at, now, self.limit)
        if answer == NONCE_REPLAYED:
            raise ReplayedMessage("nonce already accepted within the window (by this node, before or "
                                  "since a restart): replay or redelivery dropped")
        if answer == NONCE_FORGOTTEN:
            raise StaleMessage("timestamp predates what this node's nonce store covers (its clock "
                               "stepped back): nonces that old are forgotten")
        if answer == NONCE_CACHE_FULL:
            raise ReplayCacheFull(f"{self.limit} unexpired nonces stored: refusing new messages until "
                                  "some expire")


@dataclass(frozen=True)
class Outbound:
    """A signed wrapper to publish, and the recipient's address (its topic)."""

    signed: SignedEnvelope
    address: str


class MqttPlantCommandInbox:
    """Commands (CMD, KEY_EXCHANGE, LOG, ALERT) to this node arriving over MQTT; see the module docstring."""

    def __init__(self, ledger: Callable[[], Any], identity: Identity, processor: PlantCommandProcessor,
                 nonces: NodeStateNonces, config: ReceiverConfig | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """`ledger()`: the ledger now (the service's link, which may reopen it)."""
        self.ledger = ledger
        self.identity = identity
        self.processor = processor
        self.clock = clock
        self.receiver = Receiver(identity.key, config, clock, did=identity.did, nonces=nonces)

    def handle(self, payload: bytes) -> tuple[dict[str, Any], Outbound | None]:
        now = self.clock()
        try:
            received = self.receiver.accept_signed(payload, LedgerKeys(self.ledger()), now)
        except (MessagingError, ServiceError) as exc:
            # ServiceError: the ledger cannot be read, so no sender can be checked: nothing is acted on.
            return {"via": "mqtt", "status": "dropped", **exc.to_dict(), "reason": exc.message,
                    "time": int(now)}, None
        if received is None:
            return {"via": "mqtt", "status": "ignored", "reason": "unknown message type",
                    "time": int(now)}, None
        outcome = self.processor.process(received, now)
        record: dict[str, Any] = {"via": "mqtt", **outcome.record}
        if outcome.reply is None or outcome.reply_to is None:
            return record, None
        to = outcome.reply_to
        signed = sign(self.identity, to.did, seal(to.public_key, outcome.reply))
        return record, Outbound(signed, to.public_key.address)


@dataclass
class QueuedAlert:
    recipient: Recipient
    body: dict[str, Any]
    decision_id: str
    queued_at: float
    signed: SignedEnvelope | None = None
    sealed_at: float = 0.0


class AlertQueue:
    """Alerts to publish, oldest first, at most `max_queued` (see the module docstring). Pure: the clock
    and randomness are passed in."""

    def __init__(self, identity: Identity, max_queued: int, window_s: int,
                 randbytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        self.identity = identity
        self.max_queued = max_queued
        self.reseal_after_s = window_s / 2
        self.randbytes = randbytes
        self.items: deque[QueuedAlert] = deque()

    def __len__(self) -> int:
        return len(self.items)

    def put(self, message: Message, recipients: tuple[Recipient, ...], decision_id: str,
            now: float) -> list[QueuedAlert]:
        """Queue one copy per recipient; the oldest copies pushed out by the bound (to be reported)."""
        self.items.extend(QueuedAlert(r, message.body, decision_id, now) for r in recipients)
        dropped = []
        while len(self.items) > self.max_queued:
            dropped.append(self.items.popleft())
        return dropped

    def envelope(self, item: QueuedAlert, now: float) -> SignedEnvelope:
        """The wrapper to publish for `item` now: the one made before unless it is getting old."""
        if item.signed is None or now - item.sealed_at > self.reseal_after_s:
            message = Message.new("ALERT", item.body, now, self.randbytes)
            item.signed = sign(self.identity, item.recipient.to,
                               seal(item.recipient.public_key, message, self.randbytes))
            item.sealed_at = now
        return item.signed


class MqttMessaging:
    """The sidecar's MQTT edge (asyncio): made and run on the event loop. `record(kind, record)` gets every
    outcome ("command", "alert", "alert_dropped") for the logs, the decision log and the metrics;
    `activity()` is the service's (stop() waits for a command being handled)."""

    def __init__(self, config: MqttConfig, identity: Identity, *,
                 inbox: MqttPlantCommandInbox | None,
                 record: Callable[[str, dict[str, Any]], None],
                 activity: Callable[[], contextlib.AbstractContextManager[bool]],
                 clock: Callable[[], float] = time.time,
                 window_s: int = ReceiverConfig().window_s) -> None:
        self.config = config
        self.identity = identity
        self.settings = broker_settings(config, identity)
        self.inbox = inbox
        self._record = record
        self._activity = activity
        self._clock = clock
        self.alerts = AlertQueue(identity, config.max_queued_alerts, window_s)
        self.loop = asyncio.get_running_loop()  # made on the loop; queue_alert is called through it
        self._wake = asyncio.Event()
        own_topic = topic_for(identity.key.public_key.address, config.topic_prefix)
        inbox_topic = own_topic if inbox is not None else None
        self.link = MqttLink(self.settings, inbox_topic, self._on_message, self._on_state,
                             config.reconnect_max)

    async def run(self) -> None:
        sender = asyncio.create_task(self._send_alerts())
        try:
            await self.link.run()
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
            self._report_undelivered()

    async def drain(self, timeout: float) -> None:
        """Wait until every queued alert was published, or `timeout` seconds (what is left is reported
        when the link stops)."""
        deadline = self.loop.time() + timeout
        while self.alerts.items and self.loop.time() < deadline:
            await asyncio.sleep(0.05)

    # -- alerts ----------------------------------------------------------------------------------------

    def queue_alert(self, message: Message, recipients: tuple[Recipient, ...], decision_id: str) -> None:
        """Hand an alert to the sender (never blocks: the broker may be away)."""
        now = self._clock()
        for item in self.alerts.put(message, recipients, decision_id, now):
            self._dropped(item, f"the alert queue is full ({self.config.max_queued_alerts} copies waiting "
                                "for the broker): the oldest was dropped")
        if not self.link.connected.is_set():
            logs.event("alert_queued", logging.WARNING, decision_id=decision_id, queued=len(self.alerts),
                       reason=f"the broker at {self.settings.where()} is not connected: the alert waits "
                              "and is sent when it is back")
        self._wake.set()

    async def _send_alerts(self) -> None:
        while True:
            if not self.alerts.items:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self.link.connected.wait()
            item = self.alerts.items[0]
            now = self._clock()
            try:
                signed = self.alerts.envelope(item, now)
                topic = await self.link.send(signed, item.recipient.public_key.address)
            except BrokerUnavailable as exc:
                log.warning("alert for %s not published yet: %s", item.recipient.to, exc)
                await asyncio.sleep(0.2)  # the link notices the loss and clears `connected`
                continue
            if self.alerts.items and self.alerts.items[0] is item:
                self.alerts.items.popleft()
            self._record("alert", {"decision_id": item.decision_id, "to": item.recipient.to, "via": "mqtt",
                                   "topic": topic, "queued_s": round(self._clock() - item.queued_at, 3)})

    def _dropped(self, item: QueuedAlert, reason: str) -> None:
        self._record("alert_dropped", {"decision_id": item.decision_id, "to": item.recipient.to,
                                       "via": "mqtt", "reason": reason})

    def _report_undelivered(self) -> None:
        while self.alerts.items:
            self._dropped(self.alerts.items.popleft(), "the node stopped before the broker took the alert")

    # -- commands --------------------------------------------------------------------------------------

    async def _on_message(self, topic: str, payload: bytes) -> None:
        inbox = self.inbox
        if inbox is None:
            return
        record, reply = await asyncio.to_thread(self._handle, inbox, payload)
        if record is None:
            return
        if reply is not None:
            try:
                record["reply_topic"] = await self.link.send(reply.signed, reply.address)
            except BrokerUnavailable as exc:
                record["reply_error"] = exc.to_dict()
        self._record("command", record)

    def _handle(self, inbox: MqttPlantCommandInbox,
                payload: bytes) -> tuple[dict[str, Any] | None, Outbound | None]:
        with self._activity() as running:
            return inbox.handle(payload) if running else (None, None)

    def _on_state(self, state: str, reason: str | None) -> None:
        if state == "connected":
            logs.event("mqtt_connected", broker=self.settings.where(), queued_alerts=len(self.alerts))
        else:
            logs.event("mqtt_disconnected", logging.WARNING, broker=self.settings.where(), reason=reason,
                       queued_alerts=len(self.alerts))
