"""The SCP state machine without I/O: handshake, identity proof, frames, sequence, rekey, timeouts."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon.transports import scp_errors
from axon.transports.scp_crypto import TAG_LEN, hmac_sha256
from axon.transports.scp_errors import (
    ScpAckError,
    ScpAuthError,
    ScpConnectionClosed,
    ScpError,
    ScpHandshakeTimeout,
    ScpHmacError,
    ScpIdleTimeout,
    ScpIOError,
    ScpOrderError,
    ScpPeerRejected,
    ScpRekeyError,
    ScpReplayError,
    ScpSequenceExhausted,
    ScpSizeError,
    ScpStateError,
    ScpTruncatedError,
    ScpTypeError,
    ScpVersionError,
)
from axon.transports.scp_peers import PinnedPeer
from axon.transports.scp_protocol import (
    CLOSE_OK,
    HEADER,
    HEADER_LEN,
    INIT_CHECKSUM_KEY,
    MAC_LEN,
    SEQ_LIMIT,
    Acknowledged,
    CloseAcknowledged,
    FrameDecoder,
    HandshakeComplete,
    MessageReceived,
    MsgType,
    PeerClosed,
    Role,
    ScpConfig,
    ScpProtocol,
    State,
    encode_frame,
)
from tests.scp_fixtures import CLIENT, MALLORY, SERVER, Clock, deliver, handshake, make_pair, pump


def split_frames(data: bytes) -> list[bytes]:
    frames = []
    while data:
        length = HEADER.unpack_from(data)[3]
        end = HEADER_LEN + length + MAC_LEN
        frames.append(data[:end])
        data = data[end:]
    return frames


# --- handshake -----------------------------------------------------------------------------------


def test_handshake_authenticates_both_sides_with_three_frames() -> None:
    client, server, _ = make_pair()
    client.initiate()
    init = client.data_to_send()
    assert split_frames(init)[0][:2] == bytes([1, MsgType.HANDSHAKE_INIT])
    assert deliver(init, server) == []
    response = server.data_to_send()
    assert [f[1] for f in split_frames(response)] == [MsgType.HANDSHAKE_RESPONSE]
    (done,) = deliver(response, client)
    assert isinstance(done, HandshakeComplete) and done.peer.did == SERVER.did
    assert done.peer.public_key == SERVER.key.public_key
    finish = client.data_to_send()
    assert [(f[1], HEADER.unpack_from(f)[2]) for f in split_frames(finish)] == [(MsgType.ACK, 1)]
    (done,) = deliver(finish, server)
    assert done.peer.did == CLIENT.did and done.peer.public_key == CLIENT.key.public_key
    assert client.state is server.state is State.ESTABLISHED


def test_identities_travel_encrypted() -> None:
    client, server, _ = make_pair()
    client.initiate()
    pump(client, server)
    response = server.data_to_send()
    assert SERVER.did.encode() not in response
    assert SERVER.key.public_key.compressed not in response


def test_each_connection_gets_fresh_keys() -> None:
    sent = []
    for seed in (1, 2):
        client, server, _ = make_pair(seed=seed)
        handshake(client, server)
        client.send_message(b"same message")
        sent.append(client.data_to_send())
    assert sent[0] != sent[1]


def test_messages_flow_both_ways_with_acks() -> None:
    client, server, _ = make_pair()
    handshake(client, server)
    client.send_message(b"to server")
    assert pump(client, server) == [MessageReceived(b"to server")]
    assert pump(server, client) == [Acknowledged(2)]
    server.send_message(b"to client")
    assert pump(server, client) == [MessageReceived(b"to client")]
    assert pump(client, server) == [Acknowledged(2)]  # the server's #1 was its ACK
    assert client.unacked == server.unacked == 0


def test_large_message_is_fragmented_and_reassembled() -> None:
    config = ScpConfig(max_frame_payload=1024)
    client, server, _ = make_pair(config)
    handshake(client, server)
    message = bytes(range(256)) * 40  # 10240 bytes
    client.send_message(message)
    wire = client.data_to_send()
    assert len(split_frames(wire)) == -(-len(message) // config.fragment_size)
    assert all(HEADER.unpack_from(f)[3] <= 1024 for f in split_frames(wire))
    assert deliver(wire, server) == [MessageReceived(message)]


def test_empty_message_is_delivered() -> None:
    client, server, _ = make_pair()
    handshake(client, server)
    client.send_message(b"")
    assert pump(client, server) == [MessageReceived(b"")]


def test_close_is_acknowledged() -> None:
    client, server, _ = make_pair()
    handshake(client, server)
    client.close()
    assert client.state is State.CLOSING
    assert pump(client, server) == [PeerClosed(CLOSE_OK)]
    assert pump(server, client) == [CloseAcknowledged()]
    assert client.state is server.state is State.CLOSED
    with pytest.raises(ScpConnectionClosed):
        client.send_message(b"late")
    with pytest.raises(ScpConnectionClosed):
        server.send_message(b"late")


def test_data_in_flight_during_close_is_still_delivered() -> None:
    client, server, _ = make_pair()
    handshake(client, server)
    server.send_message(b"in flight")
    client.close()
    assert pump(server, client) == [MessageReceived(b"in flight")]
    # The server acknowledges CLOSE and is done; the client's ACK for "in flight" comes after CLOSE.
    assert pump(client, server) == [PeerClosed(CLOSE_OK)]
    assert pump(server, client) == [CloseAcknowledged()]


# --- impersonation and tampering during the handshake ---------------------------------------------


def test_client_rejects_server_with_unpinned_key_and_tells_it_why() -> None:
    client, _, clock = make_pair()
    impostor = ScpProtocol(Role.SERVER, MALLORY, PinnedPeer(CLIENT.key.public_key), clock=clock)
    client.initiate()
    pump(client, impostor)
    with pytest.raises(ScpPeerRejected):
        pump(impostor, client)
    assert client.state is State.CLOSED and client.error.code == "SCP-E-PEER"
    assert pump(client, impostor) == [PeerClosed("SCP-E-PEER")]


def test_server_claiming_anothers_did_with_its_own_key_is_rejected() -> None:
    from axon.keys import Identity
    client, _, clock = make_pair()
    liar = ScpProtocol(Role.SERVER, Identity(MALLORY.key, SERVER.did), PinnedPeer(CLIENT.key.public_key),
                       clock=clock)
    client.initiate()
    pump(client, liar)
    with pytest.raises(ScpPeerRejected):
        pump(liar, client)


def test_server_rejects_unknown_client_and_client_learns_the_code() -> None:
    client, server, _ = make_pair(client_identity=MALLORY, server_verifier=PinnedPeer(CLIENT.key.public_key))
    client.initiate()
    pump(client, server)
    assert isinstance(pump(server, client)[0], HandshakeComplete)  # the client is satisfied with the server
    with pytest.raises(ScpPeerRejected):
        pump(client, server)
    assert pump(server, client) == [PeerClosed("SCP-E-PEER")]


class _Relay(ScpProtocol):
    """Mallory's end that presents an identity proof she copied from another handshake."""

    stolen: bytes = b""

    def _signed_identity(self, context: bytes) -> bytes:
        self._absorb_identity(self.stolen, context)
        return self.stolen


