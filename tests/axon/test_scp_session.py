"""SCP under a SIP-017 KEY_EXCHANGE session (§5.3): the session key as a pre-shared key in the handshake.

Pure protocol first (derivation recomputed independently, single use, expiry, DIDs, wrong key, server
settings), then end to end: node A offers a session to node B over the embedded ledger, B accepts, and
A connects to B's SCP server on loopback naming it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import random

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from axon.messaging import key_exchange as kx
from axon.messaging.signed import LedgerKeys
from axon.transports.scp import Connection, connect, serve
from axon.transports.scp_errors import (
    ScpConfigError,
    ScpError,
    ScpHandshakeError,
    ScpIOError,
    ScpRemoteClose,
    ScpSessionError,
)
from axon.transports.scp_peers import LedgerPeer, PinnedPeer
from axon.transports.scp_protocol import (
    HEADER_LEN,
    INIT_CHECKSUM_KEY,
    MAC_LEN,
    HandshakeComplete,
    MessageReceived,
    MsgType,
    PeerClosed,
    Role,
    ScpProtocol,
    State,
    encode_frame,
)
from synapse.sidecar.plant_commands import LedgerPlantCommandInbox, PlantCommandProcessor
from tests.messaging_fixtures import T0, plant
from tests.scp_fixtures import CLIENT, MALLORY, SERVER, Clock, Errors, deliver, pump

HOST = "127.0.0.1"
E_C_PRIVATE = bytes(range(1, 33))
E_S_PRIVATE = bytes(range(101, 133))


def agree(initiator: str = CLIENT.did, responder: str = SERVER.did, seed: int = 1,
          ttl_s: int = 120) -> kx.KeyExchangeSession:
    """A session agreed through key_exchange itself (offer → accept → complete), as both ends hold it."""
    r = random.Random(seed)
    pending = kx.offer(responder, T0, ttl_s, randbytes=r.randbytes)
    answer, theirs = kx.accept(pending.offer.to_body(), initiator, responder, T0, randbytes=r.randbytes)
    ours = kx.complete(pending, answer.to_body(), responder, initiator, T0)
    assert ours == theirs
    return ours


def stored(*sessions: kx.KeyExchangeSession) -> kx.Sessions:
    store = kx.Sessions()
    for session in sessions:
        store.add(session, T0)
    return store


def pair(session: kx.KeyExchangeSession | None, lookup=None, *, require_session: bool = False,
         client=CLIENT, server=SERVER) -> tuple[ScpProtocol, ScpProtocol]:
    clock = Clock()
    c = ScpProtocol(Role.CLIENT, client, PinnedPeer([SERVER.key.public_key, MALLORY.key.public_key]),
                    clock=clock, randbytes=lambda n: E_C_PRIVATE[:n], session=session)
    s = ScpProtocol(Role.SERVER, server, PinnedPeer([CLIENT.key.public_key, MALLORY.key.public_key]),
                    clock=clock, randbytes=lambda n: E_S_PRIVATE[:n], session_lookup=lookup,
                    require_session=require_session)
    return c, s


def lookup_at(store: kx.Sessions, now: float = T0):
    return store.lookup(lambda: now)


# --- the pure protocol ---------------------------------------------------------------------------


def test_session_handshake_completes_and_names_the_session() -> None:
    session = agree()
    store = stored(session)
    client, server = pair(session, lookup_at(store))
    client.initiate()
    init = client.data_to_send()
    assert init[HEADER_LEN:-MAC_LEN] == e_c_public() + bytes([16]) + session.session_id
    assert deliver(init, server) == []
    (done,) = pump(server, client)
    assert isinstance(done, HandshakeComplete) and done.peer.did == SERVER.did
    (done,) = pump(client, server)
    assert done.peer.did == CLIENT.did
    assert client.session_id == server.session_id == session.session_id
    client.send_message(b"negotiate: 40 t at 512.00")
    assert [e for e in pump(client, server) if isinstance(e, MessageReceived)] == [
        MessageReceived(b"negotiate: 40 t at 512.00")]
    assert store.take(session.session_id, T0) is None  # the handshake used it up


def e_c_public() -> bytes:
    return X25519PrivateKey.from_private_bytes(E_C_PRIVATE).public_key().public_bytes_raw()


def _expand(prk: bytes, info: bytes, n: int) -> bytes:
    return HKDFExpand(hashes.SHA256(), n, info).derive(prk)


def test_key_schedule_is_the_documented_psk_dhe_derivation() -> None:
    """Recompute the server's handshake keys from docs/transports.md with `cryptography` and HMAC alone,
    and open the real HANDSHAKE_RESPONSE with them: the session key and the X25519 secret both enter."""
    session = agree()
    client, server = pair(session, lookup_at(stored(session)))
    client.initiate()
    init = client.data_to_send()
    deliver(init, server)
    response = server.data_to_send()
    header, payload = response[:HEADER_LEN], response[HEADER_LEN:-MAC_LEN]
    e_s = payload[:32]
    shared = X25519PrivateKey.from_private_bytes(E_C_PRIVATE).exchange(X25519PublicKey.from_public_bytes(e_s))

    def server_hs_key(psk: bytes | None) -> tuple[bytes, bytes]:
        salt = hashlib.sha256(b"sopcos/scp/1 hkdf salt").digest()
        if psk is not None:
            salt = _expand(hmac.digest(salt, psk, "sha256"), b"scp/1 psk salt", 32)
        prk = hmac.digest(salt, shared, "sha256")
        th = hashlib.sha256(init + e_s).digest()
        secret = _expand(prk, b"scp/1 s hs " + th, 32)
        return _expand(secret, b"scp/1 key", 32), _expand(secret, b"scp/1 iv", 12)

    key, iv = server_hs_key(session.key)
    body = AESGCM(key).decrypt(iv, payload[32:], header + e_s)  # nonce = iv XOR seq 0
    assert body.startswith(SERVER.key.public_key.compressed) and SERVER.did.encode() in body
    for other in (None, bytes(32)):  # without the session key, or with another one: not these keys
        key, iv = server_hs_key(other)
        with pytest.raises(InvalidTag):
            AESGCM(key).decrypt(iv, payload[32:], header + e_s)


def test_wrong_session_key_fails_the_handshake_on_both_ends() -> None:
    session = agree()
    forged = dataclasses.replace(session, key=bytes(32))
    client, server = pair(forged, lookup_at(stored(session)))
    client.initiate()
    pump(client, server)
    with pytest.raises(ScpSessionError, match="different key"):
        pump(server, client)
    assert client.state is State.CLOSED and client.data_to_send() == b""  # no key to say why with
    with pytest.raises(ScpIOError, match="different key for the session") as info:
        server.connection_lost()
    assert info.value.code == "SCP-E-IO" and server.state is State.CLOSED


def test_a_session_is_used_once() -> None:
    session = agree()
    store = stored(session)
    client, server = pair(session, lookup_at(store))
    client.initiate()
    init = client.data_to_send()
    deliver(init, server)
    for replay in (init, None):
        client2, server2 = pair(session, lookup_at(store))
        client2.initiate()
        with pytest.raises(ScpSessionError, match="unknown, expired or already used") as info:
            deliver(replay or client2.data_to_send(), server2)
        assert info.value.code == "SCP-E-SESSION" and server2.data_to_send() == b""


def test_an_expired_session_is_refused() -> None:
    session = agree(ttl_s=30)
    store = stored(session)
    client, server = pair(session, lookup_at(store, T0 + 31))
    client.initiate()
    with pytest.raises(ScpSessionError, match="unknown, expired"):
        pump(client, server)
    client, server = pair(session, lookup_at(stored(session), T0 + 30))  # the last second still counts
    client.initiate()
    pump(client, server)
    assert isinstance(pump(server, client)[0], HandshakeComplete)


def test_an_unknown_session_is_refused() -> None:
    client, server = pair(agree(seed=2), lookup_at(stored(agree(seed=3))))
    client.initiate()
    with pytest.raises(ScpSessionError, match="unknown"):
        pump(client, server)


def test_server_checks_the_proven_client_is_the_sessions_party() -> None:
    """Mallory holds the key of CLIENT↔SERVER's session (leaked) and relabels it as hers: the server
    sees her prove MALLORY, not CLIENT, and closes with SCP-E-SESSION (authenticated)."""
    session = agree()
    stolen = dataclasses.replace(session, initiator=MALLORY.did)
    client, server = pair(stolen, lookup_at(stored(session)), client=MALLORY)
    client.initiate()
    pump(client, server)
    pump(server, client)
    with pytest.raises(ScpSessionError, match="agreed with") as info:
        pump(client, server)
    assert MALLORY.did in str(info.value) and server.state is State.CLOSED
    assert pump(server, client) == [PeerClosed("SCP-E-SESSION")]


def test_client_checks_the_proven_server_is_the_sessions_party() -> None:
    """A server that holds the key but proves another identity than the one the session was agreed
    with is refused by the client, which tells it why under the handshake keys."""
    session = agree()
    impostor = dataclasses.replace(session, responder=MALLORY.did)
    client, server = pair(session, lookup_at(stored(impostor)), server=MALLORY)
    client.initiate()
    pump(client, server)
    with pytest.raises(ScpSessionError, match="agreed with") as info:
        pump(server, client)
    assert MALLORY.did in str(info.value)
    assert pump(client, server) == [PeerClosed("SCP-E-SESSION")]


def test_a_session_of_other_parties_is_refused_at_either_end() -> None:
    session = agree()
    with pytest.raises(ScpSessionError, match="not by"):
        pair(session, client=MALLORY)  # this client is not a party
    client, server = pair(session, lookup_at(stored(session)), server=MALLORY)
    client.initiate()
    with pytest.raises(ScpSessionError, match="not by"):
        pump(client, server)


def test_require_session_refuses_a_plain_client() -> None:
    client, server = pair(None, lookup_at(stored(agree())), require_session=True)
    client.initiate()
    with pytest.raises(ScpSessionError, match="require_session"):
        pump(client, server)


def test_a_server_without_sessions_refuses_a_client_naming_one() -> None:
    client, server = pair(agree())
    client.initiate()
    with pytest.raises(ScpSessionError, match="takes no"):
        pump(client, server)
    with pytest.raises(ScpIOError, match="does not hold"):
        client.connection_lost()


def test_a_lookup_that_breaks_admits_nobody() -> None:
    def broken(session_id: bytes):
        raise OSError("store unavailable")

    client, server = pair(agree(), broken)
    client.initiate()
    with pytest.raises(ScpSessionError, match="OSError"):
        pump(client, server)


@pytest.mark.parametrize("tail", [b"\x00", b"\x10" + bytes(15), b"\x10" + bytes(17), b"\x41" + bytes(65)])
def test_malformed_session_field_is_refused_and_uses_no_session(tail: bytes) -> None:
    session = agree()
    store = stored(session)
    _, server = pair(None, lookup_at(store))
    with pytest.raises(ScpHandshakeError):
        deliver(encode_frame(MsgType.HANDSHAKE_INIT, 0, e_c_public() + tail, INIT_CHECKSUM_KEY), server)
    assert store.take(session.session_id, T0) == session


def test_altered_session_id_in_init_is_caught() -> None:
    """INIT's HMAC is only a checksum: an attacker recomputes it. A different id is simply unknown."""
    session = agree()
    client, server = pair(session, lookup_at(stored(session)))
    client.initiate()
    init = bytearray(client.data_to_send())
    init[HEADER_LEN + 33] ^= 1
    body = bytes(init[HEADER_LEN:-MAC_LEN])
    with pytest.raises(ScpSessionError, match="unknown"):
        deliver(encode_frame(MsgType.HANDSHAKE_INIT, 0, body, INIT_CHECKSUM_KEY), server)


