"""SCP over real loopback TCP: connect/serve, identities (pinned and ledger), timeouts, and an active
attacker in the middle of the TCP stream (replay, reorder, truncation)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from axon.keys import Identity, SigningKey, did_for
from axon.ledger import Ledger, ops
from axon.transports.scp import Connection, connect, serve
from axon.transports.scp_errors import (
    ScpConnectionClosed,
    ScpError,
    ScpHandshakeTimeout,
    ScpIdleTimeout,
    ScpIOError,
    ScpOrderError,
    ScpPeerRejected,
    ScpRemoteClose,
    ScpReplayError,
    ScpTruncatedError,
)
from axon.transports.scp_peers import LedgerPeer, PinnedPeer
from axon.transports.scp_protocol import HEADER, HEADER_LEN, MAC_LEN, MsgType, ScpConfig
from tests.scp_fixtures import CLIENT, MALLORY, SERVER, Errors

HOST = "127.0.0.1"
pytestmark = pytest.mark.timeout(60)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(message[::-1])


def test_connect_send_receive_close() -> None:
    async def main():
        seen = []

        async def on_connection(conn: Connection) -> None:
            seen.append(conn.peer)
            await echo(conn)

        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), on_connection) as server:
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            assert conn.peer.did == SERVER.did
            await conn.send(b"hello, secure world")
            assert await conn.receive() == b"dlrow eruces ,olleh"
            await conn.wait_acknowledged()
            await conn.close()
            assert conn.closed
            with pytest.raises(ScpConnectionClosed):
                await conn.receive()
            with pytest.raises(ScpConnectionClosed):
                await conn.send(b"late")
        assert [p.did for p in seen] == [CLIENT.did]

    run(main())


def test_many_clients_each_get_their_own_callback() -> None:
    async def main():
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), echo) as server:
            async def one(i: int) -> bytes:
                conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
                async with conn:
                    await conn.send(f"client {i}".encode())
                    return await conn.receive()

            replies = await asyncio.gather(*(one(i) for i in range(8)))
        assert replies == [f"client {i}".encode()[::-1] for i in range(8)]

    run(main())


def test_large_messages_and_rekeys_over_tcp() -> None:
    config = ScpConfig(rekey_after_bytes=50_000, max_unacked=4)
    message = bytes(range(256)) * 4096  # 1 MiB, 17 frames, ~20 key updates each way

    async def main():
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), echo,
                               config=config) as server:
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key), config=config)
            async with conn:
                for _ in range(3):
                    await conn.send(message)
                    assert await conn.receive() == message[::-1]
                epoch = conn._proto._out.epoch
                assert epoch.bytes < 50_000 + config.max_frame_payload

    run(main())


def test_async_iteration_ends_when_the_peer_closes() -> None:
    async def main():
        async def talk_then_close(conn: Connection) -> None:
            for i in range(3):
                await conn.send(b"m%d" % i)

        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), talk_then_close) as server:
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            assert [m async for m in conn] == [b"m0", b"m1", b"m2"]
            await conn.close()

    run(main())


def test_close_is_prompt_even_when_the_application_stopped_reading() -> None:
    async def main():
        config = ScpConfig(max_queued_messages=1, close_timeout=20)

        async def chatter(conn: Connection) -> None:
            for i in range(5):
                await conn.send(b"status %d" % i)
            await conn.receive()

        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), chatter,
                               config=config) as server:
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key), config=config)
            while conn._proto.unacked or len(conn._inbox) < 1:
                await asyncio.sleep(0.01)
            await conn.close()
            # The ACK of CLOSE was read: close_timeout was not waited out (that ends it differently).
            assert isinstance(conn._end, ScpConnectionClosed) and str(conn._end) == "the connection is closed"

    run(main())


# --- identities ----------------------------------------------------------------------------------


def test_client_refuses_a_server_it_has_not_pinned() -> None:
    async def main():
        errors = Errors()
        async with await serve(HOST, 0, MALLORY, PinnedPeer(CLIENT.key.public_key), echo,
                               on_error=errors) as server:
            with pytest.raises(ScpPeerRejected):
                await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            await errors.wait()
        assert isinstance(errors[0], ScpRemoteClose) and errors[0].remote_code == "SCP-E-PEER"

    run(main())


@pytest.fixture
def ledger(tmp_path):
    root = Identity(SigningKey.generate(), "did:sopcos:plant-root#key-1")
    with Ledger.init(tmp_path / "ledger.db", root, now=1_700_000_000) as ledger:
        for who, level, now in ((SERVER, "LVL_4", 1_700_000_001), (CLIENT, "LVL_2", 1_700_000_002)):
            ledger.sign_and_submit(root, ops.register_key(who.did, who.key.public_key, level), now)
        revoked = Identity(SigningKey.generate(), "did:sopcos:old-gateway#key-1")
        ledger.sign_and_submit(root, ops.register_key(revoked.did, revoked.key.public_key, "LVL_2"),
                               1_700_000_003)
        ledger.sign_and_submit(root, ops.revoke_key(revoked.did), 1_700_000_004)
        ledger.revoked_identity = revoked
        yield ledger


def _ledger_handshake(ledger, client: Identity, min_level: int = 1):
    """Connect `client` to a server that checks clients on the ledger; returns (server errors, result)."""
    async def main():
        errors = Errors()
        peers = []

        async def on_connection(conn: Connection) -> None:
            peers.append(conn.peer)
            await echo(conn)

        async with await serve(HOST, 0, SERVER, LedgerPeer(ledger, min_level=min_level), on_connection,
                               on_error=errors) as server:
            conn = await connect(HOST, server.port, client, LedgerPeer(ledger))
            assert conn.peer.authority_level == 4
            try:
                await conn.send(b"ping")
                return errors, peers, await conn.receive()
            except ScpError as exc:
                await errors.wait()
                return errors, peers, exc
            finally:
                await conn.close()

    return run(main())


def test_ledger_registered_client_is_accepted_with_its_level(ledger) -> None:
    errors, peers, reply = _ledger_handshake(ledger, CLIENT)
    assert reply == b"gnip" and errors == []
    assert peers[0].did == CLIENT.did and peers[0].authority_level == 2


@pytest.mark.parametrize("who", ["unregistered", "revoked", "wrong-key", "low-level"])
def test_ledger_rejections(ledger, who: str) -> None:
    min_level = 1
    if who == "unregistered":
        client = Identity(SigningKey.generate(), "did:sopcos:stranger#key-1")
    elif who == "revoked":
        client = ledger.revoked_identity
    elif who == "wrong-key":  # a registered DID presented with someone else's key
        client = Identity(MALLORY.key, CLIENT.did)
    else:
        client, min_level = CLIENT, 3
    errors, peers, result = _ledger_handshake(ledger, client, min_level)
    assert peers == []
    assert isinstance(result, ScpRemoteClose) and result.remote_code == "SCP-E-PEER"
    assert isinstance(errors[0], ScpPeerRejected)


def test_ledger_peer_needs_nothing_but_key_lookup() -> None:
    """LedgerPeer only calls `key(did)`; a ledger that fails reading admits nobody."""
    from axon.errors import AxonError

    class Unreadable:
        def key(self, did):
            raise AxonError("database is locked", code="LEDGER-E-IO")

    with pytest.raises(ScpPeerRejected, match="LEDGER-E-IO"):
        LedgerPeer(Unreadable())(CLIENT.did, CLIENT.key.public_key)
    assert did_for(CLIENT.key.public_key, "scp-client") == CLIENT.did


# --- timeouts ------------------------------------------------------------------------------------


def test_idle_connection_is_closed_with_a_code() -> None:
    async def main():
        outcome = asyncio.get_running_loop().create_future()

        async def wait_forever(conn: Connection) -> None:
            try:
                await conn.receive()
            except ScpError as exc:
                outcome.set_result(exc)

        fast = ScpConfig(idle_timeout=0.3)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), wait_forever,
                               config=fast) as server:
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key),
                                 config=ScpConfig(idle_timeout=20))
            with pytest.raises(ScpRemoteClose) as info:
                await conn.receive()
            assert info.value.remote_code == "SCP-E-IDLE"
            assert isinstance(await outcome, ScpIdleTimeout)
            await conn.close()

    run(main())


def test_silent_client_hits_the_handshake_timeout() -> None:
    async def main():
        errors = Errors()
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), echo,
                               config=ScpConfig(handshake_timeout=0.3), on_error=errors) as server:
            _, writer = await asyncio.open_connection(HOST, server.port)
            await errors.wait()
            writer.close()
        assert isinstance(errors[0], ScpHandshakeTimeout)

    run(main())


def test_silent_server_hits_the_handshake_timeout() -> None:
    async def main():
        accepted = []
        mute = await asyncio.start_server(lambda r, w: accepted.append(w), HOST, 0)
        port = mute.sockets[0].getsockname()[1]
        with pytest.raises(ScpHandshakeTimeout):
            await connect(HOST, port, CLIENT, PinnedPeer(SERVER.key.public_key),
                          config=ScpConfig(handshake_timeout=0.3))
        for writer in accepted:
            writer.close()
        mute.close()
        await mute.wait_closed()

    run(main())


def test_connection_refused_is_an_io_error() -> None:
    async def main():
        probe = await asyncio.start_server(lambda r, w: None, HOST, 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        with pytest.raises(ScpIOError):
            await connect(HOST, port, CLIENT, PinnedPeer(SERVER.key.public_key))

    run(main())


# --- an attacker on the TCP stream ---------------------------------------------------------------


async def tampering_proxy(target_port: int, rewrite: Callable[[list[bytes]], list[bytes] | None]):
    """Forward client→server frames through `rewrite`: called with all frames so far, it returns the
    frames to have sent so far (each answer extending the previous one); a last item shorter than a
    frame can be is sent and the connection cut there. Server→client bytes pass unchanged."""
    async def handle(c_reader, c_writer):
        s_reader, s_writer = await asyncio.open_connection(HOST, target_port)

        async def downstream():
            while data := await s_reader.read(65536):
                c_writer.write(data)

        task = asyncio.create_task(downstream())
        buf, frames, sent = b"", [], 0
        try:
            while data := await c_reader.read(65536):
                buf += data
                while len(buf) >= HEADER_LEN and len(buf) >= (end := HEADER_LEN + HEADER.unpack_from(buf)[3]
                                                               + MAC_LEN):
                    frames.append(buf[:end])
                    buf = buf[end:]
                out = rewrite(frames)
                s_writer.write(b"".join(out[sent:]))
                sent = len(out)
                if out and len(out[-1]) < HEADER_LEN + MAC_LEN:  # a cut-off frame: end the stream here
                    await s_writer.drain()
                    break
        finally:
            s_writer.close()
            with contextlib.suppress(Exception):
                await task
            c_writer.close()
            with contextlib.suppress(Exception):
                await asyncio.gather(s_writer.wait_closed(), c_writer.wait_closed())

    return await asyncio.start_server(handle, HOST, 0)


def _attack(rewrite) -> tuple[ScpError, list[ScpError]]:
    async def main():
        errors = Errors()
        received = []

        async def collect(conn: Connection) -> None:
            async for message in conn:
                received.append(message)

        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), collect,
                               on_error=errors) as server:
            proxy = await tampering_proxy(server.port, rewrite)
            conn = await connect(HOST, proxy.sockets[0].getsockname()[1], CLIENT,
                                 PinnedPeer(SERVER.key.public_key))
            for i in range(3):
                await conn.send(b"setpoint %d" % i)
            with pytest.raises(ScpError) as info:
                await conn.receive()
            await errors.wait()
            await conn.close()
            proxy.close()
            await proxy.wait_closed()
        return info.value, errors, received

    return run(main())


def _data_frames(frames: list[bytes]) -> list[int]:
    return [i for i, f in enumerate(frames) if f[1] == MsgType.DATA]


def test_replayed_frame_on_the_wire() -> None:
    def replay_first_data(frames):
        data = _data_frames(frames)
        if len(data) < 3:
            return frames
        return frames[: data[2] + 1] + [frames[data[0]]] + frames[data[2] + 1:]

    client_error, server_errors, received = _attack(replay_first_data)
    assert received == [b"setpoint 0", b"setpoint 1", b"setpoint 2"]
    assert isinstance(server_errors[0], ScpReplayError)
    assert isinstance(client_error, ScpRemoteClose) and client_error.remote_code == "SCP-E-REPLAY"


def test_reordered_frames_on_the_wire() -> None:
    def swap(frames):
        data = _data_frames(frames)
        if len(data) < 3:
            return frames[: data[1]] if len(data) == 2 else frames
        out = list(frames)
        out[data[1]], out[data[2]] = out[data[2]], out[data[1]]
        return out

    client_error, server_errors, received = _attack(swap)
    assert received == [b"setpoint 0"]
    assert isinstance(server_errors[0], ScpOrderError)
    assert client_error.remote_code == "SCP-E-ORDER"


def test_truncated_stream_on_the_wire() -> None:
    def cut(frames):
        data = _data_frames(frames)
        return frames[: data[1]] + [frames[data[1]][:20]] if len(data) >= 2 else frames

    client_error, server_errors, received = _attack(cut)
    assert received == [b"setpoint 0"]
    assert isinstance(server_errors[0], ScpTruncatedError)
    assert isinstance(client_error, ScpError)
