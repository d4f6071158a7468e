"""A set_context value stays secret, and what is dropped is counted: the real sidecar (`synapse run`)
takes commands, a forged and a replayed message, raises and holds back alerts, and follows the ledger;
its /metrics show each, and neither its decision log nor its log output nor its metrics hold the
value. The SCP server's refusals reach the same metrics through its `on_refused` hook."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from axon.keys import SigningKey
from axon.ledger import Ledger, ops
from axon.messaging.envelope import seal
from axon.messaging.inner import Message
from axon.transports.scp import connect, serve
from axon.transports.scp_errors import ScpError
from axon.transports.scp_peers import PinnedPeer
from axon.transports.scp_protocol import ScpConfig
from synapse.service.metrics import Metrics
from tests.scp_fixtures import CLIENT, SERVER
from tests.service_support import AUTO, NORMAL, Plant, Server, write_config
from tests.waiting import wait_until

SECRET = "S3CRET-maint-4711"
HALT = {**NORMAL, "pressure_bar": 99}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels without worker): value}"""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if k != "worker"))
            out[(s.name, labels)] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


def post(plant: Plant, sender, envelope: dict) -> None:
    plant.submit(sender, ops.message(plant.node.did, envelope))


def command(plant: Plant, body: dict, key=None) -> dict:
    return seal(key or plant.node.key.public_key, Message.new("CMD", body, time.time())).to_dict()


@pytest.mark.slow
def test_the_sidecar_counts_what_it_drops_and_keeps_a_context_value_secret(tmp_path):
    plant = Plant(tmp_path)
    sop, urn = plant.artifact("1.0.0")
    (tmp_path / "boiler.sop").write_bytes(sop)
    cfg = write_config(tmp_path / "sidecar.toml", {
        "ledger": {"path": plant.ledger_path, "follow_interval": 0.3},
        "node": {"key": plant.node_key},
        "store": {"path": tmp_path / "store"},
        "decision_log": {"path": tmp_path / "decisions", "mask": ["context.shift_code"]},
        "auth": {"open_evaluate": True},
        "sidecar": {"artifacts": [tmp_path / "boiler.sop"], "source": "-", "interval": 0.1,
                    "policies": ["boiler-guard"], "context": AUTO},
        "sidecar.alerts": {"recipients": [plant.operator.did], "verdicts": ["HALT"]},
        "sidecar.commands": {"enabled": True, "poll_interval": 0.2},
    })
    server = Server(tmp_path, cfg, command="run", stdin=subprocess.PIPE).wait_ready()

    def metrics() -> str:
        return server.client.get("/metrics").text

    try:
        before = metrics()
        assert value(before, "synapse_commands_total", command="set_context", outcome="executed") == 0
        feed = server.proc.stdin
        feed.write(json.dumps({"telemetry": NORMAL}).encode() + b"\n")
        feed.flush()
        # An administrator sets a confidential context value; an operator may not unload (refused).
        post(plant, plant.admin, command(plant, {"command": "set_context", "name": "shift_code",
                                                 "value": SECRET, "expires_at": int(time.time()) + 600}))
        post(plant, plant.operator, command(plant, {"command": "unload", "urn": urn}))
        # A ping posted twice on the ledger: the second is a replay of the first (same nonce).
        ping = command(plant, {"command": "ping"})
        post(plant, plant.operator, ping)
        post(plant, plant.operator, ping)
        # Sealed to another key: whoever posts it, this node cannot open it.
        post(plant, plant.operator, command(plant, {"command": "ping"}, SigningKey.generate().public_key))
        # HALT: an alert is sent, and the scheduled evaluations that repeat it are held back.
        feed.write(json.dumps({"telemetry": HALT}).encode() + b"\n")
        feed.flush()

        def counted():
            text = metrics()
            moved = [value(text, "synapse_commands_total", command="set_context", outcome="executed"),
                     value(text, "synapse_commands_total", command="unload", outcome="refused"),
                     value(text, "synapse_commands_total", command="ping", outcome="executed"),
                     value(text, "synapse_sip017_messages_dropped_total", reason="MSG-REPLAY"),
                     value(text, "synapse_sip017_messages_dropped_total", reason="MSG-DECRYPT"),
                     value(text, "synapse_alerts_total", outcome="sent"),
                     value(text, "synapse_alerts_total", outcome="suppressed_duplicate"),
                     value(text, "synapse_alert_deliveries_total", outcome="posted")]
            return text if all(moved) else None

        text = wait_until(counted, what="every counter to move")
        assert value(text, "synapse_commands_total", command="set_context", outcome="executed") == 1
        assert value(text, "synapse_commands_total", command="unload", outcome="refused") == 1
        assert value(text, "synapse_commands_total", command="unload", outcome="executed") == 0
        assert value(text, "synapse_commands_total", command="ping", outcome="executed") == 1
        assert value(text, "synapse_sip017_messages_dropped_total", reason="MSG-REPLAY") == 1
        assert value(text, "synapse_sip017_messages_dropped_total", reason="MSG-DECRYPT") == 1
        assert value(text, "synapse_alerts_total", outcome="sent") == 1
        assert value(text, "synapse_alert_deliveries_total", outcome="posted") == 1

        # The ledger head the service follows: every entry above, and the alert it posted itself.
        with Ledger.open(plant.ledger_path) as ledger:
            head = ledger.head_seq

        def followed():
            text = metrics()
            return text if value(text, "synapse_ledger_head_seq") >= head else None

        text = wait_until(followed, what="the follower to reach the ledger head")
        lag = value(text, "synapse_ledger_follow_lag_seconds")
        assert 0 <= lag < float("inf")
        assert value(before, "synapse_ledger_head_seq") < head
        assert SECRET not in text
    finally:
        assert server.stop() == 0

    # The value was used: decisions were taken with it (masked), yet it is nowhere in clear.
    logged = "".join(p.read_text() for p in sorted((tmp_path / "decisions").glob("*.jsonl")))
    records = [json.loads(line) for line in logged.splitlines()]
    with_value = [r for r in records if r["kind"] == "decision" and "shift_code" in r["context"]]
    assert with_value and all(set(r["context"]["shift_code"]) == {"hmac-sha256"} for r in with_value)
    commands = [r["data"] for r in records if r["kind"] == "event" and r["event"] == "command"]
    assert any(c.get("name") == "shift_code" and c["status"] == "ok" for c in commands)
    assert SECRET not in logged
    output = server.stderr_path.read_text()  # the service's log lines (JSON on stderr)
    assert SECRET not in output
    assert any(json.loads(line).get("event") == "command" and '"shift_code"' in line
               for line in output.splitlines() if line.startswith("{"))