def test_session_settings_are_checked() -> None:
    session = agree()
    with pytest.raises(ScpConfigError):
        ScpProtocol(Role.CLIENT, CLIENT, PinnedPeer(SERVER.key.public_key), session_lookup=lambda sid: None)
    with pytest.raises(ScpConfigError):
        ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key), session=session)
    with pytest.raises(ScpConfigError):
        ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key), require_session=True)
    with pytest.raises(ScpSessionError, match="16-byte key"):
        pair(dataclasses.replace(session, key=bytes(16)))
    with pytest.raises(ScpConfigError):
        pair(dataclasses.replace(session, session_id=bytes(65)))
    assert "key=" not in repr(session)


# --- end to end: KEY_EXCHANGE over the embedded ledger, then SCP over loopback TCP -----------------


async def echo(conn: Connection) -> None:
    async for message in conn:
        await conn.send(b"B: " + message)


@pytest.fixture
def negotiated(tmp_path):
    """Node A (the engineer, LVL_2) offers B (the node, LVL_2) a session over OpCode 9; B accepts.
    Returns the plant, A's session as A holds it, B's processor and the shared clock."""
    p = plant(tmp_path)
    now = [float(T0)]
    a_proc, b_proc = PlantCommandProcessor(None, p.engineer.did), PlantCommandProcessor(None, p.node.did)
    a_edge = LedgerPlantCommandInbox(p.ledger, p.engineer, a_proc, clock=lambda: now[0])
    b_edge = LedgerPlantCommandInbox(p.ledger, p.node, b_proc, clock=lambda: now[0])
    offer = a_proc.offer_session(p.node.did, now[0], ttl_s=60)
    sent = a_edge.send(offer, LedgerKeys(p.ledger).sender(p.node.did), now[0])
    assert "reply_seq" in sent
    [at_b] = b_edge.poll()
    assert (at_b["status"], at_b["kx"], at_b["from"]) == ("ok", "offer", p.engineer.did)
    assert "reply_seq" in at_b
    [at_a] = a_edge.poll()
    assert (at_a["status"], at_a["kx"], at_a["from"]) == ("ok", "accept", p.node.did)
    session_id = bytes.fromhex(at_a["session_id"])
    assert session_id == bytes.fromhex(offer.body["session_id"])
    session = a_proc.sessions.take(session_id, now[0])
    assert session is not None and (session.initiator, session.responder) == (p.engineer.did, p.node.did)
    return p, session, b_proc, now