class _Recorder(ScpProtocol):
    """Mallory's end of an honest handshake, keeping the decrypted identity proof it receives."""

    proof: bytes = b""

    def _absorb_identity(self, body: bytes, context: bytes):
        self.proof = body
        return super()._absorb_identity(body, context)


def test_man_in_the_middle_relaying_the_servers_signature_is_detected() -> None:
    """Plain ECDH is not authenticated: Mallory can run one exchange with each side. The server's
    signature covers its own transcript, which holds Mallory's ephemeral key, so it fails for the client."""
    clock = Clock()
    mallory = _Recorder(Role.CLIENT, MALLORY, PinnedPeer(SERVER.key.public_key), clock=clock)
    server = ScpProtocol(Role.SERVER, SERVER, PinnedPeer(MALLORY.key.public_key), clock=clock)
    handshake(mallory, server)
    assert mallory.proof.startswith(SERVER.key.public_key.compressed)

    client, _, _ = make_pair(seed=8, clock=clock)
    mitm = _Relay(Role.SERVER, MALLORY, PinnedPeer(CLIENT.key.public_key), clock=clock)
    mitm.stolen = mallory.proof
    client.initiate()
    pump(client, mitm)
    with pytest.raises(ScpAuthError):
        pump(mitm, client)
    assert client.peer is None