@pytest.mark.timeout(60)
def test_scp_connections_refused_are_counted_by_reason():
    metrics = Metrics()

    async def hold(conn) -> None:
        async for _ in conn:
            pass

    async def main() -> None:
        errors: list[ScpError] = []
        config = ScpConfig(max_connections=1)
        async with await serve("127.0.0.1", 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold,
                               config=config, on_error=lambda exc, _peer: errors.append(exc),
                               on_refused=metrics.scp_refused) as server:
            first = await connect("127.0.0.1", server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            with pytest.raises(ScpError):  # over max_connections
                await connect("127.0.0.1", server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            await first.close()
            while server.admission.connections:
                await asyncio.sleep(0.01)
            # Not the pinned client key: the handshake fails, and that is a refusal too.
            stranger = SERVER  # any identity other than CLIENT
            with contextlib.suppress(ScpError):  # the client learns it on its next read
                conn = await connect("127.0.0.1", server.port, stranger, PinnedPeer(SERVER.key.public_key))
                await conn.receive()
            while len(errors) < 2:
                await asyncio.sleep(0.01)
        return errors

    errors = asyncio.run(main())
    text = metrics.render().decode()
    assert value(text, "synapse_scp_connections_refused_total", reason="SCP-E-BUSY") == 1
    assert value(text, "synapse_scp_connections_refused_total", reason=errors[1].code) == 1
    assert errors[1].code != "SCP-E-BUSY"


def test_label_values_come_from_closed_sets():
    metrics = Metrics()
    metrics.message_dropped(f"MSG-REPLAY {SECRET}")
    metrics.command(SECRET, "refused")
    metrics.alert(SECRET)
    metrics.scp_refused(ScpError(SECRET))
    text = metrics.render().decode()
    assert SECRET not in text
    assert value(text, "synapse_sip017_messages_dropped_total", reason="other") == 1
    assert value(text, "synapse_commands_total", command="other", outcome="refused") == 1
    assert value(text, "synapse_alerts_total", outcome="other") == 1
    assert value(text, "synapse_scp_connections_refused_total", reason="SCP-E") == 1
