"""SCP server admission limits: the per-source token bucket and the counters alone (injected clock), then
over real loopback TCP: too many connections, too many handshakes, a burst from one address. A refused
connection must cost the server no key generation and get no byte back."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from axon.transports.scp import Connection, connect, serve
from axon.transports.scp_errors import ScpBusyError, ScpConfigError, ScpError, ScpIOError, ScpRateLimited
from axon.transports.scp_limits import Admission, SourceBuckets
from axon.transports.scp_peers import PinnedPeer
from axon.transports.scp_protocol import ScpConfig
from tests.scp_fixtures import CLIENT, SERVER, Clock

HOST = "127.0.0.1"
pytestmark = pytest.mark.timeout(60)


# --- the token bucket, pure ----------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    buckets = SourceBuckets(rate=2.0, burst=3, max_sources=10, clock=clock)
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]
    clock.advance(0.4)  # 0.8 tokens: not yet one
    assert not buckets.take("a")
    clock.advance(0.1)
    assert buckets.take("a")
    assert not buckets.take("a")
    clock.advance(100)  # a long pause refills to the burst, no further
    assert buckets.tokens("a") == 3
    assert [buckets.take("a") for _ in range(4)] == [True, True, True, False]


def test_bucket_sources_are_independent() -> None:
    clock = Clock()
    buckets = SourceBuckets(rate=1.0, burst=2, max_sources=10, clock=clock)
    assert buckets.take("a") and buckets.take("a")
    assert not buckets.take("a")
    assert buckets.take("b") and buckets.take("b")
    assert not buckets.take("b")


def test_bucket_refusal_takes_nothing() -> None:
    clock = Clock()
    buckets = SourceBuckets(rate=1.0, burst=1, max_sources=10, clock=clock)
    assert buckets.take("a")
    for _ in range(5):
        clock.advance(0.1)
        assert not buckets.take("a")
    clock.advance(0.5)  # 1 s since the take: refused attempts did not push the refill back
    assert buckets.take("a")


def test_bucket_drops_idle_sources_and_caps_the_table() -> None:
    clock = Clock()
    buckets = SourceBuckets(rate=1.0, burst=2, max_sources=3, clock=clock)
    for source in ("a", "b", "c"):
        assert buckets.take(source)
    assert len(buckets) == 3
    buckets.take("a")  # "a" empty and most recently seen; "b" is now the least recently seen
    assert buckets.take("d")  # table full, nobody idle: "b" is forgotten
    assert len(buckets) == 3
    assert buckets.tokens("b") == 2  # forgotten means a full bucket
    assert buckets.tokens("a") == 0  # the recently seen source stays throttled
    assert not buckets.take("a")
    clock.advance(2.0)  # everything refilled: idle buckets go when room is needed
    assert buckets.take("e")
    assert len(buckets) == 1
    for n in range(100):
        buckets.take(n)
        assert len(buckets) <= 3


def test_bucket_rejects_bad_parameters() -> None:
    for rate, burst, size in ((0.0, 1, 1), (1.0, 0, 1), (1.0, 1, 0)):
        with pytest.raises(ScpConfigError):
            SourceBuckets(rate, burst, size, Clock())


def test_config_limits_are_validated() -> None:
    defaults = ScpConfig()
    assert (defaults.max_connections, defaults.max_handshakes, defaults.connect_rate, defaults.connect_burst,
            defaults.max_rate_sources) == (256, 32, 10.0, 20, 4096)
    for field in ("max_connections", "max_handshakes", "connect_rate", "connect_burst", "max_rate_sources"):
        with pytest.raises(ScpConfigError, match=field):
            ScpConfig(**{field: 0})


# --- the counters, pure --------------------------------------------------------------------------


def test_admission_counts_connections_and_handshakes() -> None:
    clock = Clock()
    admission = Admission(ScpConfig(max_connections=3, max_handshakes=2, connect_burst=100), clock)
    first, second = admission.admit("a"), admission.admit("b")
    with pytest.raises(ScpBusyError, match="2 handshakes"):
        admission.admit("c")
    first.handshake_done()
    first.handshake_done()  # counted once
    assert (admission.connections, admission.handshakes) == (2, 1)
    third = admission.admit("c")
    third.handshake_done()
    with pytest.raises(ScpBusyError, match="3 connections") as refused:
        admission.admit("d")
    assert refused.value.code == "SCP-E-BUSY"
    second.release()
    second.release()
    assert (admission.connections, admission.handshakes) == (2, 0)
    admission.admit("d")


def test_admission_busy_does_not_spend_the_sources_token() -> None:
    clock = Clock()
    admission = Admission(ScpConfig(max_connections=2, connect_rate=1.0, connect_burst=1), clock)
    held = admission.admit("a")
    admission.admit("c")
    with pytest.raises(ScpBusyError):
        admission.admit("b")
    held.release()
    admission.admit("b").release()  # b's one token was still there
    held.release()  # nothing: already released
    assert admission.connections == 1
    with pytest.raises(ScpRateLimited) as refused:
        admission.admit("b")  # ...and is now spent (the connection limit is not what refuses it)
    assert refused.value.code == "SCP-E-RATE"


# --- over loopback TCP ---------------------------------------------------------------------------


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


class Errors(list):
    def __call__(self, exc: ScpError, peername: object) -> None:
        self.append(exc)

    @property
    def codes(self) -> list[str]:
        return [e.code for e in self]


class CountingRandom:
    """The server's randomness: each handshake it answers draws its ephemeral X25519 key here."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, n: int) -> bytes:
        self.calls += 1
        return bytes(range(n)) if n <= 256 else bytes(n)