def test_man_in_the_middle_relaying_the_clients_signature_is_detected() -> None:
    # Mallory gets the client's proof from a handshake the client makes with her (it trusts her as a
    # server), then replays it to the real server in her own handshake.
    clock = Clock()
    client = ScpProtocol(Role.CLIENT, CLIENT, PinnedPeer(MALLORY.key.public_key), clock=clock)
    mallory = _Recorder(Role.SERVER, MALLORY, PinnedPeer(CLIENT.key.public_key), clock=clock)
    handshake(client, mallory)
    assert mallory.proof.startswith(CLIENT.key.public_key.compressed)

    mitm = _Relay(Role.CLIENT, MALLORY, PinnedPeer(SERVER.key.public_key), clock=clock)
    mitm.stolen = mallory.proof
    server = ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key), clock=clock)
    mitm.initiate()
    pump(mitm, server)
    pump(server, mitm)
    with pytest.raises(ScpAuthError):
        pump(mitm, server)
    assert server.peer is None
    assert pump(server, mitm) == [PeerClosed("SCP-E-AUTH")]


def test_tampered_init_fails_its_checksum() -> None:
    client, server, _ = make_pair()
    client.initiate()
    init = bytearray(client.data_to_send())
    init[HEADER_LEN + 3] ^= 0x01
    with pytest.raises(ScpHmacError):
        deliver(bytes(init), server)


def test_substituted_ephemeral_key_breaks_the_handshake() -> None:
    """An attacker replaces e_c (fixing the public checksum): the server answers under keys the client
    cannot derive, so the client rejects the RESPONSE."""
    client, server, _ = make_pair()
    client.initiate()
    client.data_to_send()
    mallory_ephemeral = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    deliver(encode_frame(MsgType.HANDSHAKE_INIT, 0, mallory_ephemeral, INIT_CHECKSUM_KEY), server)
    with pytest.raises(ScpHmacError):
        pump(server, client)


@pytest.mark.parametrize("offset", [1, 5, HEADER_LEN, HEADER_LEN + 40, -40, -1])
def test_tampered_response_is_rejected(offset: int) -> None:
    client, server, _ = make_pair()
    client.initiate()
    pump(client, server)
    response = bytearray(server.data_to_send())
    response[offset] ^= 0x80
    with pytest.raises(ScpError) as info:
        deliver(bytes(response), client)
    assert info.value.code in ("SCP-E-HMAC", "SCP-E-TYPE", "SCP-E-SIZE")
    assert client.state is State.CLOSED


def test_tampered_finish_is_rejected() -> None:
    client, server, _ = make_pair()
    client.initiate()
    pump(client, server)
    pump(server, client)
    finish = bytearray(client.data_to_send())
    finish[HEADER_LEN + 10] ^= 0x01
    with pytest.raises(ScpHmacError):
        deliver(bytes(finish), server)


def test_replayed_handshake_to_a_new_server_fails() -> None:
    client, server, _ = make_pair(seed=3)
    client.initiate()
    init = client.data_to_send()
    deliver(init, server)
    deliver(server.data_to_send(), client)
    finish = client.data_to_send()
    _, fresh_server, _ = make_pair(seed=4)
    deliver(init, fresh_server)  # replayed INIT gets a fresh server ephemeral key
    with pytest.raises(ScpHmacError):
        deliver(finish, fresh_server)  # the recorded ACK was made under other keys


