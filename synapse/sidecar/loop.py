"""The sidecar: evaluate policies unattended, on a schedule, from a telemetry feed (`synapse run`).

Feed. A JSON-lines file or standard input; each line is a reading (synapse.inputs.Reading, the rules
`synapse eval` and the REST API apply): {"telemetry": {...}, "context": {...}, "policy": NAME}, context
and policy optional. A line that is not a reading is logged (with its line number) and skipped. A file
can be followed as it grows.

Schedule. With `interval` > 0 the lines update a snapshot (the latest value of every input) and every
`interval` seconds each configured policy (default: every policy with an active artifact) is
evaluated on it, like a PLC scan. With `interval` = 0 every line is evaluated as it arrives (its own
policy, or the configured ones). Context: the configured context, then the feed's, then values set by
authorised SIP-017 `set_context` commands until they expire (a deliberate, time-bounded override wins).

Every decision goes through `PolicyService.evaluate`, so it is logged like an HTTP one (source
"sidecar"). Decisions whose verdict needs a person become SIP-017 ALERTs on the ledger (synapse/alerts.py,
with its de-duplication and rate limit); CMD messages to this node are read from the ledger and carried
out (synapse/sidecar/plant_commands.py). With an [mqtt] section, alerts go through the broker instead
and commands arrive there too, through the same processor (synapse/sidecar/mqtt.py). Alerts sent and
commands handled are recorded in the decision log.

Shutdown. The loop is an asyncio task of the HTTP app; SIGTERM cancels it between two evaluations (an
evaluation and its log record are one synchronous step), then the service seals the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

from axon.messaging.inner import Message
from synapse.decision import Decision
from synapse.inputs import Reading, ReadingInvalid
from synapse.service import logs
from synapse.service.config import MqttConfig, PlantConfig, SidecarConfig
from synapse.service.errors import ArtifactUnknown, ServiceError
from synapse.service.fetch import fetch_artifact
from synapse.service.metrics import UNKNOWN_TYPE
from synapse.service.service import PolicyService
from synapse.sidecar.alerts import Alerter, AlertPolicy, AlertSender, RecipientBook
from synapse.sidecar.plant_commands import LedgerPlantCommandInbox, PlantCommandProcessor

_EOF = object()
_COMMAND_OUTCOMES = {"ok": "executed", "refused": "refused", "failed": "failed"}
_FOLLOW_POLL_S = 0.1
_CHUNK = 65536


class FeedReader:
    """Reads lines in a thread (stdin and files block) and hands them to the event loop's queue."""

    def __init__(self, source: str, follow: bool, loop: asyncio.AbstractEventLoop,
                 queue: asyncio.Queue) -> None:
        self.source = source
        self.follow = follow and source != "-"
        self._loop = loop
        self._queue = queue
        self._stop = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="sidecar-feed", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _put(self, item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: shutting down, nobody listens
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    def _run(self) -> None:
        # Raw os.read on the descriptor: a daemon thread blocked in a buffered reader's readline would
        # hold that reader's lock and abort the interpreter at exit.
        try:
            fd = 0 if self.source == "-" else os.open(self.source, os.O_RDONLY)
        except OSError as exc:
            logs.event("feed_unreadable", logging.ERROR, source=self.source, reason=exc.strerror)
            self._put(_EOF)
            return
        lineno, pending = 0, b""
        try:
            while not self._stop.is_set():
                chunk = os.read(fd, _CHUNK)
                if not chunk:
                    if not self.follow:
                        break
                    time.sleep(_FOLLOW_POLL_S)  # a followed file: wait for the writer
                    continue
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    lineno += 1
                    if line.strip():
                        self._put((lineno, line))
            if pending.strip() and not self._stop.is_set():  # a last line without its newline
                self._put((lineno + 1, pending))
        except OSError as exc:
            logs.event("feed_unreadable", logging.ERROR, source=self.source, reason=exc.strerror)
        finally:
            if fd != 0:
                os.close(fd)
        self._put(_EOF)


class Sidecar:
    """The sidecar loop for one PolicyService (see the module docstring)."""

    def __init__(self, config: SidecarConfig, *, mqtt: MqttConfig | None = None,
                 plant: PlantConfig | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.mqtt_config = mqtt
        self.plant = plant  # PLC sources in place of the feed (synapse/plant/, docs/plc.md)
        self._mqtt: Any = None  # synapse.sidecar.mqtt.MqttMessaging, imported only when configured
        self._processor: PlantCommandProcessor | None = None
        self._clock = clock
        self._overrides: dict[str, tuple[Any, float]] = {}  # set_context: name -> (value, expires_at)
        self._alerter: Alerter | None = None
        self._recipients: RecipientBook | None = None
        self._pending: set[asyncio.Task] = set()
        self._source_alerts: dict[str, float] = {}  # plant source -> when its loss was last alerted
        self.evaluations = 0

    async def run(self, service: PolicyService) -> None:
        self.service = service
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=0)
        feed = None
        if self.plant is None:
            feed = FeedReader(self.config.source, self.config.follow, loop, queue)
            feed.start()
        poller = asyncio.create_task(self._commands()) if self.config.commands.enabled else None
        broker = asyncio.create_task(self._start_mqtt()) if self.mqtt_config is not None else None
        try:
            if self.plant is not None:
                await self._run_plant(self.plant)
            await self._loop(queue)
            if self._pending:
                await asyncio.gather(*self._pending, return_exceptions=True)
            if self._mqtt is not None and self.config.exit_at_eof:
                await self._mqtt.drain(timeout=10.0)
        finally:
            if feed is not None:
                feed.stop()
            if poller is not None:
                poller.cancel()
            if broker is not None:
                broker.cancel()
                await asyncio.gather(broker, return_exceptions=True)
        logs.event("sidecar_feed_done", source=self.config.source, evaluations=self.evaluations)
        if self.config.exit_at_eof:
            os.kill(os.getpid(), signal.SIGTERM)  # the same graceful path as an operator's SIGTERM

    async def _loop(self, queue: asyncio.Queue) -> None:
        interval = self.config.interval
        telemetry: dict[str, Any] = {}
        context: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + interval
        while True:
            if interval == 0:
                item = await queue.get()
            else:
                try:
                    item = await asyncio.wait_for(queue.get(), max(0.0, next_tick - loop.time()))
                except TimeoutError:
                    item = None
            eof = item is _EOF
            update = None if item is None or eof else self._parse(item)
            if update is not None and interval == 0:
                self._evaluate(update.telemetry, update.context, update.policy)
            elif update is not None:
                telemetry.update(update.telemetry)
                context.update(update.context)
            if interval > 0 and (loop.time() >= next_tick or eof):
                if telemetry:
                    self._evaluate(telemetry, context, None)
                next_tick = max(next_tick + interval, loop.time())
            if eof:
                return

    def _parse(self, item: tuple[int, bytes]) -> Reading | None:
        lineno, raw = item
        try:
            return Reading.parse(raw)
        except ReadingInvalid as exc:
            logs.event("feed_line_invalid", logging.WARNING, source=self.config.source, line=lineno,
                       reason=str(exc))
            return None

    # -- deciding ------------------------------------------------------------------------------------

    def _context(self, feed: dict[str, Any]) -> dict[str, Any]:
        now = self._clock()
        live = {name: value for name, (value, expires) in self._overrides.items() if expires > now}
        return {**self.config.context, **feed, **live}

    def _evaluate(self, telemetry: dict[str, Any], feed_context: dict[str, Any],
                  policy: str | None) -> None:
        names = [policy] if policy else (self.config.policies or self.service.served_policies())
        context = self._context(feed_context)
        for name in names:
            self._decide(name, telemetry, context)

    def _decide(self, name: str, telemetry: dict[str, Any], context: dict[str, Any],
                refusal: str | None = None) -> Decision | None:
        """One decision, logged and alerted on; None when the policy could not be evaluated."""
        try:
            result = self.service.evaluate(name, dict(telemetry), context, source="sidecar", refusal=refusal)
        except ServiceError as exc:
            logs.event("sidecar_not_evaluated", logging.WARNING, policy=name, code=exc.code,
                       reason=exc.message)
            return None
        self.evaluations += 1
        self._alert(result, telemetry)
        return result

    # -- the plant -----------------------------------------------------------------------------------

    async def _run_plant(self, plant: PlantConfig) -> None:
        """The PLC sources in place of the feed: runs until cancelled (shutdown)."""
        from synapse.plant.loop import PlantLoop  # pymodbus, asyncua, aiomqtt: only for a plant

        def decide(policy: str, snapshot: Any) -> Decision | None:
            refusal = snapshot.reason if snapshot.missing else None
            return self._decide(policy, snapshot.telemetry, self._context(snapshot.context), refusal)

        await PlantLoop(plant, decide, broker=self.mqtt_config, record=self.service.record_event,
                        on_lost=self._plant_source_lost, clock=self._clock).run()

    # -- alerts --------------------------------------------------------------------------------------

    def _alert(self, result: Decision, telemetry: dict[str, Any]) -> None:
        if self.config.alerts is None or not self.config.alerts.recipients:
            return
        alerter = self._alerter or self._make_alerter()
        if alerter is None:
            return
        now = self._clock()
        decision_id = result.decision_id
        message = alerter.decide(result.to_dict(), result.policy, result.urn, decision_id, now, telemetry)
        if message is not None:
            self._dispatch(message, now, decision_id)

    def _dispatch(self, message: Message, now: float, reference: str) -> None:
        """Send an ALERT (on the ledger, or queued for the broker) in a thread; `reference` names what
        raised it in the records of its delivery (a decision id)."""
        via_broker = self._mqtt is not None and self._mqtt.config.alerts
        send = self._queue_for_broker if via_broker else self._send
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(send, message, now, reference))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _plant_source_lost(self, source: str, reason: str | None, policies: list[str]) -> None:
        """A lost PLC source is alerted on its own (docs/plc.md): the DENY it causes is alerted only when
        it is a new verdict, and a policy that was already DENY would hide the loss. At most one such
        alert per source per `repeat_after`, so a flapping connection does not flood the recipients."""
        if self.config.alerts is None or not self.config.alerts.recipients:
            return
        alerter = self._alerter or self._make_alerter()
        now = self._clock()
        last = self._source_alerts.get(source, -math.inf)
        if alerter is None or now - last < self.config.alerts.repeat_after:
            return
        self._source_alerts[source] = now
        body = {"plant_source": source, "state": "lost", "reason": reason, "policies": policies,
                "node": self.service.identity.did, "time": int(now)}
        self._dispatch(Message.new("ALERT", body, now, alerter.randbytes), now, f"plant-source:{source}")

    def _make_alerter(self) -> Alerter | None:
        cfg = self.config.alerts
        if cfg is None:
            return None
        try:
            recipients = RecipientBook(cfg.recipients, self.service.ledger())
            policy = AlertPolicy(recipients.latest, frozenset(cfg.verdicts),
                                 cfg.repeat_after, cfg.max_per_window, cfg.rate_window, cfg.include_telemetry)
        except Exception as exc:  # the ledger or a recipient is not there yet: try again next time
            code = getattr(exc, "code", type(exc).__name__)
            logs.event("alerts_not_ready", logging.WARNING, reason=f"{code}: {exc}")
            return None
        self._alerter = Alerter(policy, self.service.identity.did, on_count=self.service.metrics.alert)
        self._recipients = recipients
        return self._alerter

    def _send(self, message: Message, now: float, decision_id: str) -> None:
        # Sealed here, for the recipients of the moment: the book re-resolves them if the ledger changed.
        alerter, book = self._alerter, self._recipients
        if alerter is None or book is None:  # _alert makes both before anything is sent
            raise ServiceError("an alert was sent before alerts were set up", code="SYNAPSE-SVC-INTERNAL",
                               status=500)
        with self.service.activity() as running:
            if running:
                self._send_now(alerter, book, message, now, decision_id)

    def _queue_for_broker(self, message: Message, now: float, decision_id: str) -> None:
        """Resolve the recipients of the moment (a ledger read, in this thread), then queue the alert for
        the broker on the event loop; it is sealed when it is published."""
        book, mqtt = self._recipients, self._mqtt
        if book is None or mqtt is None:  # _alert makes the book, run() the broker link, before this
            raise ServiceError("an alert was queued before alerts were set up", code="SYNAPSE-SVC-INTERNAL",
                               status=500)
        with self.service.activity() as running:
            if not running:
                return
            try:
                recipients = book.current(self.service.ledger())
            except ServiceError:  # the ledger is away: the recipients resolved last stand
                recipients = book.latest
        mqtt.loop.call_soon_threadsafe(mqtt.queue_alert, message, recipients, decision_id)

    def _send_now(self, alerter: Alerter, book: RecipientBook, message: Message, now: float,
                  decision_id: str) -> None:
        try:
            ledger = self.service.ledger()
            alerts = alerter.seal(message, book.current(ledger))
            results = AlertSender(ledger, self.service.identity).send(alerts, now)
        except ServiceError as exc:
            results = [{"to": r.to, "error": exc.to_dict()} for r in book.latest]
        for result in results:
            self.service.metrics.alert_delivery("error" not in result)
            level = logging.WARNING if "error" in result else logging.INFO
            logs.event("alert", level, decision_id=decision_id, **result)
            self.service.record_event("alert", decision_id=decision_id, **result)

    # -- commands ------------------------------------------------------------------------------------

    async def _commands(self) -> None:
        inbox = None
        while True:
            try:
                if inbox is None:
                    inbox = await asyncio.to_thread(self._make_inbox)
                for record in await asyncio.to_thread(self._poll, inbox):
                    self._count(record)
                    logs.event("command", logging.INFO, **record)
                    self.service.record_event("command", **record)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the ledger is away, or a record could not be logged: keep polling
                logs.event("commands_poll_failed", logging.WARNING, reason=f"{type(exc).__name__}: {exc}")
                inbox = None
            await asyncio.sleep(self.config.commands.poll_interval)

    def _poll(self, inbox: LedgerPlantCommandInbox) -> list[dict[str, Any]]:
        with self.service.activity() as running:
            return inbox.poll() if running else []

    def _count(self, record: dict[str, Any]) -> None:
        """One inbox record (LedgerPlantCommandInbox._handle) into the metrics."""
        metrics, status = self.service.metrics, record["status"]
        if status == "dropped":
            metrics.message_dropped(str(record.get("code")))
        elif status == "ignored":
            metrics.message_dropped(UNKNOWN_TYPE)
        elif record.get("type") in ("CMD", "KEY_EXCHANGE"):
            command = record.get("command") if record["type"] == "CMD" else "key_exchange"
            metrics.command(str(command), _COMMAND_OUTCOMES.get(status, "failed"))
        elif status == "refused":  # a LOG or ALERT from a sender without the level for it
            metrics.message_dropped(str(record.get("code")))

    def _make_inbox(self) -> LedgerPlantCommandInbox:
        service = self.service
        return LedgerPlantCommandInbox(service.ledger(), service.identity, self._command_processor(),
                                       clock=self._clock)

    def _command_processor(self) -> PlantCommandProcessor:
        """One processor for both carriers (ledger and broker): one set of SCP sessions and offers."""
        if self._processor is None:
            self._processor = PlantCommandProcessor(_Handlers(self), self.service.identity.did,
                                                    max_context_ttl_s=self.config.commands.max_context_ttl)
        return self._processor

    # -- the broker ----------------------------------------------------------------------------------

    async def _start_mqtt(self) -> None:
        from synapse.sidecar.mqtt import MqttMessaging, MqttPlantCommandInbox, NodeStateNonces

        config, service = self.mqtt_config, self.service
        if config is None:
            return
        inbox = None
        if config.commands:
            inbox = MqttPlantCommandInbox(service.ledger, service.identity, self._command_processor(),
                                          NodeStateNonces(service.node_state), clock=self._clock)
        try:
            self._mqtt = MqttMessaging(config, service.identity, inbox=inbox, record=self._broker_record,
                                       activity=service.activity, clock=self._clock)
            await self._mqtt.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # e.g. the password file cannot be read: alerts stay on the ledger
            self._mqtt = None
            logs.event("mqtt_not_started", logging.ERROR, code=getattr(exc, "code", type(exc).__name__),
                       reason=str(exc))

    def _broker_record(self, kind: str, record: dict[str, Any]) -> None:
        """An outcome of the broker edge: logged, counted and recorded like the ledger edge's."""
        metrics = self.service.metrics
        if kind == "command":
            self._count(record)
            logs.event("command", logging.INFO, **record)
        else:  # alert (published) or alert_dropped (never will be)
            metrics.alert_delivery(kind == "alert")
            logs.event(kind, logging.INFO if kind == "alert" else logging.WARNING, **record)
        try:
            self.service.record_event(kind, **record)
        except ServiceError as exc:  # the log is closed (stopping): the line above still says it
            logs.event("not_recorded", logging.WARNING, what=kind, code=exc.code, reason=exc.message)

    def set_context(self, name: str, value: Any, expires_at: float) -> None:
        self._overrides = {**self._overrides, name: (value, float(expires_at))}


