"""SIP-017 through an MQTT broker: the topic scheme, and a thin asyncio shell around aiomqtt.

Topic per recipient: `<prefix>/to/<address>`, the address being the recipient key's Ethereum address
in lowercase hex (`0x` + 40 digits), which is how the ledger names a key too. A DID cannot be a topic
(its `#` is MQTT's multi-level wildcard). The payload is a signed wrapper (signed.py) as JSON, at QoS 1
(at least once: a duplicate is the receiver's nonce cache's to drop), never retained.

The broker is a relay, not an authority: who sent a message, and what they may ask, comes from the
signed wrapper checked against the ledger (receiver.py, authority.py); what it says is sealed to the
recipient's key. TLS and broker credentials keep strangers off the broker; they vouch for nobody.

`MqttLink.run()` keeps one connection (reconnecting, the wait doubling from 0.5 s up to
`reconnect_max_s`), subscribes to its inbox topic at QoS 1 and hands every payload, in arrival order,
to `on_message` (or, for a high-rate reader such as the plant's tags, to `on_arrival`: see MqttLink).
`publish` sends at QoS 1 and returns once the broker acknowledged (PUBACK); it raises
BrokerUnavailable when there is no connection or no acknowledgement: the caller decides whether to
keep the message and try again. This is the only module that imports aiomqtt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt

from axon.messaging.errors import BrokerUnavailable
from axon.messaging.signed import SignedEnvelope

log = logging.getLogger("axon.messaging.mqtt")

QOS = 1
DEFAULT_PREFIX = "sopcos/v1"
_ADDRESS = re.compile(r"^0x[0-9a-f]{40}$")
_PREFIX = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
PUBLISH_TIMEOUT_S = 10.0
# Messages received but not yet handled: beyond it aiomqtt discards (and logs) new ones, so a flood on
# the topic costs bounded memory; SIP-017 is for signalling, a node handles far fewer at once.
MAX_QUEUED_INCOMING = 1000


def topic_for(address: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The topic a recipient reads: `<prefix>/to/<address>` (address lowercased)."""
    address = address.lower()
    if not _ADDRESS.match(address):
        raise ValueError(f"an MQTT recipient is a key address (0x + 40 hex digits), got {address[:50]!r}")
    if not _PREFIX.match(prefix):
        raise ValueError("the topic prefix is levels of letters, digits, _ . - separated by /")
    return f"{prefix}/to/{address}"


@dataclass(frozen=True)
class BrokerSettings:
    """How to reach the broker. `password` is never logged or shown (repr)."""

    host: str
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    # With a client id: the broker keeps the subscription and queues QoS 1 messages while we are away.
    persistent_session: bool = True
    keepalive: int = 30
    topic_prefix: str = DEFAULT_PREFIX

    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def tls_context(self) -> ssl.SSLContext | None:
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        if self.client_cert is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key) if self.client_key else None)
        return context

    def client(self) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.host, self.port, username=self.username, password=self.password,
            identifier=self.client_id, clean_session=not (self.persistent_session and self.client_id),
            keepalive=self.keepalive, tls_context=self.tls_context(), timeout=PUBLISH_TIMEOUT_S,
            max_queued_incoming_messages=MAX_QUEUED_INCOMING, logger=log)


