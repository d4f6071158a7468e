"""Process hardening for decrypted modules: no core dumps, not dumpable, the plaintext buffer locked
and wiped (synapse/hardening.py; docs/artifacts.md)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from axon.verify import Verifier
from synapse.artifacts import load_verified
from synapse.hardening import locked_bytearray, wipe
from tests.artifact_fixtures import GROUP, NOW, compiled, make_world
from tests.service_support import Plant, Server, write_config
from tests.waiting import wait_until

CHILD = """
import json, resource
from synapse.hardening import dumpable, harden_process
before = {"dumpable": dumpable(), "core": list(resource.getrlimit(resource.RLIMIT_CORE))}
result = harden_process()
after = {"dumpable": dumpable(), "core": list(resource.getrlimit(resource.RLIMIT_CORE))}
try:
    resource.setrlimit(resource.RLIMIT_CORE, (1 << 20, 1 << 20))
    raised = True
except (OSError, ValueError):
    raised = False
print(json.dumps({"before": before, "after": after, "result": [result.no_core_file, result.not_dumpable],
                  "could_raise_core_again": raised}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_DUMPABLE) is Linux only")
def test_a_hardened_process_dumps_no_core_and_is_not_dumpable():
    # In a child: PR_SET_DUMPABLE 0 on the test process itself would outlive the test.
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["before"]["dumpable"] == 1  # what the child starts with: the change is the function's
    assert report["after"] == {"dumpable": 0, "core": [0, 0]}
    assert report["result"] == [True, True]
    # A hard limit of 0 cannot be raised again, except with CAP_SYS_RESOURCE.
    assert not report["could_raise_core_again"] or os.geteuid() == 0


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def _locked_kib() -> int:
    return int(re.search(r"VmLck:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_a_locked_bytearray_is_locked_until_wiped_or_collected():
    before = _locked_kib()
    buffer = locked_bytearray(256 * 1024)
    # mlock succeeds within RLIMIT_MEMLOCK (or with CAP_IPC_LOCK): the kernel counts the pages.
    assert _locked_kib() >= before + 256
    buffer[:6] = b"secret"
    wipe(buffer)
    assert _locked_kib() == before and buffer == bytes(256 * 1024)
    forgotten = locked_bytearray(256 * 1024)
    forgotten[:6] = b"secret"
    assert _locked_kib() >= before + 256
    del forgotten  # never wiped by its user: wiped and unlocked as it is collected
    assert _locked_kib() == before


def test_an_encrypted_module_is_decrypted_into_locked_memory_and_wiped_once_compiled(world):
    module = compiled("boiler-guard")
    sop = world.package(module, encrypt_for=[GROUP]).to_bytes()
    seen: list[bytearray] = []

    def plaintext(size: int) -> bytearray:
        seen.append(locked_bytearray(size))
        return seen[-1]

    verified, evaluator = load_verified(sop, Verifier(world.ledger, node_identity=world.node,
                                                      now=lambda: NOW, plaintext=plaintext))
    assert len(seen) == 1 and verified.module is seen[0]  # decrypted there, not copied elsewhere first
    assert verified.module == bytes(len(module))  # wiped once compiled
    decision = evaluator.evaluate({"pressure_bar": 97.5, "valve_open": False}, {"mode": "AUTO"})
    assert decision.verdict.name == "HALT"  # the compiled module does not need the plaintext


def test_a_plain_module_is_not_touched(world):
    module = compiled("boiler-guard")
    verified, _ = load_verified(world.package(module).to_bytes(),
                                Verifier(world.ledger, node_identity=world.node, now=lambda: NOW,
                                         plaintext=locked_bytearray))
    assert isinstance(verified.module, bytes) and verified.module == module


def _core_limit(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_serve_and_each_spawned_worker_are_hardened(tmp_path):
    plant = Plant(tmp_path)
    cfg = write_config(tmp_path / "service.toml", {
        "ledger": {"path": plant.ledger_path}, "node": {"key": plant.node_key},
        "store": {"path": tmp_path / "store"}, "decision_log": {"path": tmp_path / "decisions"},
        "auth": {"open_evaluate": True}})
    server = Server(tmp_path, cfg, args=["--workers", "2"]).wait_ready()
    try:
        pid = server.proc.pid
        children = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        workers = [p for p in children if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2  # (multiprocessing's resource tracker is a child too)
        # Read from outside: the kernel's own view of each process's core limit.
        assert [_core_limit(p) for p in [pid, *workers]] == [["0", "0"]] * 3
        # Both workers up (a SIGTERM while one starts is another test).
        wait_until(lambda: {e.get("worker") for e in server.events() if e.get("event") == "service_started"}
                   == {0, 1}, what="both workers to start")
    finally:
        assert server.stop() == 0
    lines = server.stderr_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    hardened = {e["worker"]: e for e in events if e.get("event") == "process_hardened"}
    assert sorted(hardened) == [0, 1]  # each spawned worker hardens itself: exec made it dumpable again
    assert all(e["not_dumpable"] and e["no_core_file"] for e in hardened.values())