async def hold(conn: Connection) -> None:
    async for _ in conn:  # until the client closes
        pass


async def raw_reply(port: int) -> bytes:
    """Open TCP, send nothing, return whatever the server sends before it ends the connection."""
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        return await reader.read(1 << 16)
    except ConnectionError:
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_connection_over_the_limit_is_refused_while_the_others_work() -> None:
    async def main():
        errors, rand = Errors(), CountingRandom()
        config = ScpConfig(max_connections=3)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors, randbytes=rand) as server:
            peer = PinnedPeer(SERVER.key.public_key)
            conns = [await connect(HOST, server.port, CLIENT, peer) for _ in range(3)]
            spent = rand.calls
            assert spent >= 3
            with pytest.raises(ScpIOError):  # the client only sees the TCP connection dropped
                await connect(HOST, server.port, CLIENT, peer)
            assert await raw_reply(server.port) == b""
            assert errors.codes == ["SCP-E-BUSY", "SCP-E-BUSY"]
            assert rand.calls == spent  # no key was made for the refused ones
            for conn in conns:  # the admitted ones still work
                await conn.send(b"still here")
                await conn.wait_acknowledged()
            await conns.pop().close()
            await until(lambda: server.admission.connections == 2)
            conns.append(await connect(HOST, server.port, CLIENT, peer))
            for conn in conns:
                await conn.close()
        assert errors.codes == ["SCP-E-BUSY", "SCP-E-BUSY"]

    run(main())


def test_too_many_handshakes_in_progress_are_refused() -> None:
    async def main():
        errors = Errors()
        config = ScpConfig(max_handshakes=2)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors) as server:
            # two silent clients hold both handshake slots (until handshake_timeout in real life)
            silent = [await asyncio.open_connection(HOST, server.port) for _ in range(2)]
            await until(lambda: server.admission.handshakes == 2)
            peer = PinnedPeer(SERVER.key.public_key)
            with pytest.raises(ScpIOError):  # the client only sees the TCP connection dropped
                await connect(HOST, server.port, CLIENT, peer)
            assert errors.codes == ["SCP-E-BUSY"]
            for _, writer in silent:
                writer.close()
            await until(lambda: server.admission.handshakes == 0)
            conn = await connect(HOST, server.port, CLIENT, peer)
            await conn.send(b"in")
            await conn.wait_acknowledged()
            await conn.close()
        assert errors.codes[0] == "SCP-E-BUSY"
        assert "SCP-E-BUSY" not in errors.codes[1:]  # the silent ones ended with I/O errors, nothing else

    run(main())


def test_burst_from_one_address_is_refused_until_the_bucket_refills() -> None:
    async def main():
        errors, rand, clock = Errors(), CountingRandom(), Clock()
        config = ScpConfig(connect_rate=2.0, connect_burst=3)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors, randbytes=rand, clock=clock) as server:
            peer = PinnedPeer(SERVER.key.public_key)

            async def round_trip() -> None:
                async with await connect(HOST, server.port, CLIENT, peer, clock=clock) as conn:
                    await conn.send(b"ping")
                    await conn.wait_acknowledged()

            for _ in range(3):
                await round_trip()
            spent = rand.calls
            with pytest.raises(ScpIOError):  # the client only sees the TCP connection dropped
                await round_trip()
            assert await raw_reply(server.port) == b""  # no HANDSHAKE_RESPONSE, no byte at all
            assert errors.codes == ["SCP-E-RATE", "SCP-E-RATE"]
            assert rand.calls == spent
            clock.advance(0.5)  # one token back
            await round_trip()
            with pytest.raises(ScpIOError):  # the client only sees the TCP connection dropped
                await round_trip()
            assert errors.codes == ["SCP-E-RATE"] * 3
            clock.advance(10)  # full again: a whole burst
            for _ in range(3):
                await round_trip()
            assert errors.codes == ["SCP-E-RATE"] * 3

    run(main())
