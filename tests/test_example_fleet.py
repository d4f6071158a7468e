"""examples/fleet/run.sh --demo (issue 12 item 8), run as a user would run it, in a temporary directory
on free ports: anvil, Mosquitto, three `synapse run` nodes with [mqtt], two `axon msg watch` consoles.
The assertions read what the script printed: an alert delivered over MQTT (and one held while the
broker was away, delivered when it came back), pings answered over the broker, the revocation seen on
all three nodes (node-3 on its restart), then a clean exit that leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from axon.keys import write_key_file
from tests.mosquitto import Broker
from tests.service_support import Plant

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "fleet" / "run.sh"
DEADLINE_S = 420  # bounds a hang only: on the shared 2-core machine a run takes 60-100 s


def free_ports(count: int) -> int:
    """The first of `count` consecutive free TCP ports on 127.0.0.1 (the nodes take NODE_PORT..+2)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + count > 65535:
            continue
        try:
            held = []
            for port in range(first, first + count):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no run of free ports on 127.0.0.1")


def sections(output: str) -> dict[str, str]:
    """The script's output by step: the heading's words (after '== [ Ns]') to what followed it."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", output)
    parts = re.split(r"^== \[\s*\d+s\] (.*)$", plain, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def step(found: dict[str, str], start: str) -> str:
    [text] = [body for heading, body in found.items() if heading.startswith(start)]
    return text


def left_behind(group: int, work: Path) -> list[str]:
    """Processes (zombies too) in the script's process group, or working under `work` (every process the
    script starts runs there), as "pid state command"."""
    left = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
                cwd = os.readlink(proc / "cwd") if (proc / "cwd").exists() else ""
            except OSError:
                continue
            command, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == group or cwd == str(work) or cwd.startswith(f"{work}/"):
                left.append(f"{proc.name} {fields[0]} {command}")
    return left


def test_fleet_demo_alerts_commands_outages_and_revocation(tmp_path: Path) -> None:
    anvil = shutil.which("anvil") or REPO / ".tools" / "node_modules" / ".bin" / "anvil"
    assert Path(anvil).exists(), "anvil is missing: npm install --prefix .tools @foundry-rs/anvil@1.7.1"
    assert shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists(), \
        "mosquitto is missing: apt-get install mosquitto"
    work = tmp_path / "fleet"
    work.mkdir()
    env = {**os.environ, "WORK": str(work), "ANVIL_PORT": str(free_ports(1)), "MQTT_PORT": str(free_ports(1)),
           "NODE_PORT": str(free_ports(3)),
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), str(Path(anvil).parent),
                                    os.environ.get("PATH", "")])}
    proc = subprocess.Popen([str(SCRIPT), "--demo"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the script's trap stops what it started
        output, _ = proc.communicate(timeout=60)
        raise AssertionError(f"the demo did not finish in {DEADLINE_S} s:\n{output}") from None
    assert proc.returncode == 0, output
    found = sections(output)

    # An alert over MQTT: node-1 decides HALT on its feed, the operator's console prints the ALERT,
    # checked against its own index of the ledger (sender node-1 at LVL_1).
    alert = step(found, "an alert")
    assert "node-1: sidecar decisions ALLOW HALT" in alert
    assert re.search(r'ALERT from did:sopcos:node-1#key-1 \(LVL_1\): \{"policy":"boiler-guard"', alert), alert

    # Pings from the office through the broker, each answered on the office's topic.
    pings = step(found, "the office pings node-1 and node-2")
    for node in ("node-1", "node-2"):
        sent = re.search(rf"sent CMD to did:sopcos:{node}#key-1 through \S+ on \S+, nonce (\w+)", pings)
        assert sent, pings
        reply = f'LOG from did:sopcos:{node}#key-1 (LVL_1): {{"in_reply_to":"{sent[1]}","command":"ping"'
        assert reply in pings, pings

    # The broker away: node-2 still decides (ALLOW then HALT), the alert is queued; it is delivered when
    # the broker is back.
    away = step(found, "the broker goes away")
    assert "node-2: sidecar decisions ALLOW HALT" in away and "node-2: alert_queued" in away
    back = step(found, "the broker comes back")
    assert re.search(r"node-2: alert .*via=mqtt", back), back
    assert "ALERT from did:sopcos:node-2#key-1 (LVL_1)" in back

    # The chain away: all three keep serving what they verified.
    chain_away = step(found, "the chain goes away")
    assert [f"node-{i}: ALLOW" in chain_away and f"node-{i}: ledger_chain_unavailable" in chain_away
            for i in (1, 2, 3)] == [True] * 3

    # The revocation from the office stops node-1 and node-2 while node-3 is stopped; node-3 catches up
    # on restart (its preload refused as revoked), answers the ping that waited at the broker, and all
    # three refuse the policy.
    revoked = step(found, "node-3 goes away")
    assert [f"node-{i}: artifact_revoked" in revoked for i in (1, 2)] == [True, True]
    assert "node-3: (stopped)" in revoked
    caught_up = step(found, "node-3 comes back")
    assert "node-3: artifact_preload_failed" in caught_up and "code=AXON-VERIFY-REVOKED" in caught_up
    waited = re.search(r"sent CMD to did:sopcos:node-3#key-1 through \S+ on \S+, nonce (\w+)",
                       step(found, "the office pings node-3 while it is away"))
    assert waited and f'LOG from did:sopcos:node-3#key-1 (LVL_1): {{"in_reply_to":"{waited[1]}"' in caught_up
    assert [f"node-{i}: SYNAPSE-SVC-POLICY-NOT-SERVED" in caught_up for i in (1, 2, 3)] == [True] * 3

    # A clean exit: the trap stopped everything (anvil, Mosquitto, three nodes, two consoles).
    assert "stopped everything this script started" in output
    assert left_behind(proc.pid, work) == []


@pytest.mark.parametrize("missing, advice", [
    ("ANVIL", "anvil is missing: npm install"),
    ("MOSQUITTO", "mosquitto is missing: apt-get install mosquitto"),
])
def test_a_missing_system_part_is_named_with_how_to_install_it(tmp_path: Path, missing: str,
                                                               advice: str) -> None:
    env = {**os.environ, missing: str(tmp_path / "not-installed"), "WORK": str(tmp_path)}
    done = subprocess.run([str(SCRIPT), "--demo"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and advice in done.stderr, done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was started or written


def test_a_console_with_a_client_id_gets_what_arrived_while_it_was_away(tmp_path: Path) -> None:
    """What the example's consoles rely on (`axon msg watch --client-id`): a message published while the
    console was closed and the broker restarted (persistence on) is printed when it reconnects; a console
    without a client id has a clean session and never sees it."""
    plant = Plant(tmp_path)
    for name, who in (("operator", plant.operator), ("admin", plant.admin)):
        write_key_file(tmp_path / f"{name}.key", who.key, who.did)
    with Broker(tmp_path, persistent=True) as broker:
        common = ["--ledger", str(plant.ledger_path), "--broker", f"mqtt://{broker.host}:{broker.port}"]

        def watch(*extra: str) -> subprocess.Popen[str]:
            command = [sys.executable, "-m", "axon", "msg", "watch", "--key", str(tmp_path / "operator.key"),
                       *common, "--json", "--count", "1", *extra]
            return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def while_away(*extra: str) -> str:
            """Connect once and close; restart the broker; send; watch again: what it printed."""
            first = watch("--timeout", "60", *extra)
            assert "watching sopcos/v1/to/0x" in first.stderr.readline()
            first.terminate()
            first.communicate(timeout=30)
            broker.stop()
            broker.start()
            sent = subprocess.run([sys.executable, "-m", "axon", "msg", "send", "--to", plant.operator.did,
                                   "--type", "LOG", "--body", '{"note": "while you were away"}', "--key",
                                   str(tmp_path / "admin.key"), *common],
                                  capture_output=True, text=True, timeout=60, check=False)
            assert sent.returncode == 0, sent.stderr
            out, _ = watch("--timeout", "5", *extra).communicate(timeout=60)
            return out

        assert while_away() == ""  # a clean session: nothing kept for it
        [line] = while_away("--client-id", "console-operator").splitlines()
        got = json.loads(line)
        assert got["status"] == "accepted" and got["message"]["body"] == {"note": "while you were away"}