def settings_from_url(url: str, **options: object) -> BrokerSettings:
    """`mqtt://HOST[:PORT]` (1883) or `mqtts://HOST[:PORT]` (TLS, 8883) and BrokerSettings' other fields;
    ValueError naming what is wrong. Credentials never come from the URL (they would be in a shell's
    history and a process list)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise ValueError(f"a broker is mqtt://HOST[:PORT] or mqtts://HOST[:PORT], got {url[:80]!r}")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query:
        raise ValueError("a broker URL has no user, password, path or query (credentials: their own "
                         "options)")
    tls = parts.scheme == "mqtts"
    return BrokerSettings(parts.hostname, parts.port or (8883 if tls else 1883), tls=tls,
                          **options)  # type: ignore[arg-type]


MessageHandler = Callable[[str, bytes], Awaitable[None]]
# on_arrival(topic, payload): called in the event loop's thread as paho decodes each message.
ArrivalHandler = Callable[[str, bytes], None]


class MqttLink:
    """One connection to the broker, kept up by `run()` (see the module docstring)."""

    def __init__(self, settings: BrokerSettings, inbox_topic: str | Sequence[str] | None = None,
                 on_message: MessageHandler | None = None,
                 on_state: Callable[[str, str | None], None] | None = None,
                 reconnect_max_s: float = 10.0, skip_retained: bool = False,
                 on_arrival: ArrivalHandler | None = None) -> None:
        """`on_state(state, reason)` hears "connected" and "disconnected" (with why) as they happen.
        `inbox_topic`: one topic or several (the plant's tag topics, synapse/plant/mqtt.py), subscribed at
        QoS 1. `skip_retained`: drop retained messages (a retained value is as old as its publisher made
        it, and the broker hands it out as if new). `on_arrival` (in place of `on_message`): a plain
        function called from paho's own on_message callback, in the event loop's thread, for every
        message as it is decoded; it must not block. aiomqtt's message iterator costs a queue hop, a task
        and an asyncio.wait per message, a third of what a plant tag stream of 10,000 messages a second
        can spend; this hook bypasses it (and aiomqtt's bounded queue: the receiver bounds what it keeps)."""
        self.settings = settings
        self.on_arrival = on_arrival
        self.inbox_topic = inbox_topic
        self.skip_retained = skip_retained
        self.on_message = on_message
        self.on_state = on_state
        self.reconnect_max_s = reconnect_max_s
        self.connected = asyncio.Event()
        self._client: aiomqtt.Client | None = None

    async def run(self) -> None:
        """Connect, subscribe, deliver; reconnect after any failure. Returns only when cancelled."""
        delay = 0.5
        while True:
            client = self.settings.client()
            if self.on_arrival is not None:
                # aiomqtt exposes no hook of its own: its paho client (`_client`) takes the callback, so
                # the messages never reach aiomqtt's queue and the iterator below only waits for a loss.
                client._client.on_message = self._arrived  # noqa: SLF001
            try:
                async with client:
                    topics = [self.inbox_topic] if isinstance(self.inbox_topic, str) else self.inbox_topic
                    for topic in topics or ():
                        await client.subscribe(topic, qos=QOS)
                    self._client = client
                    self.connected.set()
                    delay = 0.5
                    self._state("connected", None)
                    async for message in client.messages:
                        if self.skip_retained and message.retain:
                            continue
                        if self.on_message is not None:
                            await self.on_message(str(message.topic), _payload(message.payload))
            except aiomqtt.MqttError as exc:
                self._state("disconnected", _reason(exc))
            except ssl.SSLError as exc:
                self._state("disconnected", f"TLS: {exc.reason or exc}")
            finally:
                self._client = None
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    def _arrived(self, _client: object, _userdata: object, message: object) -> None:
        if self.skip_retained and message.retain:  # type: ignore[attr-defined]
            return
        self.on_arrival(message.topic, message.payload)  # type: ignore[attr-defined,misc]

    async def publish(self, topic: str, payload: bytes) -> None:
        """QoS 1, returning after the broker's PUBACK; BrokerUnavailable otherwise."""
        client = self._client
        if client is None:
            raise BrokerUnavailable(f"not connected to the broker at {self.settings.where()}")
        try:
            await client.publish(topic, payload, qos=QOS, timeout=PUBLISH_TIMEOUT_S)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailable(f"the broker at {self.settings.where()} did not take the message: "
                                    f"{_reason(exc)}") from None

    async def send(self, signed: SignedEnvelope, address: str) -> str:
        """Publish a signed wrapper to the recipient `address`'s topic; the topic."""
        topic = topic_for(address, self.settings.topic_prefix)
        await self.publish(topic, signed.to_json().encode())
        return topic

    def _state(self, state: str, reason: str | None) -> None:
        if state == "disconnected":
            log.warning("MQTT broker %s: %s", self.settings.where(), reason)
        if self.on_state is not None:
            self.on_state(state, reason)


def _payload(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode() if payload is not None else b""


def _reason(exc: aiomqtt.MqttError) -> str:
    """What went wrong, in words (paho's reason codes: 'Not authorized', 'Connection refused'...)."""
    return str(exc) or type(exc).__name__


@contextlib.asynccontextmanager
async def connected_link(settings: BrokerSettings, inbox_topic: str | None = None,
                         on_message: MessageHandler | None = None, timeout: float = 10.0):
    """A running MqttLink for the duration of the block (a sender's tool, a test, a benchmark):
    BrokerUnavailable if it is not connected within `timeout` seconds."""
    link = MqttLink(settings, inbox_topic, on_message)
    task = asyncio.create_task(link.run())
    try:
        try:
            await asyncio.wait_for(link.connected.wait(), timeout)
        except TimeoutError:
            raise BrokerUnavailable(f"no connection to the broker at {settings.where()} within {timeout} s") \
                from None
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