def test_second_init_is_out_of_place() -> None:
    client, server, _ = make_pair()
    client.initiate()
    init = client.data_to_send()
    deliver(init, server)
    with pytest.raises(ScpStateError):
        deliver(init, server)


def test_data_before_handshake_is_refused() -> None:
    _, server, _ = make_pair()
    with pytest.raises(ScpStateError):
        deliver(encode_frame(MsgType.DATA, 0, b"x" * 20, bytes(32)), server)


def test_init_with_bad_sequence_or_key_length() -> None:
    _, server, _ = make_pair()
    with pytest.raises(ScpOrderError):
        deliver(encode_frame(MsgType.HANDSHAKE_INIT, 5, bytes(range(32)), INIT_CHECKSUM_KEY), server)
    _, server, _ = make_pair()
    with pytest.raises(scp_errors.ScpHandshakeError):
        deliver(encode_frame(MsgType.HANDSHAKE_INIT, 0, bytes(31), INIT_CHECKSUM_KEY), server)


def test_low_order_ephemeral_key_is_refused() -> None:
    _, server, _ = make_pair()
    with pytest.raises(scp_errors.ScpKeyError):
        deliver(encode_frame(MsgType.HANDSHAKE_INIT, 0, bytes(32), INIT_CHECKSUM_KEY), server)


def test_broken_verifier_fails_closed() -> None:
    def verifier(did, key):
        raise RuntimeError("ledger offline")

    client, server, _ = make_pair(client_verifier=verifier)
    client.initiate()
    pump(client, server)
    with pytest.raises(ScpPeerRejected, match="RuntimeError"):
        pump(server, client)


# --- data frames: tampering, replay, reordering, truncation, size, wrong keys ---------------------


def established(config: ScpConfig | None = None, seed: int = 1):
    client, server, clock = make_pair(config, seed=seed)
    handshake(client, server)
    return client, server, clock


@pytest.mark.parametrize("offset", [2, 9, HEADER_LEN, HEADER_LEN + 5, -MAC_LEN, -1])
def test_flipped_bit_in_data_frame_is_caught_by_the_hmac(offset: int) -> None:
    client, server, _ = established()
    client.send_message(b"open the valve to 40 percent")
    frame = bytearray(client.data_to_send())
    frame[offset] ^= 0x04
    with pytest.raises(ScpHmacError):
        deliver(bytes(frame), server)
    assert server.state is State.CLOSED
    assert pump(server, client) == [PeerClosed("SCP-E-HMAC")]


def test_replayed_data_frame_is_rejected() -> None:
    client, server, _ = established()
    client.send_message(b"start pump")
    frame = client.data_to_send()
    assert deliver(frame, server) == [MessageReceived(b"start pump")]
    with pytest.raises(ScpReplayError):
        deliver(frame, server)


def test_reordered_frames_are_rejected() -> None:
    client, server, _ = established()
    client.send_message(b"first")
    first = client.data_to_send()
    client.send_message(b"second")
    second = client.data_to_send()
    with pytest.raises(ScpOrderError):
        deliver(second + first, server)


def test_dropped_frame_is_detected() -> None:
    client, server, _ = established()
    client.send_message(b"one")
    client.data_to_send()
    client.send_message(b"two")
    with pytest.raises(ScpOrderError):
        pump(client, server)


def test_frame_from_another_connection_fails() -> None:
    client, server, _ = established(seed=1)
    other_client, _, _ = established(seed=2)
    other_client.send_message(b"hello")
    with pytest.raises(ScpHmacError):
        pump(other_client, server)


def test_truncated_frame_then_eof() -> None:
    client, server, _ = established()
    client.send_message(b"x" * 100)
    frame = client.data_to_send()
    deliver(frame[:-10], server)
    with pytest.raises(ScpTruncatedError):
        server.connection_lost()


