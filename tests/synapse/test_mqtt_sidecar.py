"""SIP-017 over MQTT end to end (issue 12 item 4): a real Mosquitto broker (TLS, passwords) and real
`synapse run` processes. Alerts reach a person's topic, a command is answered on the sender's topic, a
captured command republished after the node restarted is dropped (MSG-REPLAY, logged and recorded),
and while the broker is away the node keeps deciding, queues the alert and delivers it when the
broker is back."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from axon.keys import Identity, SigningKey, write_key_file
from axon.ledger import Ledger
from axon.messaging import Message, Receiver, seal, sign
from axon.messaging import key_exchange as kx
from axon.messaging.errors import BrokerUnavailable
from axon.messaging.mqtt import BrokerSettings, MqttLink, topic_for
from axon.messaging.signed import LedgerKeys
from tests.mosquitto import Broker
from tests.service_support import HALT, NORMAL, REPO, Plant, Server, records, write_config
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


class Person:
    """Someone on the broker with their own key (an operator's console): reads their topic in a thread
    with its own event loop, and publishes."""

    def __init__(self, broker: Broker, who: Identity, username: str, password: str) -> None:
        self.who = who
        # A persistent session: the broker queues this person's QoS 1 messages while they are away.
        self.settings = BrokerSettings(broker.host, broker.port, tls=True, ca_file=broker.tls.ca_file,
                                       username=username, password=password, client_id=f"console-{username}")
        self.topic = topic_for(who.key.public_key.address)
        self.payloads: list[bytes] = []
        self._loop = asyncio.new_event_loop()
        self._link = MqttLink(self.settings, self.topic, self._got, reconnect_max_s=0.5)
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),),
                                        daemon=True)
        self._thread.start()
        wait_until(self._link.connected.is_set, what=f"{who.did} connected to the broker")

    async def _run(self) -> None:
        self._task = asyncio.current_task()
        with contextlib.suppress(asyncio.CancelledError):
            await self._link.run()

    async def _got(self, topic: str, payload: bytes) -> None:
        self.payloads.append(payload)

    def publish(self, to: Identity, payload: bytes) -> None:
        wait_until(self._link.connected.is_set, what="the person's link to the broker")
        topic = topic_for(to.key.public_key.address)
        asyncio.run_coroutine_threadsafe(self._link.publish(topic, payload), self._loop).result(15)

    def messages(self, ledger_path: Path) -> list:
        """Every payload so far, checked as this person's receiver would (sender on the ledger)."""
        receiver = Receiver(self.who.key, did=self.who.did, nonces=None)
        with Ledger.open(ledger_path) as ledger:
            return [receiver.accept_signed(p, LedgerKeys(ledger)) for p in list(self.payloads)]

    def close(self) -> None:
        """Stop the link and its thread (left running, it would keep reconnecting after the broker is gone
        and print to the end of the test run)."""
        self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(15)
        self._loop.close()


def node_config(plant: Plant, broker: Broker, sop: Path, feed: Path, password: str = "node-pw") -> Path:
    (plant.dir / "mqtt-password").write_text(password + "\n")
    return write_config(plant.dir / "sidecar.toml", {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.5},
        "node": {"key": plant.node_key},
        "store": {"path": plant.dir / "store"},
        "decision_log": {"path": plant.dir / "decisions"},
        "auth": {"open_evaluate": True},
        "sidecar": {"artifacts": [sop], "source": str(feed), "interval": 0, "follow": True},
        "sidecar.alerts": {"recipients": [plant.operator.did]},
        "mqtt": {"host": broker.host, "port": broker.port, "tls": True, "ca_file": broker.tls.ca_file,
                 "username": "node", "password_file": plant.dir / "mqtt-password", "reconnect_max": 0.5},
    })


def feed_line(path: Path, telemetry: dict) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps({"telemetry": telemetry, "context": {"mode": "AUTO"}}) + "\n")


def events(server: Server, name: str) -> list[dict]:
    return [e for e in server.events() if e.get("event") == name]


USERS = {"node": "node-pw", "operator": "op-pw", "admin": "admin-pw"}


