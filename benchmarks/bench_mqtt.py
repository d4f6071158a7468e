"""SIP-017 alerts through an MQTT broker (issue 12 items 4 and 7), each figure beside a baseline measured
in the same run. benchmarks/bench_fleet.py shows the same figures as its `mqtt` section (`measure`).

    python benchmarks/bench_mqtt.py          full run (about 20 s)
    python benchmarks/bench_mqtt.py --quick  smoke run: same table, fewer samples

A real Mosquitto broker on loopback (tests/mosquitto.py); the node's side is the sidecar's own edge
(synapse.sidecar.mqtt.MqttMessaging: seal, sign, publish at QoS 1, wait for PUBACK); the recipient
checks every message as a person's console would (axon.messaging.Receiver.accept_signed: signature
against the node's key on the embedded ledger, decrypt, freshness, nonce). Both ends share one process
and event loop, so the figures include neither's network stack beyond loopback.

Rows:
  - MQTT alert latency (p50/p99): one alert at a time, from the Alerter's decision to the recipient
    holding the checked message; baseline: a bare QoS 1 publish of a payload of the same size to the
    same subscriber (no sealing, signing or checking), and the ledger carrier of today (OpCode 9 on the
    embedded SQLite ledger, read back by the recipient's LedgerInbox).
  - alerts per second: N alerts queued at once, until the last is checked at the recipient; baseline:
    N bare QoS 1 publishes, each awaiting its PUBACK as the node's sender does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _table import p50_p99, print_table  # noqa: E402

from axon.keys import Identity, SigningKey, did_for  # noqa: E402
from axon.ledger import Ledger, ops  # noqa: E402
from axon.messaging.inbox import LedgerInbox  # noqa: E402
from axon.messaging.mqtt import BrokerSettings, MqttLink, topic_for  # noqa: E402
from axon.messaging.receiver import Receiver  # noqa: E402
from axon.messaging.signed import LedgerKeys  # noqa: E402
from synapse.service.config import MqttConfig  # noqa: E402
from synapse.sidecar.alerts import Alerter, AlertPolicy, AlertSender, Recipient  # noqa: E402
from synapse.sidecar.mqtt import MqttMessaging, QueuedAlert  # noqa: E402
from tests.mosquitto import Broker  # noqa: E402

WARM_UP = 10
DECISION = {"verdict": "DENY", "code": 0, "rule": "overpressure", "reason": None}


class Bench:
    def __init__(self, directory: Path, broker: Broker) -> None:
        root = Identity(SigningKey.generate(), "did:sopcos:root#key-1")
        node_key, ops_key = SigningKey.generate(), SigningKey.generate()
        self.node = Identity(node_key, did_for(node_key.public_key, "node"))
        self.person = Identity(ops_key, did_for(ops_key.public_key, "ops"))
        self.ledger = Ledger.init(directory / "ledger.db", root)
        now = int(time.time())
        for who, level in ((self.node, 1), (self.person, 3)):
            self.ledger.sign_and_submit(root, ops.register_key(who.did, who.key.public_key, level), now)
        self.recipient = Recipient(ops_key.public_key, self.person.did)
        policy = AlertPolicy((self.recipient,), max_per_window=10**9)
        self.alerter = Alerter(policy, self.node.did)
        self.settings = BrokerSettings(broker.host, broker.port, client_id=None)
        self.config = MqttConfig(host=broker.host, port=broker.port, max_queued_alerts=10**6)
        self.topic = topic_for(self.person.key.public_key.address)
        self.checked = 0
        self.arrived = asyncio.Event()
        self.n = 0

    async def _check(self, topic: str, payload: bytes) -> None:
        received = self.receiver.accept_signed(payload, self.keys)
        assert received is not None and received.message.type == "ALERT"
        self._count()

    async def _raw(self, topic: str, payload: bytes) -> None:
        self._count()

    def _count(self) -> None:
        self.checked += 1
        if self.checked >= self.n:
            self.arrived.set()

    def expect(self, n: int) -> None:
        self.checked, self.n = 0, n
        self.arrived.clear()

    async def all_arrived(self) -> None:
        try:
            await asyncio.wait_for(self.arrived.wait(), 60)
        except TimeoutError:
            raise SystemExit(f"only {self.checked} of {self.n} messages arrived within 60 s") from None

    async def run(self, samples: int, burst: int) -> dict[str, list[float] | float]:
        self.receiver = Receiver(self.person.key, did=self.person.did)
        self.keys = LedgerKeys(self.ledger)
        out: dict[str, list[float] | float] = {}
        person = MqttLink(self.settings, self.topic, self._check)
        node = MqttMessaging(self.config, self.node, inbox=None, record=lambda kind, record: None,
                             activity=lambda: contextlib.nullcontext(True))
        tasks = [asyncio.create_task(person.run()), asyncio.create_task(node.run())]
        await asyncio.wait_for(asyncio.gather(person.connected.wait(), node.link.connected.wait()), 10)

        async def alert(i: int) -> None:
            message = self.alerter.decide(DECISION, f"policy-{i}", "urn:sopcos:bench", f"w0-{i}", time.time())
            node.queue_alert(message, (self.recipient,), f"w0-{i}")

        for i in range(WARM_UP):  # first connections, caches, the ledger's pages: not what is measured
            self.expect(1)
            await alert(-1 - i)
            await self.all_arrived()
        latency = []
        for i in range(samples):
            self.expect(1)
            start = time.perf_counter()
            await alert(i)
            await self.all_arrived()
            latency.append((time.perf_counter() - start) * 1000)
        out["alert"] = latency
        self.expect(burst)
        start = time.perf_counter()
        for i in range(burst):
            await alert(samples + i)
        await self.all_arrived()
        out["alert_rate"] = burst / (time.perf_counter() - start)

        # Baselines: the same subscriber topic, bare payloads of an alert's size, no messaging layer.
        message = self.alerter.decide(DECISION, "policy-size", "urn:sopcos:bench", "w0-size", time.time())
        sized = QueuedAlert(self.recipient, message.body, "w0-size", time.time())
        payload_bytes = node.alerts.envelope(sized, time.time()).to_json().encode()
        bare = []
        person.on_message = self._raw
        for _ in range(samples):
            self.expect(1)
            start = time.perf_counter()
            await node.link.publish(self.topic, payload_bytes)
            await self.all_arrived()
            bare.append((time.perf_counter() - start) * 1000)
        out["bare"] = bare
        self.expect(burst)
        start = time.perf_counter()
        for _ in range(burst):
            await node.link.publish(self.topic, payload_bytes)
        await self.all_arrived()
        out["bare_rate"] = burst / (time.perf_counter() - start)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return out

    def ledger_latency(self, samples: int) -> list[float]:
        sender = AlertSender(self.ledger, self.node)
        inbox = LedgerInbox(self.ledger, Receiver(self.person.key, did=self.person.did), self.ledger.head_seq)
        result = []
        for i in range(samples):
            start = time.perf_counter()
            stamp = time.time()
            out = self.alerter.observe(DECISION, f"ledger-{i}", "urn:sopcos:bench", f"l-{i}", stamp)
            sender.send(out, stamp)
            [item] = inbox.poll()
            assert item.received is not None
            result.append((time.perf_counter() - start) * 1000)
        return result


def sizes(quick: bool) -> tuple[int, int]:
    """(alerts timed one at a time, alerts queued at once)."""
    return (30, 200) if quick else (300, 2000)


def measure(quick: bool, work: Path) -> dict:
    """Every figure: "alert", "bare", "ledger" (latency samples, ms), "alert_rate", "bare_rate" (per s)."""
    samples, burst = sizes(quick)
    directory = work / "mqtt-bench"
    directory.mkdir()
    with Broker(directory) as broker:
        bench = Bench(directory, broker)
        figures = asyncio.run(bench.run(samples, burst))
        figures["ledger"] = bench.ledger_latency(samples)
        bench.ledger.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (rough figures)")
    args = parser.parse_args(argv)
    samples, burst = sizes(args.quick)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"SIP-017 alerts over MQTT (Mosquitto on loopback, QoS 1); {os.cpu_count()} cores, load average "
          f"{load} at start (a shared machine: other engineers' work runs beside this)\n")
    with tempfile.TemporaryDirectory() as tmp:
        figures = measure(args.quick, Path(tmp))
    alert, bare, ledger = figures["alert"], figures["bare"], figures["ledger"]
    rows = []
    for name, xs in (("MQTT alert latency: decision -> checked at the recipient", alert),
                     ("baseline: bare QoS 1 publish -> subscriber, same size", bare),
                     ("baseline: ledger carrier (OpCode 9, SQLite) -> LedgerInbox", ledger)):
        p50, p99 = p50_p99(xs)
        rows.append((name, f"{p50:.2f}", f"{p99:.2f}", f"{1000 / statistics.mean(xs):,.0f}"))
    print(f"latency, {samples} alerts one at a time\n")
    print_table(("path", "p50 ms", "p99 ms", "per s (serial)"), rows, right={1, 2, 3})
    print(f"\nthroughput, {burst} alerts queued at once\n")
    ratio = figures["alert_rate"] / figures["bare_rate"]
    print_table(("path", "per s", "vs bare"),
                [("alerts per second: queued -> all checked at the recipient",
                  f"{figures['alert_rate']:,.0f}", f"{ratio:.2f}x"),
                 ("baseline: bare QoS 1 publishes, each awaiting PUBACK", f"{figures['bare_rate']:,.0f}",
                  "1.00x")], right={1, 2})
    print(f"\nload average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