def test_eof_without_close_is_an_error_but_after_close_is_not() -> None:
    client, server, _ = established()
    with pytest.raises(ScpIOError):
        server.connection_lost()
    client, server, _ = established()
    client.close()
    pump(client, server)
    pump(server, client)
    client.connection_lost()
    server.connection_lost()


def test_oversized_frame_is_refused_from_its_header_alone() -> None:
    client, server, _ = established(ScpConfig(max_frame_payload=4096))
    header = HEADER.pack(1, MsgType.DATA, 2, 4097)
    with pytest.raises(ScpSizeError):
        deliver(header, server)


def test_frame_at_the_size_limit_is_accepted() -> None:
    config = ScpConfig(max_frame_payload=4096)
    client, server, _ = established(config)
    client.send_message(b"y" * config.fragment_size)
    wire = client.data_to_send()
    assert HEADER.unpack_from(wire)[3] == 4096 and len(split_frames(wire)) == 1
    assert deliver(wire, server) == [MessageReceived(b"y" * config.fragment_size)]


def test_message_over_max_message_is_refused_on_both_ends() -> None:
    client, server, _ = established(ScpConfig(max_message=5000))
    with pytest.raises(ScpSizeError):
        client.send_message(b"z" * 5001)
    big_client, _, clock = make_pair(ScpConfig(max_message=10_000), seed=5)
    small_server = ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key),
                               config=ScpConfig(max_message=5000, max_frame_payload=1024), clock=clock)
    big_client.config = ScpConfig(max_message=10_000, max_frame_payload=1024)
    handshake(big_client, small_server)
    big_client.send_message(b"z" * 6000)
    with pytest.raises(ScpSizeError):
        pump(big_client, small_server)


@pytest.mark.parametrize(("header", "error"), [
    (HEADER.pack(2, MsgType.DATA, 0, 0), ScpVersionError),
    (HEADER.pack(1, 0x06, 0, 0), ScpTypeError),
    (HEADER.pack(1, 0x00, 0, 0), ScpTypeError),
])
def test_bad_version_and_type(header: bytes, error: type) -> None:
    _, server, _ = make_pair()
    with pytest.raises(error):
        deliver(header, server)


def test_bogus_ack_is_refused() -> None:
    client, server, _ = established()
    server._seal(MsgType.ACK, (99).to_bytes(8, "big"), False)  # a buggy peer acknowledges nothing sent
    with pytest.raises(ScpAckError):
        pump(server, client)


def test_error_codes_are_stable_and_distinct() -> None:
    classes = [c for c in vars(scp_errors).values()
               if isinstance(c, type) and issubclass(c, scp_errors.ScpError)]
    codes = [c.code for c in classes]
    assert len(codes) == len(set(codes)) >= 20
    assert all(code.startswith("SCP-") for code in codes)


# --- sequence numbers ----------------------------------------------------------------------------


def test_sequence_numbers_do_not_wrap() -> None:
    """64-bit sequence numbers are never reused (the nonce derives from them): the last one is used,
    then the connection refuses to send and fails with SCP-E-SEQ-EXHAUSTED."""
    client, server, _ = established()
    client._out.seq = server._in.expected = SEQ_LIMIT - 1
    client.send_message(b"last")
    wire = client.data_to_send()
    assert HEADER.unpack_from(wire)[2] == SEQ_LIMIT - 1
    assert deliver(wire, server) == [MessageReceived(b"last")]
    with pytest.raises(ScpSequenceExhausted):
        client.send_message(b"one too many")
    assert client.state is State.CLOSED and client.data_to_send() == b""


def test_sequence_numbers_per_direction_start_after_the_handshake() -> None:
    client, server, _ = established()
    client.send_message(b"a")
    server.send_message(b"b")
    assert HEADER.unpack_from(client.data_to_send())[2] == 2  # INIT 0, handshake ACK 1
    assert HEADER.unpack_from(server.data_to_send())[2] == 1  # RESPONSE 0


# --- rekey ---------------------------------------------------------------------------------------