class _Handlers:
    """What CMD load / unload / set_context do here (called from the poller's thread)."""

    def __init__(self, sidecar: Sidecar) -> None:
        self._sidecar = sidecar

    def load_artifact(self, urn: str, storage_hint: str | None = None) -> dict[str, Any]:
        """A stored artifact is served again; one this node does not hold is fetched from the storage
        hint, verified through Axon and stored by the service's upload (synapse/service/fetch.py)."""
        service = self._sidecar.service
        try:
            service.artifact(urn)
        except ArtifactUnknown:
            if storage_hint is None:
                raise ArtifactUnknown(f"no artifact {urn} on this node, and the command names no "
                                      "storage_hint to fetch it from") from None
            commands = self._sidecar.config.commands
            fetched = fetch_artifact(urn, storage_hint, max_bytes=service.config.limits.max_artifact_bytes,
                                     timeout=commands.fetch_timeout, ca_file=commands.fetch_ca_file)
            artifact, _ = service.upload(fetched.data)
            logs.event("artifact_fetched", urn=urn, location=fetched.location, bytes=len(fetched.data))
            return {"policy": artifact["policy"], "version": artifact["version"],
                    "fetched_from": fetched.location, "bytes": len(fetched.data)}
        artifact = service.reactivate(urn, by="SIP-017 command")
        return {"policy": artifact["policy"], "version": artifact["version"]}

    def unload(self, urn: str) -> dict[str, Any]:
        artifact = self._sidecar.service.retire(urn, by="SIP-017 command")
        return {"policy": artifact["policy"], "version": artifact["version"]}

    def set_context(self, name: str, value: Any, expires_at: int) -> None:
        # Nothing to add to the record: the value may be confidential (docs/messaging.md), and the
        # command's record names the context field and its expiry already.
        self._sidecar.set_context(name, value, expires_at)

