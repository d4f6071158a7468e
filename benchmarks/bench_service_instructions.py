"""Where a request's instructions go: /v1/evaluate beside its floors, counted by callgrind.

    python benchmarks/bench_service_instructions.py            500 requests per row (about 3 minutes)
    python benchmarks/bench_service_instructions.py --quick    100 per row (rougher)

Instructions, unlike requests/s, do not move with the machine's other load, so they tell what the
target of bench_service.py (/v1/evaluate at >= 1.5x the no-op's requests/s with one worker) asks of
the code. Each server runs under valgrind's callgrind; a client outside it sends requests one at a
time on one keep-alive connection; the count is zeroed after a warm-up and dumped after N requests
(callgrind_control), and only the server's main thread is counted (the epoch ticker and the other
threads run by the clock, which callgrind slows some fifty times).

Server rows (POST, the same body, uvicorn with the settings of synapse/api/server.py: httptools,
uvloop, the connection guard):
  - a raw ASGI app that reads the body and answers {"ok": true}: uvicorn's own share of a request;
  - `synapse serve` POST /v1/noop: the FastAPI no-op, bench_service.py's baseline;
  - `synapse serve` POST /v1/evaluate: the decision, logged (hash chain, seals) as always.
In-process rows (the same service, no HTTP): the parts of /v1/evaluate, each called N times:
the guard (GuardMiddleware around an endpoint that only answers), reading the body (`Reading.parse`),
the decision (`Evaluator.evaluate`), `PolicyService.evaluate` (decision + log record + metrics + live
feed), the response (`to_dict` + orjson), and the whole ASGI call.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

BODY = json.dumps({"policy": "boiler-guard",
                   "telemetry": {"pressure_bar": 50, "temp_c": 20, "valve_open": False},
                   "context": {"mode": "AUTO"}}).encode()
HEADERS = {"Content-Type": "application/json"}
WARM_UP = 100


# ------------------------------------------------------------------------------------- callgrind helpers


def _valgrind_prefix(out_dir: Path) -> list[str]:
    return ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--dump-instr=no",
            f"--callgrind-out-file={out_dir}/cg.%p", "--vgdb=yes"]


def _control(pid: int, flag: str) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True, timeout=120)


def _main_thread_instructions(out_dir: Path, pid: int, before: set[Path]) -> int:
    """Ir of the main thread (thread 1) in the dump callgrind_control -d just wrote."""
    for _ in range(100):
        new = sorted(set(out_dir.glob(f"cg.{pid}.*-01")) - before)
        if new:
            break
        time.sleep(0.1)
    else:
        raise SystemExit(f"no callgrind dump for process {pid} in {out_dir}")
    for line in new[-1].read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"{new[-1]}: no summary line")


def counted(pid: int, out_dir: Path, run: Callable[[int], None], n: int) -> float:
    """Instructions per call of `run` (called with n) in process `pid`: zero, run, dump."""
    before = set(out_dir.glob(f"cg.{pid}.*"))
    _control(pid, "-z")
    run(n)
    _control(pid, "-d")
    return _main_thread_instructions(out_dir, pid, before) / n


# ------------------------------------------------------------------------------------------ server rows


def _post(port: int, path: str) -> Callable[[int], None]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def run(n: int) -> None:
        for _ in range(n):
            conn.request("POST", path, body=BODY, headers=HEADERS)
            response = conn.getresponse()
            payload = response.read()
            if response.status != 200:
                raise SystemExit(f"POST {path}: {response.status} {payload[:300]!r}")

    return run


def raw_asgi_server(port_file: str) -> int:
    """The raw ASGI no-op on uvicorn, configured as synapse/api/server.py configures it (run in the
    child, under valgrind)."""
    import uvicorn

    from synapse.api.connections import ConnectionLimits, guarded_protocol
    from synapse.api.server import bind
    from synapse.service.config import LimitsConfig, ServerConfig

    payload = b'{"ok":true}'

    async def app(scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            more = message.get("more_body", False)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    s, limits = ServerConfig(), LimitsConfig()
    protocol = guarded_protocol(ConnectionLimits(
        max_connections=s.max_connections, max_head_bytes=limits.max_head_bytes,
        head_timeout=s.head_timeout, body_timeout=s.body_timeout, keep_alive_timeout=s.keep_alive_timeout))
    sock = bind("127.0.0.1", 0)
    Path(port_file).write_text(str(sock.getsockname()[1]))
    server = uvicorn.Server(uvicorn.Config(
        app, http=protocol, ws="none", timeout_keep_alive=s.keep_alive_timeout, log_config=None,
        access_log=False, lifespan="off", server_header=False, limit_concurrency=None, backlog=2048))
    server.run(sockets=[sock])
    return 0


def _raw_row(n: int, work: Path) -> float:
    port_file = work / "raw.port"
    proc = subprocess.Popen([*_valgrind_prefix(work), sys.executable, str(Path(__file__).resolve()),
                             "--serve-raw", str(port_file)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        port = _wait_for(lambda: int(port_file.read_text()) if port_file.exists() and port_file.read_text()
                         else None, proc)
        _wait_answering(port, "/", proc)
        _post(port, "/")(WARM_UP)
        return counted(proc.pid, work, _post(port, "/"), n)
    finally:
        proc.terminate()
        proc.wait(timeout=120)


def _wait_for(probe: Callable[[], int | None], proc: subprocess.Popen, timeout: float = 600) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server under valgrind exited with {proc.returncode}")
        value = probe()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit("the server under valgrind did not start in time")


def _wait_answering(port: int, path: str, proc: subprocess.Popen) -> None:
    def probe() -> int | None:
        try:
            _post(port, path)(1)
            return 1
        except OSError:
            return None
    _wait_for(probe, proc)


def _service_rows(n: int, work: Path) -> dict[str, float]:
    """/v1/noop and /v1/evaluate of a real `synapse serve` (one worker) under valgrind."""
    from bench_service import bench_config

    from tests.service_support import Plant, Server

    (work / "plant").mkdir()
    plant = Plant(work / "plant")
    sop, _ = plant.artifact("1.0.0")
    config, token = bench_config(work, plant, workers=1)
    # tests.service_support.Server starts `sys.executable -m synapse serve ...`: here that executable is
    # a script that runs Python under valgrind.
    wrapper = work / "python-under-callgrind"
    wrapper.write_text("#!/bin/sh\nexec " + " ".join(_valgrind_prefix(work)) + f" {sys.executable} \"$@\"\n")
    wrapper.chmod(0o755)
    with mock.patch.object(sys, "executable", str(wrapper)):
        server = Server(work, config)
    try:
        server.wait_ready(timeout=900)
        assert server.client.put("/v1/artifacts", content=sop, timeout=600,
                                 headers={"Authorization": f"Bearer {token}"}).status_code == 201
        pid = server.proc.pid  # the wrapper execs valgrind, which runs Python in the same process
        rows = {}
        for path in ("/v1/noop", "/v1/evaluate"):
            _post(server.port, path)(WARM_UP)
            rows[path] = counted(pid, work, _post(server.port, path), n)
        return rows
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------- in-process rows


def in_process_parts(ready_fd: int, go_fd: int) -> int:
    """Run in the child under valgrind: build the service as `synapse serve` does, then for each part
    announce it on `ready_fd`, wait for the go on `go_fd` (the parent zeroes the count meanwhile), call it
    N times, announce the end and wait again (the parent dumps)."""
    import orjson

    from synapse.api.app import GuardMiddleware, create_app
    from synapse.inputs import Reading
    from tests.service_support import Plant

    work = Path(tempfile.mkdtemp(prefix="sopcos-instr-"))
    (work / "plant").mkdir()
    plant = Plant(work / "plant")
    sop, _ = plant.artifact("1.0.0")
    service = _service(plant, work)
    service.start()
    service.upload(sop)
    app = create_app(service)
    reading = Reading.parse(BODY, need_policy=True)
    served = service._registry.resolve("boiler-guard")  # noqa: SLF001 (measuring the service's parts)
    evaluator, log, feed = served.evaluator, service._open_log(), service._feed  # noqa: SLF001
    decision = service.evaluate(reading.policy, reading.telemetry, reading.context)
    logged = decision.to_dict()
    scope = {"type": "http", "method": "POST", "path": "/v1/evaluate", "raw_path": b"/v1/evaluate",
             "query_string": b"", "client": ("127.0.0.1", 5000),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(BODY)).encode())]}

    async def receive() -> dict:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(_message: dict) -> None:
        return None

    async def answer(scope: dict, receive: Callable, send: Callable) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    guard = GuardMiddleware(answer, service)
    loop = asyncio.new_event_loop()

    def asgi(target: Callable) -> Callable[[], None]:
        return lambda: loop.run_until_complete(target(dict(scope), receive, send))

    parts: list[tuple[str, Callable[[], object]]] = [
        ("empty loop of N (the driver's own share)", lambda: None),
        ("ASGI call through the event loop, an app that only answers", asgi(answer)),
        ("GuardMiddleware around that app", asgi(guard)),
        ("reading the body: Reading.parse", lambda: Reading.parse(BODY, need_policy=True)),
        ("the decision: Evaluator.evaluate", lambda: evaluator.evaluate(reading.telemetry, reading.context)),
        ("PolicyService.evaluate: decision, log record, metrics, live feed",
         lambda: service.evaluate(reading.policy, reading.telemetry, reading.context)),
        ("  of which the decision-log record: DecisionLog.append_decision",
         lambda: log.append_decision(dict(logged), reading.telemetry, reading.context, policy=served.policy,
                                     urn=served.urn, version=served.version, source="http")),
        ("  of which the Prometheus updates: Metrics.decision",
         lambda: service.metrics.decision(served.policy, logged["verdict"], decision.gas_used, 1e-5)),
        ("  of which the operator page's feed: DecisionFeed.record",
         lambda: feed.record(logged, latency_s=1e-5, source="http", now=1e9)),
        ("the response body: to_dict + orjson.dumps", lambda: orjson.dumps(decision.to_dict())),
        ("the whole /v1/evaluate ASGI call (ServiceApp)", asgi(app)),
    ]
    ready, go = os.fdopen(ready_fd, "w"), os.fdopen(go_fd)
    n = int(go.readline())
    for label, call in parts:
        ready.write(f"start {label}\n")
        ready.flush()
        go.readline()
        for _ in range(n):
            call()
        ready.write("end\n")
        ready.flush()
        go.readline()
    service.stop()
    return 0


def _service(plant: Any, work: Path) -> Any:
    from axon.keys import load_identity
    from synapse.service.config import load_config
    from synapse.service.service import PolicyService
    from tests.service_support import write_config

    config_path = write_config(work / "inproc.toml", {
        "ledger": {"path": plant.ledger_path}, "node": {"key": plant.node_key},
        "store": {"path": work / "store"}, "decision_log": {"path": work / "decisions"},
        "limits": {"rate": 1e9, "burst": 1_000_000_000}, "auth": {"open_evaluate": True},
    })
    config = load_config(config_path).validate()
    return PolicyService(config, load_identity(config.node.key), worker=0)


def _in_process_rows(n: int, work: Path) -> list[tuple[str, float]]:
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    proc = subprocess.Popen([*_valgrind_prefix(work), sys.executable, str(Path(__file__).resolve()),
                             "--in-process", str(ready_w), str(go_r)], cwd=ROOT,
                            pass_fds=(ready_w, go_r), stdout=subprocess.DEVNULL)
    os.close(ready_w)
    os.close(go_r)
    ready, go = os.fdopen(ready_r), os.fdopen(go_w, "w")
    rows = []
    try:
        go.write(f"{n}\n")
        go.flush()
        while line := ready.readline():
            label = line.removeprefix("start ").rstrip("\n")
            before = set(work.glob(f"cg.{proc.pid}.*"))
            _control(proc.pid, "-z")
            go.write("go\n")
            go.flush()
            ready.readline()  # end
            _control(proc.pid, "-d")
            rows.append((label, _main_thread_instructions(work, proc.pid, before) / n))
            go.write("next\n")
            go.flush()
    finally:
        proc.wait(timeout=600)
    return rows


# ------------------------------------------------------------------------------------------------ main


def _print_parts(parts: list[tuple[str, float]]) -> None:
    print(f"\n{'in process, no HTTP: the parts of /v1/evaluate':<68} {'instr/call':>10}")
    for label, value in parts:
        print(f"  {label:<66} {value:>10,.0f}")



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="100 requests per row")
    parser.add_argument("--parts", action="store_true", help="only the in-process parts (no servers)")
    parser.add_argument("--serve-raw", metavar="PORT_FILE", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", nargs=2, type=int, metavar="FD", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw:
        return raw_asgi_server(args.serve_raw)
    if args.in_process:
        return in_process_parts(*args.in_process)
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"bench_service_instructions: {tool} is not installed (apt-get install valgrind)",
                  file=sys.stderr)
            return 2
    n = 100 if args.quick else 500
    with tempfile.TemporaryDirectory(prefix="sopcos-instr-") as tmp:
        work = Path(tmp)
        parts = _in_process_rows(n, work)
        if not args.parts:
            raw = _raw_row(n, work)
            service = _service_rows(n, work)
    print(f"\nInstructions per request (callgrind, the server's main thread), {n} requests per row; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (instructions do not depend on it)")
    if args.parts:
        _print_parts(parts)
        return 0
    noop, evaluate = service["/v1/noop"], service["/v1/evaluate"]
    title = "server (one keep-alive connection, uvicorn + httptools + uvloop)"
    print(f"{title:<68} {'instr/req':>10} {'x no-op':>8}")
    for label, value in (("raw ASGI no-op app: uvicorn's own share", raw),
                         ("synapse serve POST /v1/noop (FastAPI, pydantic)", noop),
                         ("synapse serve POST /v1/evaluate (decision logged)", evaluate)):
        print(f"  {label:<66} {value:>10,.0f} {value / noop:>7.2f}x")
    _print_parts(parts)
    needed = noop / 1.5
    print(f"\n/v1/evaluate at 1.5x the no-op's requests/s (CPU-bound, one worker) needs at most "
          f"{needed:,.0f} instructions per request; it uses {evaluate:,.0f}; uvicorn's own share is "
          f"{raw:,.0f} ({raw / needed:.0%} of that budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