def test_key_exchange_over_the_ledger_then_scp_over_tcp(negotiated) -> None:
    p, session, b_proc, now = negotiated

    async def main():
        errors, seen = Errors(), []

        async def on_connection(conn: Connection) -> None:
            seen.append((conn.peer.did, conn.session_id))
            await echo(conn)

        async with await serve(HOST, 0, p.node, LedgerPeer(p.ledger, min_level=2), on_connection,
                               session_lookup=b_proc.sessions.lookup(lambda: now[0]),
                               require_session=True, on_error=errors) as server:
            conn = await connect(HOST, server.port, p.engineer, LedgerPeer(p.ledger), session=session)
            async with conn:
                assert conn.peer.did == p.node.did and conn.session_id == session.session_id
                for offer in (b"40 t at 512.00", b"x" * 200_000):
                    await conn.send(offer)
                    assert await conn.receive() == b"B: " + offer
            # The same session again (a replay by anyone, A included): refused by B.
            with pytest.raises(ScpIOError, match="does not hold"):
                await connect(HOST, server.port, p.engineer, LedgerPeer(p.ledger), session=session)
            # No session at all: this server requires one.
            with pytest.raises(ScpIOError):
                await connect(HOST, server.port, p.engineer, LedgerPeer(p.ledger))
            await errors.wait(2)
        assert seen == [(p.engineer.did, session.session_id)]
        assert [e.code for e in errors] == ["SCP-E-SESSION", "SCP-E-SESSION"]
        assert "already used" in str(errors[0]) and "require_session" in str(errors[1])

    asyncio.run(asyncio.wait_for(main(), 30))


