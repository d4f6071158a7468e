"""The P2P channel's receive semantics over a real loopback socket (seed 004 §3): gathering frames,
frame boundaries, the slow peer, and verified prefixes returned with integrity errors."""

from __future__ import annotations

import asyncio
import os

import pytest

from axon.transports.p2p import Channel, connect
from axon.transports.p2p_protocol import (
    HEADER_LEN,
    ChannelSession,
    P2pBrokenError,
    P2pBufferTooSmall,
    P2pClosed,
    P2pConfig,
    P2pMacError,
    P2pPeerSlow,
    P2pSizeError,
    P2pTruncated,
)

HOST = "127.0.0.1"
pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Wire:
    """A Channel (bottom half) on one end of a TCP connection; raw frames written by hand on the other."""

    async def open(self, config: P2pConfig | None = None) -> Wire:
        secret = os.urandom(96)
        accepted = asyncio.get_running_loop().create_future()
        self.server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), HOST, 0)
        _, self.raw = await asyncio.open_connection(HOST, self.server.sockets[0].getsockname()[1])
        self.channel = Channel(*await accepted, secret, "bottom", config)
        self.frames = ChannelSession(secret, "top").writer
        return self

    async def write(self, data: bytes) -> None:
        self.raw.write(data)
        await self.raw.drain()

    async def close(self) -> None:
        self.raw.close()
        await self.channel.close()
        self.server.close()


def chunk(i: int, n: int = 1000) -> bytes:
    return bytes([i]) * n


def test_one_recv_gathers_several_frames() -> None:
    async def main():
        wire = await Wire().open()
        await wire.write(b"".join(wire.frames.frame(chunk(i)) for i in range(3)))
        assert await wire.channel.recv(3000) == chunk(0) + chunk(1) + chunk(2)
        await wire.close()

    run(main())


def test_request_off_a_frame_boundary_returns_whole_frames_only() -> None:
    async def main():
        wire = await Wire().open()
        await wire.write(b"".join(wire.frames.frame(chunk(i)) for i in range(3)))
        assert await wire.channel.recv(2500) == chunk(0) + chunk(1)  # no error, third frame left unread
        assert await wire.channel.recv(1000) == chunk(2)
        await wire.close()

    run(main())


def test_first_frame_larger_than_the_request() -> None:
    async def main():
        wire = await Wire().open()
        await wire.write(wire.frames.frame(chunk(7)))
        with pytest.raises(P2pBufferTooSmall) as info:
            await wire.channel.recv(500)
        assert info.value.needed == 1000 and info.value.data == b""
        assert await wire.channel.recv(1000) == chunk(7)
        await wire.close()

    run(main())


def test_slow_peer_returns_the_verified_prefix_and_keeps_partial_frames() -> None:
    async def main():
        wire = await Wire().open()
        frames = [wire.frames.frame(chunk(i)) for i in range(3)]
        await wire.write(frames[0] + frames[1] + frames[2][:500])
        with pytest.raises(P2pPeerSlow) as info:
            await wire.channel.recv(3000, timeout=0.2)
        assert info.value.code == "P2P-E-SLOW" and info.value.data == chunk(0) + chunk(1)
        with pytest.raises(P2pPeerSlow) as info:
            await wire.channel.recv(1000, timeout=0.1)
        assert info.value.data == b""
        await wire.write(frames[2][500:])
        assert await wire.channel.recv(1000, timeout=5) == chunk(2)
        await wire.close()

    run(main())


def test_integrity_error_returns_the_verified_prefix_then_the_channel_is_dead() -> None:
    async def main():
        wire = await Wire().open()
        frames = [wire.frames.frame(chunk(i)) for i in range(3)]
        bad = bytearray(frames[2])
        bad[100] ^= 0x01
        await wire.write(frames[0] + frames[1] + bytes(bad))
        with pytest.raises(P2pMacError) as info:
            await wire.channel.recv(3000)
        assert info.value.data == chunk(0) + chunk(1)
        with pytest.raises(P2pBrokenError):
            await wire.channel.recv(1)
        await wire.close()

    run(main())


def test_peer_closing_between_and_inside_frames() -> None:
    async def main():
        wire = await Wire().open()
        await wire.write(wire.frames.frame(chunk(1)))
        wire.raw.close()
        with pytest.raises(P2pClosed) as info:
            await wire.channel.recv(2000)
        assert info.value.data == chunk(1)
        await wire.close()

        wire = await Wire().open()
        await wire.write(wire.frames.frame(chunk(1)) + wire.frames.frame(chunk(2))[:300])
        wire.raw.close()
        with pytest.raises(P2pTruncated) as info:
            await wire.channel.recv(2000)
        assert info.value.data == chunk(1)
        await wire.close()

    run(main())


def test_oversized_frame_is_refused_before_its_body_is_read() -> None:
    async def main():
        wire = await Wire().open(P2pConfig(max_frame_payload=1000))
        await wire.write(wire.frames.frame(chunk(3, 1001))[:HEADER_LEN])  # only the header is sent
        with pytest.raises(P2pSizeError):
            await wire.channel.recv(5000, timeout=5)
        await wire.close()

    run(main())


def test_recv_frame_gives_code_and_sequence() -> None:
    async def main():
        wire = await Wire().open()
        await wire.write(wire.frames.frame(b"alarm", 0xA1) + wire.frames.frame(b"ack", 0xA2))
        first, second = await wire.channel.recv_frame(), await wire.channel.recv_frame()
        assert (first.code, first.seq, first.payload) == (0xA1, 1, b"alarm")
        assert (second.code, second.seq, second.payload) == (0xA2, 2, b"ack")
        await wire.close()

    run(main())


def test_full_duplex_between_two_channels() -> None:
    async def main():
        secret = os.urandom(96)
        config = P2pConfig(frame_payload=3000)
        accepted = asyncio.get_running_loop().create_future()
        server = await asyncio.start_server(lambda r, w: accepted.set_result((r, w)), HOST, 0)
        top = await connect(HOST, server.sockets[0].getsockname()[1], secret, "top", config)
        bottom = Channel(*await accepted, secret, "bottom", config)
        down, up = os.urandom(100_000), os.urandom(70_001)
        results = await asyncio.gather(top.send(down), bottom.send(up), bottom.recv(len(down)),
                                       top.recv(len(up)))
        assert results[2:] == [down, up]
        await top.close()
        await bottom.close()
        server.close()

    run(main())
