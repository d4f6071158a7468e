"""SCP handshake slots (issue 10 item 5): one source cannot hold more than `max_handshakes_per_source` of
them, and a handshake still running at its deadline is abandoned and its slot given back. First the
counters alone (injected clock), then over loopback TCP with an attacker bound to 127.0.0.2 and a
legitimate client on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from axon.transports.scp import Connection, connect, serve
from axon.transports.scp_errors import ScpConfigError, ScpRateLimited
from axon.transports.scp_limits import Admission
from axon.transports.scp_peers import PinnedPeer
from axon.transports.scp_protocol import ScpConfig
from tests.scp_fixtures import CLIENT, SERVER, Clock, Errors

HOST = "127.0.0.1"
ATTACKER = "127.0.0.2"  # another source address on the loopback network
pytestmark = pytest.mark.timeout(60)


# --- the counters, pure --------------------------------------------------------------------------


def test_one_source_cannot_hold_more_than_its_share_of_handshakes() -> None:
    clock = Clock()
    admission = Admission(ScpConfig(max_handshakes=10, max_handshakes_per_source=2, connect_rate=1.0,
                                    connect_burst=3), clock)
    first, second = admission.admit("mallory"), admission.admit("mallory")
    with pytest.raises(ScpRateLimited, match="2 handshakes in progress") as refused:
        admission.admit("mallory")
    assert refused.value.code == "SCP-E-RATE"
    assert (admission.handshakes, admission.handshakes_from("mallory")) == (2, 2)
    admission.admit("alice").handshake_done()  # another source is not affected
    first.handshake_done()  # an authenticated connection no longer holds a handshake slot
    assert admission.handshakes_from("mallory") == 1
    admission.admit("mallory")  # the refusal above did not spend mallory's third token
    second.release()
    assert admission.handshakes_from("mallory") == 1
    assert admission.connections == 3


def test_a_ticket_carries_its_handshake_deadline() -> None:
    clock = Clock()
    admission = Admission(ScpConfig(handshake_timeout=2.5), clock)
    early = admission.admit("a")
    clock.advance(1.0)
    late = admission.admit("a")
    assert (early.deadline, late.deadline) == (1002.5, 1003.5)


def test_per_source_limit_is_validated() -> None:
    assert ScpConfig().max_handshakes_per_source == 8
    with pytest.raises(ScpConfigError, match="max_handshakes_per_source"):
        ScpConfig(max_handshakes_per_source=0)


# --- over loopback TCP ---------------------------------------------------------------------------


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


async def hold(conn: Connection) -> None:
    async for _ in conn:  # until the client closes
        pass


async def until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.01)


async def silent_connection(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP connection from the attacker's address that never sends a byte."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ATTACKER, 0))
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    return await asyncio.open_connection(sock=sock)


async def ended_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server has closed (or aborted) this connection without sending anything."""
    try:
        return await reader.read(1 << 16) == b""
    except ConnectionError:
        return True


def close_all(writers: list[asyncio.StreamWriter]) -> None:
    for writer in writers:
        with contextlib.suppress(ConnectionError):
            writer.close()


def test_idle_connections_from_one_source_leave_slots_for_others() -> None:
    async def main():
        errors = Errors()
        config = ScpConfig(max_handshakes=4, max_handshakes_per_source=2, connect_burst=100)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors) as server:
            attack = [await silent_connection(server.port) for _ in range(6)]
            await errors.wait(4)
            assert [e.code for e in errors] == ["SCP-E-RATE"] * 4
            assert server.admission.handshakes_from(ATTACKER) == 2
            assert server.admission.handshakes == 2
            refused = [r for r, _ in attack[2:]]
            assert all([await ended_by_server(r) for r in refused])  # dropped unanswered
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            await conn.send(b"legitimate")
            await conn.wait_acknowledged()
            await conn.close()
            close_all([w for _, w in attack])

    run(main())


def test_a_handshake_past_its_deadline_is_dropped_and_its_slot_freed() -> None:
    async def main():
        errors = Errors()
        config = ScpConfig(max_handshakes=1, handshake_timeout=0.5, connect_burst=100)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors) as server:
            reader, writer = await silent_connection(server.port)
            await until(lambda: server.admission.handshakes == 1)
            assert await ended_by_server(reader)  # at the deadline, without a word from either side
            await errors.wait(1)
            assert errors[0].code == "SCP-E-HANDSHAKE-TIMEOUT"
            await until(lambda: server.admission.handshakes == 0)
            # the one slot is free again: a legitimate client gets it
            conn = await connect(HOST, server.port, CLIENT, PinnedPeer(SERVER.key.public_key))
            await conn.send(b"after the timeout")
            await conn.wait_acknowledged()
            await conn.close()
            close_all([writer])
        assert [e.code for e in errors] == ["SCP-E-HANDSHAKE-TIMEOUT"]

    run(main())


def test_the_slot_deadline_does_not_depend_on_the_protocol_timers() -> None:
    """The admission deadline is taken once, at admission: it ends the handshake even when the protocol
    core's own handshake timer never fires (here its clock is frozen)."""

    async def main():
        errors = Errors()
        clock = Clock()  # frozen: the core's handshake_timeout never passes in its own time
        config = ScpConfig(max_handshakes=1, handshake_timeout=0.5, connect_burst=100)
        async with await serve(HOST, 0, SERVER, PinnedPeer(CLIENT.key.public_key), hold, config=config,
                               on_error=errors, clock=clock) as server:
            reader, writer = await silent_connection(server.port)
            assert await ended_by_server(reader)
            await errors.wait(1)
            assert errors[0].code == "SCP-E-HANDSHAKE-TIMEOUT"
            assert "server's deadline" in str(errors[0])
            await until(lambda: server.admission.handshakes == 0)
            close_all([writer])

    run(main())