def test_rekey_on_bytes_happens_exactly_at_the_limit() -> None:
    payload = 100 + 1 + TAG_LEN  # one 100-byte message = one frame of 117 payload bytes
    for limit, rekeyed in ((payload, True), (payload + 1, False)):
        client, server, _ = established(ScpConfig(rekey_after_bytes=limit))
        client.send_message(b"m" * 100)
        pump(client, server)
        pump(server, client)
        before = client._out.epoch.secret
        client.send_message(b"n" * 100)
        assert (client._out.epoch.secret != before) is rekeyed
        expected = [MessageReceived(b"n" * 100)]
        assert pump(client, server) == expected
        assert (server._in.epoch.secret == client._out.epoch.secret)


def test_rekey_on_time_happens_exactly_at_the_limit() -> None:
    for elapsed, rekeyed in ((3600.0, True), (3599.5, False)):
        client, server, clock = established()
        before = client._out.epoch.secret
        clock.advance(elapsed)
        client.send_message(b"after a while")
        assert (client._out.epoch.secret != before) is rekeyed
        assert pump(client, server) == [MessageReceived(b"after a while")]
        assert server._in.epoch.secret == client._out.epoch.secret


def test_many_rekeys_keep_the_stream_working_and_old_frames_useless() -> None:
    client, server, _ = established(ScpConfig(rekey_after_bytes=300))
    client.send_message(b"early")
    early = client.data_to_send()
    deliver(early, server)
    secrets_seen = {client._out.epoch.secret}
    for i in range(20):
        client.send_message(bytes([i]) * 150)
        events = pump(client, server)  # also ACKs of the server's own key updates
        assert [e for e in events if isinstance(e, MessageReceived)] == [MessageReceived(bytes([i]) * 150)]
        pump(server, client)
        secrets_seen.add(client._out.epoch.secret)
    assert len(secrets_seen) >= 10
    assert client.unacked == 0
    with pytest.raises(ScpHmacError):  # a frame from an old epoch no longer authenticates
        deliver(early, server)


def test_acks_count_towards_rekey_too() -> None:
    client, server, _ = established(ScpConfig(rekey_after_bytes=100))
    before = server._out.epoch.secret
    for _ in range(6):  # each ACK is 24 payload bytes
        client.send_message(b"x")
        pump(client, server)
        pump(server, client)
    assert server._out.epoch.secret != before


def test_receiver_enforces_rekey_on_bytes() -> None:
    lax_client, _, clock = make_pair(ScpConfig(rekey_after_bytes=1 << 30, max_frame_payload=1024))
    strict = ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key),
                         config=ScpConfig(rekey_after_bytes=2048, max_frame_payload=1024), clock=clock)
    handshake(lax_client, strict)
    limit = 2048 + 1024 + 1 + TAG_LEN
    sent = 0
    with pytest.raises(ScpRekeyError):
        while True:
            lax_client.send_message(b"q" * 500)
            sent += 500 + 1 + TAG_LEN
            pump(lax_client, strict)
            assert sent <= limit  # it must fail once, and only once, the slack is exceeded
    assert sent > limit


def test_receiver_enforces_rekey_on_time() -> None:
    lax_client, _, clock = make_pair(ScpConfig(rekey_after_seconds=1e9))
    strict = ScpProtocol(Role.SERVER, SERVER, PinnedPeer(CLIENT.key.public_key),
                         config=ScpConfig(rekey_after_seconds=100, rekey_grace_seconds=10), clock=clock)
    handshake(lax_client, strict)
    clock.advance(110)
    lax_client.send_message(b"at the edge")
    assert pump(lax_client, strict) == [MessageReceived(b"at the edge")]
    clock.advance(0.5)
    lax_client.send_message(b"too late")
    with pytest.raises(ScpRekeyError):
        pump(lax_client, strict)


# --- timeouts ------------------------------------------------------------------------------------


