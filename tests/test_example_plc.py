"""`bash examples/plc/run.sh` as a newcomer runs it (docs/plc.md): the simulated boiler climbs under the
sidecar's permissive, the sidecar trips it at 95 bar (HALT, permissive off, on Modbus and OPC UA), and
Ctrl-C leaves nothing running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.waiting import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"pressure\s+([\d.]+) bar\s+verdict (\w+)\s+\(OPC UA: (\w+)\)\s+permissive (on|off)")


def test_the_plc_example_trips_the_boiler_and_stops_cleanly():
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.Popen(["bash", str(REPO / "examples/plc/run.sh")], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()

    def states() -> list[tuple[float, str, str, str]]:
        return [(float(m[1]), m[2], m[3], m[4]) for line in list(lines) if (m := LINE.search(line))]

    try:
        # At 2 bar/s from 50 bar the trip point is about 25 s away.
        wait_until(lambda: any(v == "HALT" for _, v, _, _ in states()) or proc.poll() is not None,
                   timeout=120)
        assert proc.poll() is None, "".join(lines)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        finally:
            with_group_left = _group_alive(proc.pid)
            if with_group_left:
                os.killpg(proc.pid, signal.SIGKILL)
    reader.join(10)
    out = "".join(lines)
    # `synapse tags check` ran first and read every tag (run.sh stops if it cannot)
    assert re.search(r"^drum_pressure\s+plc\s+holding 0\b.*\bgood\b", out, re.M), out
    assert "unreadable" not in out, out
    seen = states()
    firing = [s for s in seen if s[1] in ("ALLOW", "WARN") and s[3] == "on"]
    tripped = [s for s in seen if s[1] == "HALT"]
    assert firing and tripped, out
    assert all(p >= 95 for p, _, _, _ in tripped[:1]), out  # the policy's trip point, not earlier
    assert any(ua == "HALT" and permissive == "off" for _, _, ua, permissive in tripped), out
    assert not with_group_left, "the example left processes running after Ctrl-C"


def _group_alive(pgid: int) -> bool:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True
