"""Process hardening for decrypted modules: no core dumps, not dumpable, the plaintext buffer locked
and wiped (synapse/hardening.py; docs/artifacts.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synapse.hardening import LockedBuffer, dumpable
from tests.service_support import Plant, Server, write_config

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


def test_the_test_process_itself_is_left_dumpable():
    assert dumpable() in (1, None)


def test_a_locked_buffer_is_written_in_place_and_wiped():
    with LockedBuffer(4096 * 3 + 5) as buf:
        buf.data[:6] = b"secret"
        buf.data[-4:] = b"tail"
        view = memoryview(buf.data)
        # mlock succeeds within RLIMIT_MEMLOCK (or with CAP_IPC_LOCK); the test machine allows 12 KiB.
        assert buf.locked
        with pytest.raises(BufferError):  # it cannot be resized (moved away from the locked pages)
            buf.data.extend(b"x")
    assert not buf.locked and bytes(view) == bytes(len(view))
    view.release()


def test_a_buffer_the_os_will_not_lock_is_still_wiped(monkeypatch):
    import synapse.hardening as hardening

    class NoMlock:
        def mlock(self, *_args):
            return -1

        def munlock(self, *_args):
            raise AssertionError("an unlocked buffer is not unlocked")

    monkeypatch.setattr(hardening, "_LIBC", NoMlock())
    buf = LockedBuffer(64)
    buf.data[:] = b"k" * 64
    assert not buf.locked
    buf.wipe()
    assert buf.data == bytes(64)


def _core_limit(pid: int) -> list[str]:
    for line in Path(f"/proc/{pid}/limits").read_text(encoding="ascii").splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core limit line")


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
        deadline = time.monotonic() + 60  # both workers up (a SIGTERM while one starts is another test)
        while {e.get("worker") for e in server.events() if e.get("event") == "service_started"} != {0, 1}:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.1)
    finally:
        assert server.stop() == 0
    lines = server.stderr_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    hardened = {e["worker"]: e for e in events if e.get("event") == "process_hardened"}
    assert sorted(hardened) == [0, 1]  # each spawned worker hardens itself: exec made it dumpable again
    assert all(e["not_dumpable"] and e["no_core_file"] for e in hardened.values())
