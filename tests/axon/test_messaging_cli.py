"""`axon msg seal|open|send|inbox` end to end, through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from axon.cli import main
from axon.keys import write_key_file
from axon.ledger import Ledger, ops
from tests.messaging_fixtures import Plant, plant


@pytest.fixture
def p(tmp_path) -> Plant:
    return plant(tmp_path)


def keyfile(tmp_path, who) -> str:
    path = tmp_path / f"{who.did.split(':')[2].split('#')[0]}.key"
    if not path.exists():
        write_key_file(path, who.key, who.did)
    return str(path)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_seal_then_open_round_trip(p, tmp_path, capsys):
    code, out, _ = run(capsys, "msg", "seal", "--to", p.node.key.public_key.hex(), "--type", "CMD",
                       "--body", '{"command": "ping"}')
    assert code == 0 and list(json.loads(out)) == ["p", "enc", "iv", "ephem_pub", "blob"]
    (tmp_path / "env.json").write_text(out)
    code, out, _ = run(capsys, "msg", "open", "--key", keyfile(tmp_path, p.node), str(tmp_path / "env.json"))
    message = json.loads(out)
    assert code == 0 and message["type"] == "CMD" and message["body"] == {"command": "ping"}
    assert abs(message["timestamp"] - time.time()) < 60 and len(message["nonce"]) == 24


def test_open_reports_failures_with_exit_1_and_code(p, tmp_path, capsys):
    _, out, _ = run(capsys, "msg", "seal", "--to", p.node.key.public_key.hex(), "--type", "LOG",
                    "--body", "{}")
    (tmp_path / "env.json").write_text(out)
    code, _, err = run(capsys, "msg", "open", "--key", keyfile(tmp_path, p.admin), str(tmp_path / "env.json"))
    assert code == 1 and "[MSG-DECRYPT]" in err
    code, _, err = run(capsys, "msg", "open", "--key", keyfile(tmp_path, p.node), "--at",
                       str(time.time() + 3600), str(tmp_path / "env.json"))
    assert code == 1 and "[MSG-STALE]" in err
    code, _, err = run(capsys, "msg", "open", "--key", keyfile(tmp_path, p.node), "--window", "3600",
                       str(tmp_path / "env.json"))
    assert code == 2 and "window_s" in err
    code, _, err = run(capsys, "msg", "open", "--key", keyfile(tmp_path, p.node), str(tmp_path / "missing"))
    assert code == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "zz", "--type", "CMD", "--body", "{}"], "--to"),
    (["--to", "PUB", "--type", "cmd", "--body", "{}"], "/type"),
    (["--to", "PUB", "--type", "CMD", "--body", "[1]"], "JSON object"),
    (["--to", "PUB", "--type", "CMD", "--body", "{"], "not JSON"),
])
def test_seal_usage_errors_exit_2(p, capsys, args, message):
    args = [a.replace("PUB", p.node.key.public_key.hex()) for a in args]
    code, _, err = run(capsys, "msg", "seal", *args)
    assert code == 2 and message in err


def test_send_and_inbox_over_the_embedded_ledger(p, tmp_path, capsys):
    ledger = str(p.ledger.path)
    code, out, _ = run(capsys, "msg", "send", "--ledger", ledger, "--key", keyfile(tmp_path, p.admin),
                       "--to", p.node.did, "--type", "CMD", "--body", '{"command": "ping"}')
    assert code == 0 and "ledger entry #" in out
    code, out, _ = run(capsys, "msg", "inbox", "--ledger", ledger, "--key", keyfile(tmp_path, p.node),
                       "--json")
    [item] = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and item["status"] == "accepted"
    assert item["sender"] == {"did": p.admin.did, "level": "LVL_4", "source": "ledger"}
    assert item["message"]["body"] == {"command": "ping"}
    # Marked read: nothing new the second time.
    code, out, err = run(capsys, "msg", "inbox", "--ledger", ledger, "--key", keyfile(tmp_path, p.node))
    assert code == 0 and out == "" and "no new messages" in err


def test_inbox_replay_across_runs_is_dropped(p, tmp_path, capsys):
    """Someone copies an envelope from the public ledger into their own transaction after it was read."""
    ledger_path = str(p.ledger.path)
    run(capsys, "msg", "send", "--ledger", ledger_path, "--key", keyfile(tmp_path, p.admin),
        "--to", p.node.did, "--type", "LOG", "--body", '{"n": 1}')
    code, out, _ = run(capsys, "msg", "inbox", "--ledger", ledger_path, "--key", keyfile(tmp_path, p.node))
    assert code == 0 and f"LOG from {p.admin.did} (LVL_4): {{\"n\":1}}" in out
    with Ledger.open(ledger_path) as ledger:
        original = ledger.messages(p.node.did)[-1]
        ledger.sign_and_submit(p.viewer, ops.message(p.node.did, original.op["envelope"]), int(time.time()))
    code, out, _ = run(capsys, "msg", "inbox", "--ledger", ledger_path, "--key", keyfile(tmp_path, p.node))
    assert code == 1 and "dropped" in out and "MSG-REPLAY" in out


def test_send_to_unknown_did_is_a_usage_error(p, tmp_path, capsys):
    code, _, err = run(capsys, "msg", "send", "--ledger", str(p.ledger.path), "--key",
                       keyfile(tmp_path, p.admin), "--to", "did:sopcos:nobody#key-1", "--type", "LOG",
                       "--body", "{}")
    assert code == 2 and "no unrevoked key" in err


def test_outsider_cannot_send_on_the_ledger(p, tmp_path, capsys):
    code, _, err = run(capsys, "msg", "send", "--ledger", str(p.ledger.path), "--key",
                       keyfile(tmp_path, p.outsider), "--to", p.node.did, "--type", "LOG", "--body", "{}")
    assert code == 1 and "axon msg:" in err


@pytest.mark.slow
def test_module_entry_point_and_stdin(p, tmp_path):
    axon = [sys.executable, "-m", "axon", "msg"]
    env_json = subprocess.run([*axon, "seal", "--to", p.node.key.public_key.hex(), "--type", "ALERT",
                               "--body", '{"x": 1}'], capture_output=True, text=True, check=True)
    done = subprocess.run([*axon, "open", "--key", keyfile(tmp_path, p.node), "-"],
                          input=env_json.stdout, capture_output=True, text=True)
    assert done.returncode == 0 and json.loads(done.stdout)["body"] == {"x": 1}