def test_idle_timeout_closes_with_a_code() -> None:
    client, server, clock = established()
    assert server.deadline() == clock.now + 30.0
    clock.advance(29.9)
    server.handle_timeout()
    assert server.state is State.ESTABLISHED
    clock.advance(0.1)
    with pytest.raises(ScpIdleTimeout):
        server.handle_timeout()
    assert pump(server, client) == [PeerClosed("SCP-E-IDLE")]


def test_traffic_resets_the_idle_timer() -> None:
    client, server, clock = established()
    clock.advance(20)
    client.send_message(b"keepalive")
    pump(client, server)
    clock.advance(20)
    server.handle_timeout()
    assert server.state is State.ESTABLISHED


def test_handshake_timeout() -> None:
    client, server, clock = make_pair(ScpConfig(handshake_timeout=5))
    client.initiate()
    clock.advance(5)
    with pytest.raises(ScpHandshakeTimeout):
        client.handle_timeout()
    with pytest.raises(ScpHandshakeTimeout):
        server.handle_timeout()


def test_config_is_validated() -> None:
    with pytest.raises(scp_errors.ScpConfigError):
        ScpConfig(max_frame_payload=100)
    with pytest.raises(scp_errors.ScpConfigError):
        ScpConfig(idle_timeout=0)


# --- fuzzing the parsers: only SCP errors may come out ---------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=6))
def test_fuzz_frame_decoder(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(2048)
    try:
        for chunk in chunks:
            decoder.feed(chunk)
            while decoder.next_frame() is not None:
                pass
    except ScpError:
        pass


def _feed_all(proto: ScpProtocol, data: bytes) -> None:
    try:
        deliver(data, proto)
        proto.connection_lost()
    except ScpError:
        assert proto.state is State.CLOSED


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_server_with_random_bytes(data: bytes) -> None:
    _, server, _ = make_pair()
    _feed_all(server, data)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_client_with_random_bytes(data: bytes) -> None:
    client, _, _ = make_pair()
    client.initiate()
    _feed_all(client, data)


def _mutate(data: bytes, position: int, value: int, cut: int) -> bytes:
    data = bytearray(data)
    if data:
        data[position % len(data)] ^= value
    return bytes(data[: len(data) - cut])


@FUZZ
@given(st.integers(0, 10_000), st.integers(1, 255), st.integers(0, 40), st.integers(0, 2))
def test_fuzz_mutated_handshake_and_data(position: int, value: int, cut: int, target: int) -> None:
    """Genuine traffic with one byte changed and a tail cut: an SCP error, or (cut only) nothing."""
    client, server, _ = make_pair(ScpConfig(max_frame_payload=1024))
    client.initiate()
    if target == 0:
        _feed_all(server, _mutate(client.data_to_send(), position, value, cut))
        return
    pump(client, server)
    if target == 1:
        _feed_all(client, _mutate(server.data_to_send(), position, value, cut))
        return
    pump(server, client)
    pump(client, server)
    client.send_message(b"payload " * 300)
    _feed_all(server, _mutate(client.data_to_send(), position, value, cut))
    assert server.state is State.CLOSED


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.sampled_from(list(MsgType)), st.integers(0, 5))
def test_fuzz_forged_frames_in_established_state(payload: bytes, msg_type: MsgType, seq: int) -> None:
    """Frames with a well-formed header and a guessed key never get past the HMAC."""
    _, server, _ = established()
    frame = encode_frame(msg_type, seq, payload, hmac_sha256(b"guess", payload))
    with pytest.raises(ScpError):
        deliver(frame, server)


def test_struct_layout_is_the_seeds() -> None:
    assert HEADER_LEN == 1 + 1 + 8 + 4 and MAC_LEN == 32
    assert struct.unpack(">BBQI", HEADER.pack(1, 3, 2**64 - 1, 7)) == (1, 3, 2**64 - 1, 7)


def test_clock_is_injected() -> None:
    clock = Clock(5.0)
    client, server, _ = make_pair(clock=clock)
    client.initiate()
    assert client.deadline() == 5.0 + 10.0
