"""Two independent processes speak seed 004's framed channel over a real TCP socket, in both roles and
both directions (the peer is tests/axon/p2p_peer.py, started with this interpreter)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sys
from pathlib import Path

import pytest

from axon.transports.p2p import Channel, connect
from axon.transports.p2p_protocol import P2pConfig

PEER = Path(__file__).with_name("p2p_peer.py")
HOST = "127.0.0.1"
pytestmark = [pytest.mark.timeout(120), pytest.mark.slow]


def pattern(n: int, label: str) -> bytes:
    return hashlib.shake_256(label.encode()).digest(n)


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    pipe = asyncio.subprocess.PIPE
    return await asyncio.create_subprocess_exec(sys.executable, str(PEER), *args, stdout=pipe, stderr=pipe)


async def _channel_with_peer(peer_listens: bool, secret: bytes, peer_half: str, my_half: str,
                             peer_args: list[str], config: P2pConfig,
                             peer_secret: bytes | None = None) -> tuple[Channel, object, object]:
    common = ["--secret", (peer_secret or secret).hex(), "--half", peer_half, *peer_args]
    if peer_listens:
        proc = await _spawn("--listen", *common)
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"PORT "), line
        return await connect(HOST, int(line.split()[1]), secret, my_half, config), proc, None
    accepted = asyncio.get_running_loop().create_future()
    server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), HOST, 0)
    proc = await _spawn("--connect", str(server.sockets[0].getsockname()[1]), *common)
    reader, writer = await asyncio.wait_for(accepted, 30)
    return Channel(reader, writer, secret, my_half, config), proc, server


@pytest.mark.parametrize("peer_listens", [True, False], ids=["peer-listens", "peer-connects"])
@pytest.mark.parametrize("peer_half", ["top", "bottom"])
def test_two_processes_exchange_multi_frame_payloads(peer_listens: bool, peer_half: str) -> None:
    my_half = "bottom" if peer_half == "top" else "top"
    to_peer, from_peer = pattern(300_001, "to-peer"), pattern(200_000, "from-peer")

    async def main():
        channel, proc, server = await _channel_with_peer(
            peer_listens, os.urandom(96), peer_half, my_half,
            ["--expect", str(len(to_peer)), "--reply", str(len(from_peer)), "--frame-payload", "4096"],
            P2pConfig(frame_payload=7000))
        await channel.send(to_peer)  # 43 frames of ours
        digest = await channel.recv_frame(timeout=30)
        assert (digest.code, digest.payload) == (1, hashlib.sha256(to_peer).digest())
        assert await channel.recv(len(from_peer), timeout=30) == from_peer  # 49 frames of theirs
        assert channel._session.reader.expected_seq == 2 + -(-len(from_peer) // 4096)
        await channel.close()
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        if server is not None:
            server.close()
        assert proc.returncode == 0, err.decode()
        assert out.strip().endswith(b"OK")

    asyncio.run(main())


def test_peer_with_another_secret_fails_on_both_sides() -> None:
    async def main():
        channel, proc, _ = await _channel_with_peer(True, os.urandom(96), "top", "bottom",
                                                    ["--expect", "10", "--reply", "10"], P2pConfig(),
                                                    peer_secret=os.urandom(96))
        await channel.send(b"0123456789")
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 1 and err.startswith(b"P2P-E-CHECKSUM"), err
        await channel.close()

    asyncio.run(main())
