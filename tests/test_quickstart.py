"""Issue 16 item 5: every command of docs/quickstart.md, read from the file and run in its order with
bash, in a clone of this repository: clone -> a decision -> a signed artifact -> the service and the page.

What the test changes, and why: the clone's address is this repository (the doc's is a placeholder);
installing is left to .ci/run, which installs the same package on a clean clone before the suite runs
(the commands run with this environment's `scc`, `axon`, `synapse`); the server's port 8080 becomes one
the server picks (8080 may be taken on a shared machine), and the `curl` commands and the page's
address use the port it picked."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from axon import strictjson
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "quickstart.md"
INSTALL = "python3 -m venv .venv && . .venv/bin/activate && pip install -e ."
BASH = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"]


def doc_commands(text: str) -> list[str]:
    """The commands of the ```sh blocks, in order (comment lines and blank lines left out)."""
    commands = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        commands += [line for line in block.splitlines() if line.strip() and not line.startswith("#")]
    return commands


def test_the_extraction_sees_every_block_in_order():
    text = "intro\n```sh\n# a comment\nfirst one\n\nsecond\n```\n```json\n{}\n```\n```sh\nthird &\n```\n"
    assert doc_commands(text) == ["first one", "second", "third &"]


def run(command: str, cwd: Path) -> str:
    done = subprocess.run(BASH + [command], cwd=cwd, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    assert done.returncode == 0, (command, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_every_quickstart_command_works_in_order(tmp_path):
    text = DOC.read_text()
    commands = doc_commands(text)
    order = [c.split()[0] + " " + c.split()[1] for c in commands]
    assert order[:2] == ["git clone", "python3 -m"] and commands[1] == INSTALL
    assert "pip install -q -e '.[dev]'" in (REPO / ".ci" / "run").read_text()  # where installing is tested
    clone, rest = commands[0], commands[2:]
    assert clone.startswith("git clone ") and clone.endswith(" sopcos-edge && cd sopcos-edge")
    run(f"git clone --quiet file://{REPO} sopcos-edge", tmp_path)
    here = tmp_path / "sopcos-edge"

    outputs: dict[str, str] = {}
    server = None
    port = None
    try:
        for command in rest:
            if command.endswith(" &"):  # the service, in the background
                assert command.startswith("synapse serve ") and " --port 8080 " in command + " "
                server, port = start_server(command[:-2].replace("--port 8080", "--port 0"), here)
                continue
            if "127.0.0.1:8080" in command:
                assert port is not None, "the doc asks the service before starting it"
                command = command.replace("127.0.0.1:8080", f"127.0.0.1:{port}")
            outputs[command] = run(command, here)
        assert server is not None and server.poll() is None

        evals = {cmd: out for cmd, out in outputs.items() if cmd.startswith("synapse eval ")}
        assert len(evals) == 3 and all('"verdict":"HALT"' in o for o in evals.values())
        assert all('"rule":"halt-overpressure"' in o for o in evals.values())
        (explained,) = [strictjson.loads(out.split("\n", 1)[0]) for cmd, out in evals.items()
                        if "--explain" in cmd]
        assert explained["explanation"]["rules"][0] == {
            "id": "halt-overpressure", "then": "HALT", "when": True, "outcome": "decided",
            "why": "the first rule whose condition held"}
        (verified,) = [out for cmd, out in outputs.items() if cmd.startswith("axon verify ")]
        assert "VERIFIED boiler-guard 1.2.0" in verified and "did:sopcos:alice#key-1" in verified
        decision, overview = (strictjson.loads(out) for cmd, out in outputs.items()
                              if cmd.startswith("curl "))
        assert decision["verdict"] == "HALT" and decision["rule"] == "halt-overpressure"
        (boiler,) = overview["policies"]
        assert boiler["active"]["urn"] == decision["urn"] and boiler["active"]["version"] == "1.2.0"
        assert boiler["signer"] == "did:sopcos:alice#key-1" and boiler["authority_level"] == "LVL_3"

        (page,) = re.findall(r"<(http://127\.0\.0\.1:8080/ui)>", text)
        answer = httpx.get(page.replace(":8080", f":{port}"), timeout=30)
        assert answer.status_code == 200 and "<title>Sopcos Synapse" in answer.text
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)  # the doc's `kill %1`
            assert server.wait(timeout=60) == 0
    assert list((here / "synapse-decisions").glob("w0-*.jsonl"))  # the service logged where it ran


def start_server(command: str, cwd: Path) -> tuple[subprocess.Popen, int]:
    """The doc's serve command in the background; the port it listens on, once it is ready."""
    log = cwd / "serve.log"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=cwd, env=env, stderr=log.open("wb"),
                            stdout=subprocess.DEVNULL)

    def listening() -> int | None:
        if proc.poll() is not None:
            raise AssertionError(f"synapse serve exited {proc.returncode}: {log.read_text()[-2000:]}")
        for line in log.read_text().splitlines():
            if '"event":"listening"' in line.replace(" ", ""):
                return strictjson.loads(line)["port"]
        return None

    port = wait_until(listening, what="synapse serve listening")

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, what="synapse serve ready")
    return proc, port