async def _refused(p, b_proc, now, client, session, verifier=None) -> tuple[ScpError, ScpError]:
    """Connect `client` naming `session`; returns (client's error, server's error)."""
    errors = Errors()
    async with await serve(HOST, 0, p.node, LedgerPeer(p.ledger, min_level=2), echo,
                           session_lookup=b_proc.sessions.lookup(lambda: now[0]), on_error=errors) as server:
        try:
            conn = await connect(HOST, server.port, client, verifier or LedgerPeer(p.ledger), session=session)
            async with conn:
                await conn.send(b"hello")
                await conn.receive()
        except ScpError as exc:
            client_error = exc
        else:
            raise AssertionError("the connection under a refused session worked")
        await errors.wait()
    return client_error, errors[0]


def test_expired_session_is_refused_over_tcp(negotiated) -> None:
    p, session, b_proc, now = negotiated
    now[0] = session.expires_at + 1
    client_error, server_error = asyncio.run(asyncio.wait_for(
        _refused(p, b_proc, now, p.engineer, session), 30))
    assert isinstance(client_error, ScpIOError) and server_error.code == "SCP-E-SESSION"
    assert "expired" in str(server_error)


def test_mismatched_did_is_refused_over_tcp(negotiated) -> None:
    """The admin (registered, LVL_4) got hold of A's session key and relabels it as its own: B checks
    the identity the handshake proved against the session's initiator and closes with SCP-E-SESSION."""
    p, session, b_proc, now = negotiated
    stolen = dataclasses.replace(session, initiator=p.admin.did)
    client_error, server_error = asyncio.run(asyncio.wait_for(
        _refused(p, b_proc, now, p.admin, stolen), 30))
    assert isinstance(client_error, ScpRemoteClose) and client_error.remote_code == "SCP-E-SESSION"
    assert server_error.code == "SCP-E-SESSION" and p.admin.did in str(server_error)


def test_wrong_session_key_is_refused_over_tcp(negotiated) -> None:
    p, session, b_proc, now = negotiated
    wrong = dataclasses.replace(session, key=bytes(a ^ 1 for a in session.key))
    client_error, server_error = asyncio.run(asyncio.wait_for(
        _refused(p, b_proc, now, p.engineer, wrong), 30))
    assert client_error.code == "SCP-E-SESSION" and "different key" in str(client_error)
    assert server_error.code == "SCP-E-IO" and "different key" in str(server_error)
    assert b_proc.sessions.take(session.session_id, now[0]) is None  # the attempt used the session up
