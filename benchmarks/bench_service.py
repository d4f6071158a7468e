"""The REST service under load, beside a no-op endpoint of the same app measured in the same run.

    python benchmarks/bench_service.py            full run (about two minutes)
    python benchmarks/bench_service.py --quick    smoke run: same table, shorter rounds

A real `synapse serve` (uvicorn on loopback, 1 then 2 worker processes) with the boiler-guard policy
compiled, signed, registered on a fresh ledger and uploaded through Axon; the decision log on (hash
chain, seals, fsync every second) and the rate limiter on (with a limit far above the load). Load
comes from wrk in a separate process: one thread (it leaves the server the most CPU of a small
machine), 32 connections, one POST body per request (a Lua script).

Rows, per worker count:
  - POST /v1/evaluate   checks the request, evaluates in the wasm sandbox, appends the decision to
                        the log, answers the decision;
  - POST /v1/noop       the baseline: a FastAPI route with the same pydantic request model that
                        validates the same body and answers {"ok": true} (no evaluation, no log).
Every figure is also given as a ratio to the no-op measured in the same run with the same workers:
absolute figures move with the machine (its cores, their speed, what else runs), ratios much less,
so the header names the machine (cores, load average before and after), and the server's CPU time per
request (its worker processes', from /proc) is given beside them. A last pair of rows drives
1 worker through one connection: latency without queueing, to tell the service time from the wait
for a core that makes up p99 at 32 connections.
Rounds alternate noop/evaluate so drift on a shared machine hits both; the median round is shown.
Targets: /v1/evaluate serves at least 1.5x the no-op's requests/s with 1 worker and at least the
no-op's with 2; its p99 at most the no-op's with 2 workers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from synapse.service.auth import hash_token, new_token  # noqa: E402
from tests.service_support import AUTO, NORMAL, Plant, Server, write_config  # noqa: E402

CONNECTIONS = 32
TARGET_RATIO = {1: 1.5, 2: 1.0}  # /v1/evaluate req/s over the no-op's, per worker count
BODY = {"policy": "boiler-guard", "telemetry": NORMAL, "context": AUTO}
LUA = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %%d %%d %%d %%d %%d %%d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def cpu_seconds(root: int) -> float:
    """User + system CPU time so far of process `root` and all its descendants (the server's workers),
    from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, used = {}, {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        pid = int(entry.name)
        parent[pid], used[pid] = int(fields[1]), int(fields[11]) + int(fields[12])  # ppid, utime + stime
    tree, grew = {root}, True
    while grew:
        children = {pid for pid, ppid in parent.items() if ppid in tree} - tree
        tree |= children
        grew = bool(children)
    return sum(used.get(pid, 0) for pid in tree) / tick


def wrk(url: str, script: Path, seconds: float, connections: int = CONNECTIONS,
        server_pid: int | None = None) -> dict[str, float]:
    cpu_before = cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    requests, duration_us, p50_us, p99_us, errors, non2xx = map(int, line.split()[1:])
    cpu_us = (cpu_seconds(server_pid) - cpu_before) / max(requests, 1) * 1e6 if server_pid else 0.0
    return {"rps": requests / (duration_us / 1e6), "p50": p50_us / 1000, "p99": p99_us / 1000,
            "errors": errors + non2xx, "cpu_us": cpu_us}


def bench_config(work: Path, plant: Plant, workers: int) -> tuple[Path, str]:
    """The benchmarked service's config in `work` (the no-op route on, no rate limit, evaluation open,
    the decision log on) and its admin token."""
    token = new_token()
    config = write_config(work / "bench.toml", {
        "server": {"workers": workers, "noop_endpoint": True},
        "ledger": {"path": plant.ledger_path},
        "node": {"key": plant.node_key},
        "store": {"path": work / "store"},
        "decision_log": {"path": work / "decisions"},
        "limits": {"rate": 1e9, "burst": 1_000_000_000},
        "auth": {"open_evaluate": True},
    }, tokens=[{"name": "bench-admin", "sha256": hash_token(token), "scopes": ["admin"]}])
    return config, token


def measure(workers: int, plant: Plant, sop: bytes, seconds: float, rounds: int,
            connections: int = CONNECTIONS) -> dict[str, dict]:
    work = Path(tempfile.mkdtemp(dir=plant.dir))
    config, token = bench_config(work, plant, workers)
    server = Server(work, config).wait_ready()
    try:
        assert server.client.put("/v1/artifacts", content=sop,
                                 headers={"Authorization": f"Bearer {token}"}).status_code == 201
        time.sleep(1.5)  # the other worker loads it from the store (follow interval)
        for path in ("/v1/evaluate", "/v1/noop"):
            r = server.client.post(path, json=BODY)
            assert r.status_code == 200, r.text
        assert server.client.post("/v1/evaluate", json=BODY).json()["verdict"] == "ALLOW"
        script = work / "post.lua"
        script.write_text(LUA % json.dumps(BODY))
        wrk(server.base + "/v1/evaluate", script, 1)  # warm-up
        wrk(server.base + "/v1/noop", script, 1)
        samples: dict[str, list[dict]] = {"/v1/noop": [], "/v1/evaluate": []}
        for _ in range(rounds):
            for path in samples:
                samples[path].append(wrk(server.base + path, script, seconds, connections, server.proc.pid))
    finally:
        server.stop()
    return {path: _median(runs) for path, runs in samples.items()}


def _median(runs: list[dict]) -> dict:
    """The round with the median requests/s (its own latencies, so a row is one real measurement)."""
    ordered = sorted(runs, key=lambda r: r["rps"])
    return {**ordered[len(ordered) // 2], "rounds": [round(r["rps"]) for r in runs]}


def machine() -> str:
    return f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} (1 min)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short rounds (a smoke run)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_service: wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    seconds, rounds = (2.0, 1) if args.quick else (5.0, 3)
    before = machine()
    with tempfile.TemporaryDirectory() as tmp:
        plant = Plant(Path(tmp))
        sop, _ = plant.artifact("1.0.0")
        results = {(workers, CONNECTIONS): measure(workers, plant, sop, seconds, rounds)
                   for workers in (1, 2)}
        results[(1, 1)] = measure(1, plant, sop, seconds, rounds, connections=1)
    print(f"\nREST service under load: wrk (1 thread, on the same machine), {seconds:g} s rounds x {rounds}, "
          "median round shown")
    print(f"machine: {before} at the start, {machine()} at the end; other work on the machine shows in the "
          "absolute figures, much less in the ratios to the no-op of the same run")
    print(f"{'workers':>7}  {'conns':>5}  {'endpoint':<13} {'req/s':>7} {'x no-op':>7} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'x no-op':>7} {'CPU µs/req':>10} {'x no-op':>7} {'errors':>6}  rounds (req/s)")
    for (workers, connections), rows in results.items():
        noop = rows["/v1/noop"]
        for path, r in rows.items():
            print(f"{workers:>7}  {connections:>5}  {path:<13} {r['rps']:>7.0f} "
                  f"{r['rps'] / noop['rps']:>6.2f}x {r['p50']:>7.2f} {r['p99']:>7.2f} "
                  f"{r['p99'] / noop['p99']:>6.2f}x {r['cpu_us']:>10.0f} "
                  f"{r['cpu_us'] / noop['cpu_us']:>6.2f}x {r['errors']:>6}  {r['rounds']}")
    ok = True
    for workers, floor in TARGET_RATIO.items():
        rows = results[(workers, CONNECTIONS)]
        ev, noop = rows["/v1/evaluate"], rows["/v1/noop"]
        ratio = ev["rps"] / noop["rps"]
        ok &= ratio >= floor
        print(f"target: {workers} worker(s): /v1/evaluate {ratio:.2f}x the no-op's req/s >= {floor:g}x: "
              f"{'met' if ratio >= floor else 'NOT met'} ({ev['rps']:.0f} vs {noop['rps']:.0f} req/s)")
    one = results[(1, CONNECTIONS)]
    per_cpu = one["/v1/noop"]["cpu_us"] / one["/v1/evaluate"]["cpu_us"]
    print(f"1 worker: /v1/evaluate serves {per_cpu:.2f}x the no-op's requests per second of the server's CPU "
          "(what the req/s ratio would be on a core of its own)")
    two = results[(2, CONNECTIONS)]
    p99_ratio = two["/v1/evaluate"]["p99"] / two["/v1/noop"]["p99"]
    ok &= p99_ratio <= 1.0
    print(f"target: 2 workers: /v1/evaluate p99 {p99_ratio:.2f}x the no-op's <= 1x: "
          f"{'met' if p99_ratio <= 1.0 else 'NOT met'} ({two['/v1/evaluate']['p99']:.2f} vs "
          f"{two['/v1/noop']['p99']:.2f} ms)")
    if any(r["errors"] for rows in results.values() for r in rows.values()):
        print("warning: some requests failed (see the errors column)")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
