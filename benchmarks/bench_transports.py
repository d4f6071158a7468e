"""SCP and framed-P2P figures against seed 002's requirements, beside baselines measured in the same run.

    python benchmarks/bench_transports.py          full run (about a minute)
    python benchmarks/bench_transports.py --quick  smoke run: same table, fewer samples

Rows:
  - SCP key exchange: the whole three-message handshake (X25519 both ways, HKDF, two secp256k1
    signatures and their checks, both ends' CPU) in memory through the sans-IO machine, and a real
    loopback `connect()` until both ends are established. Seed 002: key exchange < 10 ms.
  - Encryption per KB: one 1 KiB message sealed into a DATA frame (AES-256-GCM + HMAC-SHA-256), and
    per KB of a 64 KiB message; the P2P channel's AES-CTR + running SHA-256 framing beside them; and
    the bare AES-256-GCM of 1 KiB as a baseline. Seed 002: encryption < 1 ms per KB.
  - Memory per connection: N established loopback SCP connections held open, both ends in this
    process; tracemalloc (Python heap) and RSS growth (also counts OpenSSL and socket buffers) divided
    by 2N endpoints. Seed 002: < 1 MB per connection.
  - Loopback throughput: 64 KiB messages through SCP and the P2P channel, beside raw asyncio TCP with
    no crypto, all with both ends on one event loop (one core), so the figures compare fairly.
Each figure is the median of several rounds (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _table import print_table, seconds_per_call  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402

from axon.keys import Identity, SigningKey, did_for  # noqa: E402
from axon.transports import p2p, scp  # noqa: E402
from axon.transports.p2p_protocol import ChannelSession, P2pConfig  # noqa: E402
from axon.transports.scp_peers import PinnedPeer  # noqa: E402
from axon.transports.scp_protocol import Role, ScpProtocol  # noqa: E402

HOST = "127.0.0.1"
CHUNK = 64 * 1024


@dataclass(frozen=True)
class Sizes:
    handshakes: int
    tcp_handshakes: int
    seals: int
    connections: int
    megabytes: int
    rounds: int


FULL = Sizes(handshakes=300, tcp_handshakes=60, seals=20_000, connections=200, megabytes=256, rounds=5)
QUICK = Sizes(handshakes=30, tcp_handshakes=10, seals=1_000, connections=20, megabytes=16, rounds=2)


def identity(name: str) -> Identity:
    key = SigningKey.generate()
    return Identity(key, did_for(key.public_key, name))


CLIENT, SERVER = identity("bench-client"), identity("bench-server")
TO_SERVER, TO_CLIENT = PinnedPeer(CLIENT.key.public_key), PinnedPeer(SERVER.key.public_key)


def median_of(rounds: int, fn: Callable[[], float]) -> float:
    return statistics.median(fn() for _ in range(rounds))


# --- handshake -----------------------------------------------------------------------------------


def pair() -> tuple[ScpProtocol, ScpProtocol]:
    return (ScpProtocol(Role.CLIENT, CLIENT, TO_CLIENT), ScpProtocol(Role.SERVER, SERVER, TO_SERVER))


def pump(src: ScpProtocol, dst: ScpProtocol) -> None:
    dst.receive_data(src.data_to_send())
    while dst.next_event() is not None:
        pass


def handshake_in_memory() -> tuple[ScpProtocol, ScpProtocol]:
    client, server = pair()
    client.initiate()
    pump(client, server)
    pump(server, client)
    pump(client, server)
    return client, server


async def tcp_handshake_ms(n: int) -> float:
    async def on_connection(conn: scp.Connection) -> None:
        await conn.receive()

    server = await scp.serve(HOST, 0, SERVER, TO_SERVER, on_connection)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn = await scp.connect(HOST, server.port, CLIENT, TO_CLIENT)
        times.append(time.perf_counter() - start)
        await conn.close()
    await server.close()
    return statistics.median(times) * 1e3


# --- encryption ----------------------------------------------------------------------------------


def scp_seal_us_per_kb(size: int, n: int) -> float:
    client, _ = handshake_in_memory()
    message = os.urandom(size)

    def seal() -> None:
        client.send_message(message)
        client.data_to_send()
        client._outstanding.clear()  # nobody acknowledges in this loop; keep the window empty

    return seconds_per_call(seal, n) * 1e6 / (size / 1024)


def scp_open_us_per_kb(size: int, n: int) -> float:
    client, server = handshake_in_memory()
    message = os.urandom(size)
    frames = []
    for _ in range(n):
        client.send_message(message)
        frames.append(client.data_to_send())
    it = iter(frames)

    def open_one() -> None:
        server.receive_data(next(it))
        server.next_event()
        server.data_to_send()
        server._outstanding.clear()

    return seconds_per_call(open_one, n) * 1e6 / (size / 1024)


def p2p_seal_us_per_kb(size: int, n: int) -> float:
    writer = ChannelSession(os.urandom(96), "top").writer
    message = os.urandom(size)
    return seconds_per_call(lambda: writer.frame(message), n) * 1e6 / (size / 1024)


def bare_gcm_us_per_kb(n: int) -> float:
    aead, nonce, message = AESGCM(os.urandom(32)), os.urandom(12), os.urandom(1024)
    return seconds_per_call(lambda: aead.encrypt(nonce, message, b"header"), n) * 1e6


# --- memory --------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_per_endpoint(n: int) -> tuple[float, float]:
    """(tracemalloc bytes, RSS bytes) per established endpoint, after one message each way."""
    held: list[scp.Connection] = []
    release = asyncio.Event()

    async def on_connection(conn: scp.Connection) -> None:
        held.append(conn)
        await conn.send(await conn.receive())
        await release.wait()

    server = await scp.serve(HOST, 0, SERVER, TO_SERVER, on_connection)
    warm = await scp.connect(HOST, server.port, CLIENT, TO_CLIENT)  # imports, caches, first buffers
    await warm.send(b"x" * 1024)
    await warm.receive()
    gc.collect()
    tracemalloc.start()
    base_traced, base_rss = tracemalloc.get_traced_memory()[0], rss_bytes()
    clients = []
    for _ in range(n):
        conn = await scp.connect(HOST, server.port, CLIENT, TO_CLIENT)
        await conn.send(b"x" * 1024)
        await conn.receive()
        clients.append(conn)
    gc.collect()
    traced, rss = tracemalloc.get_traced_memory()[0] - base_traced, rss_bytes() - base_rss
    tracemalloc.stop()
    release.set()
    for conn in [warm, *clients]:
        await conn.close()
    await server.close()
    return traced / (2 * n), rss / (2 * n)


# --- throughput ----------------------------------------------------------------------------------


async def raw_tcp_mbps(total: int) -> float:
    done = asyncio.get_running_loop().create_future()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = 0
        while got < total:
            got += len(await reader.read(1 << 20))
        done.set_result(time.perf_counter())
        writer.close()

    server = await asyncio.start_server(sink, HOST, 0)
    _, writer = await asyncio.open_connection(HOST, server.sockets[0].getsockname()[1])
    chunk = os.urandom(CHUNK)
    start = time.perf_counter()
    for _ in range(total // CHUNK):
        writer.write(chunk)
        await writer.drain()
    end = await done
    writer.close()
    server.close()
    return total / (end - start) / 1e6


async def scp_mbps(total: int) -> float:
    done = asyncio.get_running_loop().create_future()
    message = os.urandom(CHUNK - 64)  # one frame per message

    async def sink(conn: scp.Connection) -> None:
        got = 0
        while got < total // CHUNK:
            await conn.receive()
            got += 1
        done.set_result(time.perf_counter())

    server = await scp.serve(HOST, 0, SERVER, TO_SERVER, sink)
    conn = await scp.connect(HOST, server.port, CLIENT, TO_CLIENT)
    start = time.perf_counter()
    for _ in range(total // CHUNK):
        await conn.send(message)
    end = await done
    await conn.close()
    await server.close()
    return (total // CHUNK) * len(message) / (end - start) / 1e6


async def p2p_mbps(total: int) -> float:
    secret = os.urandom(96)
    accepted = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), HOST, 0)
    config = P2pConfig(frame_payload=CHUNK)
    sender = await p2p.connect(HOST, server.sockets[0].getsockname()[1], secret, "top", config)
    receiver = p2p.Channel(*await accepted, secret, "bottom", config)
    chunk = os.urandom(CHUNK)

    async def send_all() -> None:
        for _ in range(total // CHUNK):
            await sender.send(chunk)

    start = time.perf_counter()
    task = asyncio.create_task(send_all())
    got = 0
    while got < total:
        got += len(await receiver.recv(CHUNK * 16))
    end = time.perf_counter()
    await task
    await sender.close()
    await receiver.close()
    server.close()
    return total / (end - start) / 1e6


# --- report --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples; same table")
    sizes = QUICK if parser.parse_args().quick else FULL
    random.seed(0)
    r = sizes.rounds
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: float, unit: str, target: float | None = None) -> None:
        verdict = "" if target is None else ("meets" if value < target else "MISSES")
        limit = "" if target is None else f"< {target:g} {unit}"
        rows.append((name, f"{value:,.3f} {unit}", limit, verdict))

    row("SCP handshake, in memory, both ends", median_of(r, lambda: seconds_per_call(handshake_in_memory,
                                                                          sizes.handshakes)) * 1e3, "ms", 10)
    row("SCP connect() over loopback TCP", median_of(r, lambda: asyncio.run(
        tcp_handshake_ms(sizes.tcp_handshakes))), "ms", 10)
    row("SCP seal, 1 KiB message", median_of(r, lambda: scp_seal_us_per_kb(1024, sizes.seals)), "us/KB", 1000)
    row("SCP open, 1 KiB message", median_of(r, lambda: scp_open_us_per_kb(1024, sizes.seals)), "us/KB", 1000)
    row("SCP seal, 64 KiB message", median_of(r, lambda: scp_seal_us_per_kb(CHUNK - 64, sizes.seals // 20)),
        "us/KB", 1000)
    row("P2P frame, 1 KiB", median_of(r, lambda: p2p_seal_us_per_kb(1024, sizes.seals)), "us/KB")
    row("baseline: bare AES-256-GCM, 1 KiB", median_of(r, lambda: bare_gcm_us_per_kb(sizes.seals)), "us/KB")
    traced, rss = asyncio.run(memory_per_endpoint(sizes.connections))
    row(f"SCP memory per endpoint, tracemalloc ({sizes.connections} conns)", traced / 1e6, "MB", 1)
    row(f"SCP memory per endpoint, RSS growth ({sizes.connections} conns)", rss / 1e6, "MB", 1)
    total = sizes.megabytes << 20
    row(f"baseline: raw asyncio TCP, {sizes.megabytes} MiB", median_of(r, lambda: asyncio.run(
        raw_tcp_mbps(total))), "MB/s")
    row(f"SCP loopback throughput, {sizes.megabytes} MiB", median_of(r, lambda: asyncio.run(
        scp_mbps(total))), "MB/s")
    row(f"P2P loopback throughput, {sizes.megabytes} MiB", median_of(r, lambda: asyncio.run(
        p2p_mbps(total))), "MB/s")

    print_table(("figure", "measured", "seed 002", "verdict"), rows, right={1})
    print(f"(median of {r} rounds; python {sys.version.split()[0]}; {os.cpu_count()} CPUs, shared)")
    return 1 if any(v == "MISSES" for *_, v in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