def test_alerts_commands_and_a_replay_after_restart(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact()
    (tmp_path / "boiler.sop").write_bytes(sop)
    feed = tmp_path / "feed.jsonl"
    feed.touch()
    with Broker(tmp_path, tls=True, users=USERS) as broker:
        operator = Person(broker, plant.operator, "operator", USERS["operator"])
        admin = Person(broker, plant.admin, "admin", USERS["admin"])
        config = node_config(plant, broker, tmp_path / "boiler.sop", feed)
        server = Server(tmp_path, config, command="run").wait_ready()
        try:
            wait_until(lambda: events(server, "mqtt_connected"), what="the node on the broker")
            feed_line(feed, HALT)
            [alert] = wait_until(lambda: operator.messages(plant.ledger_path), what="the alert")
            assert alert.sender.did == plant.node.did and alert.message.type == "ALERT"
            assert alert.message.body["verdict"] == "HALT" and alert.message.body["policy"] == "boiler-guard"

            ping = Message.new("CMD", {"command": "ping", "echo": "over mqtt"}, plant.now)
            captured = sign(plant.admin, plant.node.did, seal(plant.node.key.public_key, ping)).to_json()
            admin.publish(plant.node, captured.encode())
            [reply] = wait_until(lambda: admin.messages(plant.ledger_path), what="the ping's answer")
            assert reply.sender.did == plant.node.did and reply.message.type == "LOG"
            assert reply.message.body["in_reply_to"] == ping.nonce
            assert reply.message.body["echo"] == "over mqtt"

            # Key exchange for an SCP session: the operator (LVL_2) offers, the node accepts.
            pending = kx.offer(plant.node.did, plant.now)
            offer = Message.new("KEY_EXCHANGE", pending.offer.to_body(), plant.now)
            operator.publish(plant.node, sign(plant.operator, plant.node.did,
                                              seal(plant.node.key.public_key, offer)).to_json().encode())
            [accept] = wait_until(lambda: [m for m in operator.messages(plant.ledger_path)
                                           if m.message.type == "KEY_EXCHANGE"], what="the accept")
            session = kx.complete(pending, accept.message.body, plant.node.did, plant.operator.did, plant.now)
            [recorded] = [e for e in events(server, "command") if e.get("type") == "KEY_EXCHANGE"]
            assert recorded["session_id"] == session.session_id.hex() and recorded["status"] == "ok"
        finally:
            assert server.stop() == 0

        # The node restarts; the captured command is published again within the freshness window.
        server = Server(tmp_path, config, command="run").wait_ready()
        try:
            wait_until(lambda: events(server, "mqtt_connected"), what="the restarted node on the broker")
            admin.publish(plant.node, captured.encode())
            dropped = wait_until(lambda: [e for e in events(server, "command")
                                          if e.get("status") == "dropped"], what="the replay dropped")
            assert dropped[0]["code"] == "MSG-REPLAY" and "restart" in dropped[0]["reason"]
            assert any("MSG-REPLAY" in e.get("event", "") for e in server.events())  # the receiver's warning
        finally:
            assert server.stop() == 0
        assert len(admin.payloads) == 1  # answered once, not twice
        commands = [r for r in records(plant) if r.get("event") == "command"]
        assert [(c["data"]["status"], c["data"].get("code")) for c in commands] == [
            ("ok", None), ("ok", None), ("dropped", "MSG-REPLAY")]
        assert "node-pw" not in server.stderr_path.read_text()  # the broker password never reaches the log
        operator.close()
        admin.close()


def test_broker_away_decisions_go_on_and_the_alert_waits(tmp_path):
    plant = Plant(tmp_path)
    sop, _ = plant.artifact()
    (tmp_path / "boiler.sop").write_bytes(sop)
    feed = tmp_path / "feed.jsonl"
    feed.touch()
    with Broker(tmp_path, tls=True, users=USERS, persistent=True) as broker:
        operator = Person(broker, plant.operator, "operator", USERS["operator"])
        server = Server(tmp_path, node_config(plant, broker, tmp_path / "boiler.sop", feed),
                        command="run").wait_ready()
        try:
            wait_until(lambda: events(server, "mqtt_connected"), what="the node on the broker")
            broker.stop()
            wait_until(lambda: events(server, "mqtt_disconnected"), what="the node noticing")
            feed_line(feed, NORMAL)
            feed_line(feed, HALT)
            queued = wait_until(lambda: events(server, "alert_queued"), what="the alert queued")
            assert queued[0]["queued"] == 1
            # Deciding did not wait for the broker: both decisions are logged, the HALT as HALT.
            verdicts = [r["verdict"] for r in records(plant) if r["kind"] == "decision"]
            assert verdicts == ["ALLOW", "HALT"]
            assert operator.payloads == []

            broker.start()
            [alert] = wait_until(lambda: operator.messages(plant.ledger_path), timeout=30,
                                 what="the queued alert after the broker came back")
            assert alert.message.body["verdict"] == "HALT"
            [sent] = wait_until(lambda: events(server, "alert"), what="the alert's delivery logged")
            assert sent["via"] == "mqtt" and sent["queued_s"] > 0

            # Away again, and the node stops before it is back: the waiting alert is reported, not lost
            # silently.
            broker.stop()
            wait_until(lambda: len(events(server, "mqtt_disconnected")) >= 2, what="the second loss")
            feed_line(feed, NORMAL)
            feed_line(feed, HALT)
            wait_until(lambda: len(events(server, "alert_queued")) >= 2, what="the second alert queued")
        finally:
            assert server.stop() == 0
        delivered = [r["data"] for r in records(plant) if r.get("event") == "alert"]
        assert len(delivered) == 1 and delivered[0]["to"] == plant.operator.did
        [undelivered] = [r["data"] for r in records(plant) if r.get("event") == "alert_dropped"]
        assert undelivered["to"] == plant.operator.did and "stopped" in undelivered["reason"]
        assert [r["verdict"] for r in records(plant) if r["kind"] == "decision"] == ["ALLOW", "HALT"] * 2
        operator.close()


def test_broker_refusals_say_why_without_the_secret(tmp_path):
    async def attempt(settings: BrokerSettings) -> str:
        reasons: list[str] = []
        link = MqttLink(settings, None, None, lambda state, reason: reasons.append(reason or state))
        task = asyncio.create_task(link.run())
        while not reasons:
            await asyncio.sleep(0.05)
        task.cancel()
        return reasons[0]

    with Broker(tmp_path, tls=True, users=USERS) as broker:
        base = dict(host=broker.host, port=broker.port, tls=True, ca_file=broker.tls.ca_file)
        wrong = asyncio.run(attempt(BrokerSettings(**base, username="node", password="not-it")))
        assert "authori" in wrong.lower() and "not-it" not in wrong
        right = asyncio.run(attempt(BrokerSettings(**base, username="node", password="node-pw")))
        assert right == "connected"
        other_ca = Broker(tmp_path, tls=True)  # another CA, never started: only its certificate is used
        untrusted = asyncio.run(attempt(BrokerSettings(**{**base, "ca_file": other_ca.tls.ca_file},
                                                      username="node", password="node-pw")))
        assert "certificate" in untrusted.lower()

        async def publish_unconnected() -> None:
            link = MqttLink(BrokerSettings(**base, username="admin", password="admin-pw"))
            await link.publish(topic_for("0x" + "00" * 20), b"{}")

        with pytest.raises(BrokerUnavailable, match="not connected"):
            asyncio.run(publish_unconnected())


def test_the_mqtt_benchmark_runs_and_prints_its_rows():
    """`python benchmarks/bench_mqtt.py --quick` end to end (no timing asserted: figures live there)."""
    done = subprocess.run([sys.executable, "benchmarks/bench_mqtt.py", "--quick"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for row in ("MQTT alert latency", "baseline: bare QoS 1 publish", "baseline: ledger carrier",
                "alerts per second", "load average"):
        line = next((x for x in done.stdout.splitlines() if row in x), None)
        assert line is not None and any(ch.isdigit() for ch in line), done.stdout


def test_axon_msg_send_and_watch_through_the_broker(tmp_path):
    """A person's side on the command line: `axon msg watch` prints what reaches their topic, checked
    against the ledger; `axon msg send --broker` publishes a signed wrapper."""
    plant = Plant(tmp_path)
    for who in (plant.operator, plant.admin):
        write_key_file(tmp_path / f"{who.did.split(':')[2].split('#')[0]}.key", who.key, who.did)
    with Broker(tmp_path, tls=True, users=USERS) as broker:
        def broker_args(user: str) -> list[str]:
            (tmp_path / f"{user}.pw").write_text(USERS[user])
            return ["--ledger", str(plant.ledger_path), "--broker", f"mqtts://{broker.host}:{broker.port}",
                    "--ca-file", str(broker.tls.ca_file), "--username", user,
                    "--password-file", str(tmp_path / f"{user}.pw")]

        watch = subprocess.Popen([sys.executable, "-m", "axon", "msg", "watch", "--key",
                                  str(tmp_path / "operator.key"), *broker_args("operator"), "--count", "2",
                                  "--json", "--timeout", "60"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            assert "watching sopcos/v1/to/0x" in watch.stderr.readline()
            sent = subprocess.run([sys.executable, "-m", "axon", "msg", "send", "--to", plant.operator.did,
                                   "--type", "LOG", "--body", '{"note": "shift handover"}', "--key",
                                   str(tmp_path / "admin.key"), *broker_args("admin")],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert sent.returncode == 0 and "through mqtts://" in sent.stdout, sent.stdout + sent.stderr
            outsider = Identity(SigningKey.generate(), "did:sopcos:outsider#key-1")
            forged = sign(outsider, plant.operator.did,
                          seal(plant.operator.key.public_key, Message.new("ALERT", {"x": 1}, plant.now)))
            # Valid broker credentials are not an identity: the signature is checked against the ledger.
            intruder = Person(broker, plant.admin, "admin", USERS["admin"])
            try:
                intruder.publish(plant.operator, forged.to_json().encode())
                out, _ = watch.communicate(timeout=60)
            finally:
                intruder.close()
        finally:
            watch.kill()
    first, second = (json.loads(line) for line in out.splitlines())
    assert first["status"] == "accepted" and first["sender"]["did"] == plant.admin.did
    assert first["message"]["body"] == {"note": "shift handover"}
    assert second["status"] == "dropped" and second["error"]["code"] == "MSG-UNKNOWN-SENDER"
    assert watch.returncode == 1  # one was dropped
