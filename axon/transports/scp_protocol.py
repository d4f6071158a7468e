"""SCP (seed 002) as a sans-IO state machine: bytes in, events and bytes out; clock and randomness injected.

Frame, as the seed draws it (integers big-endian):
    version (1) ‖ type (1) ‖ sequence (8) ‖ payload length (4) ‖ payload ‖ HMAC-SHA-256 (32)
The HMAC covers header ‖ payload. After the handshake every payload is AES-256-GCM ciphertext whose
associated data is the header, with the nonce derived from the sequence number.

Handshake, the seed's three messages. The seed says ephemeral ECDH authenticates both sides; it does
not (anyone can relay two ephemeral exchanges), so each side also signs the transcript with its
secp256k1 identity key, SIGMA-I / TLS 1.3 style, and identities travel encrypted:
    1. HANDSHAKE_INIT      c→s seq 0: e_c [‖ len ‖ session_id]  HMAC key: a public constant (checksum)
    2. HANDSHAKE_RESPONSE  s→c seq 0: e_s ‖ AEAD(id_s ‖ sig_s)  under the server handshake keys
    3. ACK                 c→s seq 1: AEAD(id_c ‖ sig_c)        under the client handshake keys
    sig_s = Sign_s(SHA-256(ctx_s ‖ H(INIT ‖ e_s ‖ id_s)))
    sig_c = Sign_c(SHA-256(ctx_c ‖ H(INIT ‖ e_s ‖ id_s ‖ sig_s ‖ id_c)))
Key schedule: prk = HKDF-Extract(salt, X25519(e_c, e_s)); handshake and application secrets are
HKDF-Expand(prk, label ‖ transcript hash), one per direction; each secret expands to an AES key, an
HMAC key and a 96-bit IV. salt is PROTOCOL_SALT, or, when INIT names a session agreed over SIP-017
KEY_EXCHANGE (§5.3), HKDF-Expand(HKDF-Extract(PROTOCOL_SALT, session key), "scp/1 psk salt"): TLS 1.3's
PSK-(EC)DHE, so the keys need both the session key and the fresh DH secret, and the signatures still
authenticate. The server takes the session through an injected lookup (single use, unexpired) and both
ends check that its two DIDs are the two identities the handshake proved.
Rekey (1 h or 1 GiB, whichever first) is a KEY_UPDATE inside a DATA frame: the next secret is
HKDF-Expand(secret, "key update"), the old keys are dropped.

Data phase: every DATA and CLOSE is answered with an ACK carrying its sequence number; the
DATA plaintext starts with an inner type byte (message end, more fragments, key update).
Deviations from the seed, and why, are listed in docs/transports.md.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from axon.errors import AxonError
from axon.keys import DID_RE, Identity, InvalidKey, PublicKey
from axon.transports.scp_crypto import (
    TAG_LEN,
    X25519_LEN,
    AesGcm,
    hkdf_expand,
    hkdf_extract,
    hmac_check,
    hmac_sha256,
    sha256,
    x25519_keypair,
    x25519_shared,
)
from axon.transports.scp_errors import (
    ScpAckError,
    ScpAuthError,
    ScpConfigError,
    ScpConnectionClosed,
    ScpError,
    ScpFrameError,
    ScpHandshakeError,
    ScpHandshakeTimeout,
    ScpHmacError,
    ScpIdleTimeout,
    ScpIOError,
    ScpOrderError,
    ScpPeerRejected,
    ScpRekeyError,
    ScpReplayError,
    ScpSequenceExhausted,
    ScpSessionError,
    ScpSizeError,
    ScpStateError,
    ScpTruncatedError,
    ScpTypeError,
    ScpVersionError,
)
from axon.transports.scp_peers import PeerIdentity, PeerVerifier

VERSION = 1
HEADER = struct.Struct(">BBQI")
HEADER_LEN = HEADER.size  # 14
MAC_LEN = 32
SEQ_LIMIT = 2**64  # sequence numbers run 0 .. 2**64-1 per direction and are never reused
CLOSE_OK = "SCP-OK"
MIN_FRAME_PAYLOAD = 1024  # a RESPONSE with a long DID must fit
MAX_DID_BYTES = 512
MAX_SESSION_ID = 64
PSK_LEN = 32
_CLOSE_CODE = re.compile(rb"^SCP-[A-Z0-9-]{1,60}$")

PROTOCOL_SALT = sha256(b"sopcos/scp/1 hkdf salt")
# INIT has no shared key yet; its HMAC is keyed with a public constant, so it is only a checksum.
# INIT is authenticated later, by both transcript signatures.
INIT_CHECKSUM_KEY = sha256(b"sopcos/scp/1 HANDSHAKE_INIT checksum key (public)")
SERVER_SIG_CONTEXT = b"sopcos/scp/1 server transcript signature\x00"
CLIENT_SIG_CONTEXT = b"sopcos/scp/1 client transcript signature\x00"


class MsgType(IntEnum):
    HANDSHAKE_INIT = 0x01
    HANDSHAKE_RESPONSE = 0x02
    DATA = 0x03
    ACK = 0x04
    CLOSE = 0x05


class Inner(IntEnum):
    """First plaintext byte of a DATA frame."""

    FINAL = 0x00  # last (or only) fragment of an application message
    MORE = 0x01  # more fragments of this message follow
    KEY_UPDATE = 0x02  # the sender's next frames use the next key epoch


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(Enum):
    IDLE = "idle"
    WAIT_INIT = "waiting for HANDSHAKE_INIT"
    WAIT_RESPONSE = "waiting for HANDSHAKE_RESPONSE"
    WAIT_FINISH = "waiting for the handshake ACK"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


_HANDSHAKING = (State.WAIT_INIT, State.WAIT_RESPONSE, State.WAIT_FINISH)
# Why a handshake naming a session ends without a word: neither side has keys the other can check yet.
_SESSION_HINTS = {
    State.WAIT_RESPONSE: "the server drops a handshake naming a session it does not hold, that expired "
                         "or that was used before",
    State.WAIT_FINISH: "a client holding a different key for the session stops here",
}


class SessionKey(Protocol):
    """A pre-shared key agreed before the connection, such as axon.messaging's KeyExchangeSession."""

    @property
    def session_id(self) -> bytes: ...

    @property
    def key(self) -> bytes: ...

    @property
    def initiator(self) -> str: ...

    @property
    def responder(self) -> str: ...


# Server side: the session a client named, handed out once; None if unknown, expired or already used.
SessionLookup = Callable[[bytes], SessionKey | None]


@dataclass(frozen=True)
class ScpConfig:
    """Every SCP limit in one place. Both ends must agree on `max_frame_payload`."""

    idle_timeout: float = 30.0
    handshake_timeout: float = 10.0
    close_timeout: float = 5.0
    rekey_after_seconds: float = 3600.0
    rekey_after_bytes: int = 1 << 30
    # How much longer than rekey_after_seconds a receiver tolerates one key before failing SCP-E-REKEY.
    rekey_grace_seconds: float = 60.0
    max_frame_payload: int = 1 << 16
    max_message: int = 16 << 20
    max_unacked: int = 64
    max_queued_messages: int = 64
    # Server admission (seed: "rate limiting" against denial of service); checked before any crypto.
    max_connections: int = 256  # open at once, handshaking or established
    max_handshakes: int = 32  # accepted but not yet authenticated
    max_handshakes_per_source: int = 8  # of those, from one source IP (one address cannot hold them all)
    connect_rate: float = 10.0  # new connections per second per source IP (token bucket refill)
    connect_burst: int = 20  # token bucket size per source IP
    max_rate_sources: int = 4096  # source IPs remembered; the least recently seen is forgotten first

    def __post_init__(self) -> None:
        for name in ("idle_timeout", "handshake_timeout", "close_timeout", "rekey_after_seconds",
                     "connect_rate"):
            if not getattr(self, name) > 0:
                raise ScpConfigError(f"ScpConfig.{name} must be positive")
        if self.rekey_grace_seconds < 0:
            raise ScpConfigError("ScpConfig.rekey_grace_seconds must not be negative")
        if not MIN_FRAME_PAYLOAD <= self.max_frame_payload <= 2**32 - 1:
            raise ScpConfigError(f"ScpConfig.max_frame_payload must be {MIN_FRAME_PAYLOAD}..{2**32 - 1}")
        for name in ("rekey_after_bytes", "max_unacked", "max_queued_messages", "max_connections",
                     "max_handshakes", "max_handshakes_per_source", "connect_burst", "max_rate_sources"):
            if getattr(self, name) < 1:
                raise ScpConfigError(f"ScpConfig.{name} must be at least 1")
        if self.max_message < 0:
            raise ScpConfigError("ScpConfig.max_message must not be negative")

    @property
    def fragment_size(self) -> int:
        """Application bytes per DATA frame: the payload limit less the inner type byte and the GCM tag."""
        return self.max_frame_payload - 1 - TAG_LEN


# --- frames --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScpFrame:
    type: MsgType
    seq: int
    payload: bytes
    mac: bytes

    @property
    def header(self) -> bytes:
        return HEADER.pack(VERSION, self.type, self.seq, len(self.payload))

    def encode(self) -> bytes:
        return self.header + self.payload + self.mac


def encode_frame(msg_type: MsgType, seq: int, payload: bytes, mac_key: bytes) -> bytes:
    header = HEADER.pack(VERSION, msg_type, seq, len(payload))
    return header + payload + hmac_sha256(mac_key, header + payload)


class FrameDecoder:
    """Splits a byte stream into frames. Checks only what the header alone can tell; keys come later."""

    def __init__(self, max_frame_payload: int) -> None:
        self._buf = bytearray()
        self._max = max_frame_payload

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_frame(self) -> ScpFrame | None:
        buf = self._buf
        if len(buf) < HEADER_LEN:
            return None
        version, msg_type, seq, length = HEADER.unpack_from(buf)
        if version != VERSION:
            raise ScpVersionError(f"frame has protocol version {version}; this side speaks {VERSION}")
        if msg_type not in _TYPES:
            raise ScpTypeError(f"frame has unknown message type 0x{msg_type:02x}")
        if length > self._max:
            raise ScpSizeError(f"{MsgType(msg_type).name} frame declares a {length}-byte payload; "
                               f"the limit is {self._max}")
        end = HEADER_LEN + length + MAC_LEN
        if len(buf) < end:
            return None
        frame = ScpFrame(MsgType(msg_type), seq, bytes(buf[HEADER_LEN:end - MAC_LEN]),
                      bytes(buf[end - MAC_LEN:end]))
        del buf[:end]
        return frame


_TYPES = frozenset(int(t) for t in MsgType)


# --- keys and sequence numbers -------------------------------------------------------------------


class _Epoch:
    """One direction's keys between two key updates, with what they have protected so far."""

    __slots__ = ("secret", "aead", "mac_key", "iv", "started", "bytes")

    def __init__(self, secret: bytes, started: float) -> None:
        self.secret = secret
        self.aead = AesGcm(hkdf_expand(secret, b"scp/1 key", 32))
        self.mac_key = hkdf_expand(secret, b"scp/1 mac", 32)
        self.iv = int.from_bytes(hkdf_expand(secret, b"scp/1 iv", 12), "big")
        self.started = started
        self.bytes = 0

    def nonce(self, seq: int) -> bytes:
        # TLS 1.3's construction: unique per (key, sequence number) because the sequence never repeats.
        return (self.iv ^ seq).to_bytes(12, "big")

    def next(self, now: float) -> _Epoch:
        return _Epoch(hkdf_expand(self.secret, b"scp/1 key update", 32), now)


class _Outbound:
    def __init__(self) -> None:
        self.seq = 0
        self.epoch: _Epoch | None = None

    def frame(self, msg_type: MsgType, plaintext: bytes, clear: bytes = b"") -> bytes:
        """Seal `plaintext` (after an optional cleartext prefix) into the next frame."""
        seq = self.seq
        if seq >= SEQ_LIMIT:
            raise ScpSequenceExhausted("all 2**64 sequence numbers are used; the connection must end")
        epoch = self.epoch
        header = HEADER.pack(VERSION, msg_type, seq, len(clear) + len(plaintext) + TAG_LEN)
        payload = clear + epoch.aead.seal(epoch.nonce(seq), plaintext, header + clear)
        self.seq = seq + 1
        epoch.bytes += len(payload)
        return header + payload + hmac_sha256(epoch.mac_key, header + payload)


class _Inbound:
    def __init__(self) -> None:
        self.expected = 0
        self.epoch: _Epoch | None = None

    def open(self, frame: ScpFrame, clear_len: int = 0) -> bytes:
        """HMAC first (so a genuine old frame is told apart from a forged one), then order, then AEAD."""
        epoch = self.epoch
        header = frame.header
        hmac_check(epoch.mac_key, header + frame.payload, frame.mac)
        if frame.seq < self.expected:
            raise ScpReplayError(f"{frame.type.name} frame #{frame.seq} was already received "
                                 f"(next expected is #{self.expected}): replay")
        if frame.seq > self.expected:
            raise ScpOrderError(f"{frame.type.name} frame #{frame.seq} arrived while #{self.expected} "
                                "was expected: frames were dropped or reordered")
        clear = frame.payload[:clear_len]
        plaintext = epoch.aead.open(epoch.nonce(frame.seq), frame.payload[clear_len:], header + clear)
        self.expected += 1
        epoch.bytes += len(frame.payload)
        return plaintext


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HandshakeComplete:
    peer: PeerIdentity


@dataclass(frozen=True)
class MessageReceived:
    data: bytes


@dataclass(frozen=True)
class Acknowledged:
    seq: int


@dataclass(frozen=True)
class PeerClosed:
    """The peer sent CLOSE (already acknowledged). `code` is CLOSE_OK or the peer's error code."""

    code: str


@dataclass(frozen=True)
class CloseAcknowledged:
    """The peer acknowledged our CLOSE: the connection ended cleanly."""


Event = HandshakeComplete | MessageReceived | Acknowledged | PeerClosed | CloseAcknowledged


# --- identities in the handshake ------------------------------------------------------------------


def encode_identity(identity: Identity) -> bytes:
    """compressed secp256k1 key (33) ‖ DID length (2) ‖ DID (UTF-8)."""
    did = identity.did.encode()
    if len(did) > MAX_DID_BYTES:
        raise ScpConfigError(f"DID is {len(did)} bytes; SCP carries at most {MAX_DID_BYTES}")
    return identity.key.public_key.compressed + len(did).to_bytes(2, "big") + did


def _parse_identity(body: bytes) -> tuple[str, PublicKey, bytes, bytes]:
    """(did, public key, signature, identity block) from identity block ‖ 64-byte signature."""
    if len(body) < 33 + 2 + 64:
        raise ScpHandshakeError(f"identity proof is {len(body)} bytes, too short")
    end = 35 + int.from_bytes(body[33:35], "big")
    if len(body) != end + 64 or end - 35 > MAX_DID_BYTES:
        raise ScpHandshakeError("identity proof length does not match its DID length field")
    try:
        public_key = PublicKey.from_bytes(body[:33])
        did = body[35:end].decode("utf-8")
    except (InvalidKey, UnicodeDecodeError) as exc:
        raise ScpHandshakeError("identity proof holds an invalid key or a non-UTF-8 DID") from exc
    if not DID_RE.match(did):
        raise ScpHandshakeError(f"identity proof names {did[:80]!r}, not a did:sopcos identifier")
    return did, public_key, body[end:], body[:end]


# --- sessions (SIP-017 KEY_EXCHANGE) in the handshake -----------------------------------------------


def encode_init(e_c: bytes, session_id: bytes | None) -> bytes:
    """HANDSHAKE_INIT payload: e_c, or e_c ‖ session id length (1) ‖ session id."""
    if session_id is None:
        return e_c
    return e_c + bytes([len(session_id)]) + session_id


def _parse_init(payload: bytes) -> tuple[bytes, bytes | None]:
    if len(payload) == X25519_LEN:
        return payload, None
    if not (len(payload) > X25519_LEN + 1 and 1 <= payload[X25519_LEN] <= MAX_SESSION_ID
            and len(payload) == X25519_LEN + 1 + payload[X25519_LEN]):
        raise ScpHandshakeError(f"HANDSHAKE_INIT carries {len(payload)} bytes: not a {X25519_LEN}-byte "
                                "X25519 key, optionally followed by a session id "
                                f"(length 1..{MAX_SESSION_ID})")
    return payload[:X25519_LEN], payload[X25519_LEN + 1:]


def check_session_settings(role: Role, session: SessionKey | None, session_lookup: SessionLookup | None,
                           require_session: bool) -> None:
    if role is Role.CLIENT and (session_lookup is not None or require_session):
        raise ScpConfigError("session_lookup and require_session are server settings")
    if role is Role.SERVER and session is not None:
        raise ScpConfigError("a server finds the client's session through session_lookup, not `session`")
    if require_session and session_lookup is None:
        raise ScpConfigError("require_session needs a session_lookup")


def _counterpart(session: SessionKey, own_did: str) -> str:
    """The DID the session was agreed with, seen from `own_did`; this end must be one of its two parties."""
    if own_did == session.initiator:
        return session.responder
    if own_did == session.responder:
        return session.initiator
    raise ScpSessionError(f"session {session.session_id.hex()} was agreed between {session.initiator!r} "
                          f"and {session.responder!r}, not by {own_did!r}")


# --- the state machine ---------------------------------------------------------------------------


class ScpProtocol:
    """One end of one SCP connection, with no I/O.

    Feed received bytes with `receive_data`, then call `next_event` until it returns None; send what
    `data_to_send` returns. Call `handle_timeout` once `deadline()` has passed. Any ScpError raised
    leaves the machine CLOSED, with a CLOSE frame carrying the error code queued when keys allow.

    A client may name a pre-agreed `session` (SIP-017 KEY_EXCHANGE); a server finds it with
    `session_lookup` and, with `require_session`, admits no client that names none.
    """

    def __init__(self, role: Role, identity: Identity, verify_peer: PeerVerifier, *,
                 config: ScpConfig | None = None, clock: Callable[[], float] = time.monotonic,
                 randbytes: Callable[[int], bytes] = secrets.token_bytes,
                 session: SessionKey | None = None, session_lookup: SessionLookup | None = None,
                 require_session: bool = False) -> None:
        check_session_settings(role, session, session_lookup, require_session)
        self.role = role
        self.config = config or ScpConfig()
        self.state = State.IDLE if role is Role.CLIENT else State.WAIT_INIT
        self.peer: PeerIdentity | None = None
        self.error: ScpError | None = None
        self._identity = identity
        self._verify_peer = verify_peer
        self._clock = clock
        self._randbytes = randbytes
        self._decoder = FrameDecoder(self.config.max_frame_payload)
        self._out = _Outbound()
        self._in = _Inbound()
        self._send_buf = bytearray()
        self._events: deque[Event] = deque()
        self._outstanding: deque[int] = deque()  # our DATA/CLOSE sequence numbers awaiting ACK
        self._close_seq: int | None = None
        self._fragments: list[bytes] = []
        self._fragment_bytes = 0
        self._transcript = hashlib.sha256()
        self._ephemeral: X25519PrivateKey | None = None
        self._prk: bytes | None = None
        self._started = self._last_rx = clock()
        self.session_id: bytes | None = None  # the KEY_EXCHANGE session this handshake runs under
        self._session_lookup = session_lookup
        self._require_session = require_session
        self._psk: bytes | None = None
        self._session_peer: str | None = None
        if session is not None:
            if not 1 <= len(session.session_id) <= MAX_SESSION_ID:
                raise ScpConfigError(f"session id must be 1..{MAX_SESSION_ID} bytes")
            self._use_session(session)

    # --- outputs

    def data_to_send(self) -> bytes:
        data = bytes(self._send_buf)
        self._send_buf.clear()
        return data

    @property
    def unacked(self) -> int:
        return len(self._outstanding)

    def deadline(self) -> float | None:
        """When `handle_timeout` must next be called (clock units), or None."""
        if self.state in _HANDSHAKING:
            return self._started + self.config.handshake_timeout
        if self.state in (State.ESTABLISHED, State.CLOSING):
            return self._last_rx + self.config.idle_timeout
        return None

    # --- inputs

    def initiate(self) -> None:
        """Client: queue HANDSHAKE_INIT."""
        if self.role is not Role.CLIENT or self.state is not State.IDLE:
            raise ScpStateError("only a new client connection can start a handshake")
        self._ephemeral, e_c = x25519_keypair(self._randbytes)
        init = encode_frame(MsgType.HANDSHAKE_INIT, 0, encode_init(e_c, self.session_id), INIT_CHECKSUM_KEY)
        self._transcript.update(init)
        self._out.seq = 1
        self._send_buf += init
        self._started = self._last_rx = self._clock()
        self.state = State.WAIT_RESPONSE

    def receive_data(self, data: bytes) -> None:
        if self.state is not State.CLOSED:
            self._decoder.feed(data)

    def next_event(self) -> Event | None:
        while not self._events:
            if self.state is State.CLOSED:
                return None
            try:
                frame = self._decoder.next_frame()
                if frame is None:
                    return None
                self._last_rx = self._clock()
                self._dispatch(frame)
            except ScpError as exc:
                self._fail(exc)
                raise
        return self._events.popleft()

    def send_message(self, data: bytes) -> None:
        """Queue one application message, split into DATA frames of at most `max_frame_payload`."""
        if self.state is not State.ESTABLISHED:
            if self.state in (State.CLOSING, State.CLOSED):
                raise ScpConnectionClosed("the connection is closed; nothing more can be sent")
            raise ScpStateError("the handshake is not complete; nothing can be sent yet")
        if len(data) > self.config.max_message:
            raise ScpSizeError(f"message of {len(data)} bytes exceeds max_message {self.config.max_message}")
        step = self.config.fragment_size
        pieces = [data[i:i + step] for i in range(0, len(data), step)] or [b""]
        last = len(pieces) - 1
        try:
            for i, piece in enumerate(pieces):
                self._seal(MsgType.DATA, bytes([Inner.FINAL if i == last else Inner.MORE]) + piece, True)
        except ScpError as exc:
            self._fail(exc)
            raise

    def close(self, code: str = CLOSE_OK) -> None:
        """Queue CLOSE; the connection is CLOSED once the peer's ACK arrives (CloseAcknowledged)."""
        if self.state is State.ESTABLISHED:
            try:
                self._close_seq = self._seal(MsgType.CLOSE, code.encode(), True)
            except ScpError as exc:
                self._fail(exc)
                raise
            self.state = State.CLOSING
        elif self.state is not State.CLOSING:
            self.state = State.CLOSED

    def handle_timeout(self) -> None:
        """Raise ScpIdleTimeout/ScpHandshakeTimeout (queueing CLOSE) if the deadline has passed."""
        deadline = self.deadline()
        if deadline is None or self._clock() < deadline:
            return
        if self.state in _HANDSHAKING:
            exc: ScpError = ScpHandshakeTimeout(
                f"handshake not complete after {self.config.handshake_timeout:g} s ({self.state.value})")
        else:
            exc = ScpIdleTimeout(f"no frame from the peer for {self.config.idle_timeout:g} s")
        self._fail(exc)
        raise exc

    def connection_lost(self) -> None:
        """The transport ended. Raises unless the connection had already closed cleanly."""
        if self.state is State.CLOSED:
            return
        if self._decoder.buffered:
            exc: ScpError = ScpTruncatedError(
                f"connection ended {self._decoder.buffered} bytes into a frame")
        else:
            hint = _SESSION_HINTS.get(self.state) if self.session_id is not None else None
            exc = ScpIOError(f"peer ended the TCP connection without CLOSE ({self.state.value})"
                             + (f"; {hint}" if hint else ""))
        self._fail(exc)
        raise exc

    # --- internals

    def _fail(self, exc: ScpError) -> None:
        if self.state is State.CLOSED:
            return
        if self._out.epoch is not None and self._out.seq < SEQ_LIMIT:
            # Tell the peer why, authenticated, so its operator sees a code instead of a reset.
            self._send_buf += self._out.frame(MsgType.CLOSE, exc.code.encode())
        self.state = State.CLOSED
        self.error = exc

    def _dispatch(self, frame: ScpFrame) -> None:
        handler = _HANDLERS.get((self.state, frame.type))
        if handler is None:
            raise ScpStateError(f"{frame.type.name} frame is not allowed while {self.state.value}")
        handler(self, frame)

    def _seal(self, msg_type: MsgType, plaintext: bytes, tracked: bool) -> int:
        """Queue an application-key frame (rotating keys first if due); returns its sequence number."""
        self._rekey_if_due()
        seq = self._out.seq
        self._send_buf += self._out.frame(msg_type, plaintext)
        if tracked:
            self._outstanding.append(seq)
        return seq

    def _rekey_if_due(self) -> None:
        epoch, now = self._out.epoch, self._clock()
        if (epoch.bytes >= self.config.rekey_after_bytes
                or now - epoch.started >= self.config.rekey_after_seconds):
            seq = self._out.seq
            self._send_buf += self._out.frame(MsgType.DATA, bytes([Inner.KEY_UPDATE]))
            self._outstanding.append(seq)
            self._out.epoch = epoch.next(now)

    def _open_app(self, frame: ScpFrame) -> bytes:
        epoch, cfg = self._in.epoch, self.config
        if self._clock() - epoch.started > cfg.rekey_after_seconds + cfg.rekey_grace_seconds:
            raise ScpRekeyError(f"peer has used one key for over {cfg.rekey_after_seconds:g} s "
                                "without a key update")
        plaintext = self._in.open(frame)
        if epoch.bytes > cfg.rekey_after_bytes + cfg.max_frame_payload + 1 + TAG_LEN:
            raise ScpRekeyError(f"peer sent over {cfg.rekey_after_bytes} bytes under one key "
                                "without a key update")
        return plaintext

    # handshake

    def _use_session(self, session: SessionKey) -> None:
        if len(session.key) != PSK_LEN:
            raise ScpSessionError(f"session {session.session_id.hex()} has a {len(session.key)}-byte key, "
                                  f"not {PSK_LEN}")
        self._session_peer = _counterpart(session, self._identity.did)
        self.session_id, self._psk = session.session_id, session.key

    def _take_session(self, session_id: bytes | None) -> None:
        """Server: take the session the client named, once, through the injected lookup."""
        if session_id is None:
            if self._require_session:
                raise ScpSessionError("client named no KEY_EXCHANGE session; this server admits only "
                                      "connections under one (require_session)")
            return
        if self._session_lookup is None:
            raise ScpSessionError(f"client named session {session_id.hex()}; this server takes no "
                                  "KEY_EXCHANGE sessions")
        try:
            session = self._session_lookup(session_id)
        except Exception as exc:  # a lookup that breaks admits nobody (fail closed)
            code = exc.code if isinstance(exc, AxonError) else type(exc).__name__
            raise ScpSessionError(f"lookup of session {session_id.hex()} failed: {code}") from exc
        if session is None:
            raise ScpSessionError(f"session {session_id.hex()} is unknown, expired or already used")
        self._use_session(session)

    def _check_session_peer(self) -> None:
        """The proven peer must be the party the session was agreed with (checked after its signature)."""
        if self._session_peer is not None and self.peer.did != self._session_peer:
            raise ScpSessionError(f"session {self.session_id.hex()} was agreed with {self._session_peer!r}, "
                                  f"but the peer proved {self.peer.did!r}")

    def _handshake_secrets(self, shared: bytes) -> tuple[bytes, bytes]:
        salt = PROTOCOL_SALT
        if self._psk is not None:
            # TLS 1.3 PSK-(EC)DHE: Extract(Derive(Extract(psk)), DH), so the keys need both secrets.
            salt = hkdf_expand(hkdf_extract(PROTOCOL_SALT, self._psk), b"scp/1 psk salt", 32)
            self._psk = None
        self._prk = hkdf_extract(salt, shared)
        th = self._transcript.copy().digest()
        return (hkdf_expand(self._prk, b"scp/1 c hs " + th, 32),
                hkdf_expand(self._prk, b"scp/1 s hs " + th, 32))

    def _signed_identity(self, context: bytes) -> bytes:
        block = encode_identity(self._identity)
        self._transcript.update(block)
        signature = self._identity.key.sign(sha256(context + self._transcript.copy().digest()))
        self._transcript.update(signature)
        return block + signature

    def _absorb_identity(self, body: bytes, context: bytes) -> tuple[str, PublicKey, bytes, bytes]:
        """Parse the peer's identity proof into the transcript; returns (did, key, signature, digest)."""
        did, public_key, signature, block = _parse_identity(body)
        self._transcript.update(block)
        digest = sha256(context + self._transcript.copy().digest())
        self._transcript.update(signature)
        return did, public_key, signature, digest

    def _authenticate(self, did: str, public_key: PublicKey, signature: bytes, digest: bytes) -> None:
        if not public_key.verify(signature, digest):
            raise ScpAuthError(f"transcript signature of {did!r} does not verify: "
                               "the peer does not hold the key it presented")
        try:
            self.peer = self._verify_peer(did, public_key)
        except ScpPeerRejected:
            raise
        except Exception as exc:  # a verifier that breaks admits nobody (fail closed)
            code = exc.code if isinstance(exc, AxonError) else type(exc).__name__
            raise ScpPeerRejected(f"peer verifier failed for {did!r}: {code}") from exc

    def _enter_established(self) -> None:
        th = self._transcript.digest()
        c2s = hkdf_expand(self._prk, b"scp/1 c ap " + th, 32)
        s2c = hkdf_expand(self._prk, b"scp/1 s ap " + th, 32)
        mine, theirs = (c2s, s2c) if self.role is Role.CLIENT else (s2c, c2s)
        now = self._clock()
        self._out.epoch, self._in.epoch = _Epoch(mine, now), _Epoch(theirs, now)
        self._prk = self._transcript = None
        self.state = State.ESTABLISHED

    def _on_init(self, frame: ScpFrame) -> None:
        hmac_check(INIT_CHECKSUM_KEY, frame.header + frame.payload, frame.mac)
        if frame.seq != 0:
            raise ScpOrderError(f"HANDSHAKE_INIT must be frame #0, got #{frame.seq}")
        e_c, session_id = _parse_init(frame.payload)
        private, e_s = x25519_keypair(self._randbytes)
        shared = x25519_shared(private, e_c)
        self._take_session(session_id)  # after the checks, so a malformed INIT does not use a session up
        self._transcript.update(frame.encode())
        self._transcript.update(e_s)
        hs_c2s, hs_s2c = self._handshake_secrets(shared)
        now = self._clock()
        self._in.expected, self._in.epoch = 1, _Epoch(hs_c2s, now)
        self._out.epoch = _Epoch(hs_s2c, now)
        body = self._signed_identity(SERVER_SIG_CONTEXT)
        self._send_buf += self._out.frame(MsgType.HANDSHAKE_RESPONSE, body, clear=e_s)
        # The client switches to application keys after its ACK: until ours exist, send nothing.
        self._out.epoch = None
        self.state = State.WAIT_FINISH

    def _on_response(self, frame: ScpFrame) -> None:
        if len(frame.payload) < X25519_LEN + TAG_LEN:
            raise ScpHandshakeError(f"HANDSHAKE_RESPONSE of {len(frame.payload)} bytes is too short")
        e_s = frame.payload[:X25519_LEN]
        shared = x25519_shared(self._ephemeral, e_s)
        self._ephemeral = None
        self._transcript.update(e_s)
        hs_c2s, hs_s2c = self._handshake_secrets(shared)
        now = self._clock()
        self._in.epoch = _Epoch(hs_s2c, now)
        try:
            body = self._in.open(frame, clear_len=X25519_LEN)
        except ScpHmacError as exc:
            if self.session_id is None:
                raise
            raise ScpSessionError(f"HANDSHAKE_RESPONSE does not authenticate under session "
                                  f"{self.session_id.hex()}: the server holds a different key for it, "
                                  "or the frame was altered") from exc
        self._out.epoch = _Epoch(hs_c2s, now)  # from here a rejection reaches the server as CLOSE
        self._authenticate(*self._absorb_identity(body, SERVER_SIG_CONTEXT))
        self._check_session_peer()
        self._send_buf += self._out.frame(MsgType.ACK, self._signed_identity(CLIENT_SIG_CONTEXT))
        self._enter_established()
        self._events.append(HandshakeComplete(self.peer))

    def _on_finish(self, frame: ScpFrame) -> None:
        proof = self._absorb_identity(self._in.open(frame), CLIENT_SIG_CONTEXT)
        self._enter_established()  # keys first, so a rejection below goes out as an authenticated CLOSE
        self._authenticate(*proof)
        self._check_session_peer()
        self._events.append(HandshakeComplete(self.peer))

    # data phase

    def _on_data(self, frame: ScpFrame) -> None:
        plaintext = self._open_app(frame)
        if not plaintext:
            raise ScpFrameError(f"DATA frame #{frame.seq} has no inner type byte")
        kind, body = plaintext[0], plaintext[1:]
        if kind == Inner.KEY_UPDATE:
            if body:
                raise ScpFrameError(f"KEY_UPDATE in DATA frame #{frame.seq} carries {len(body)} stray bytes")
            self._in.epoch = self._in.epoch.next(self._clock())
        elif kind in (Inner.FINAL, Inner.MORE):
            self._fragment_bytes += len(body)
            if self._fragment_bytes > self.config.max_message:
                raise ScpSizeError(f"incoming message exceeds max_message {self.config.max_message}")
            self._fragments.append(body)
            if kind == Inner.FINAL:
                self._events.append(MessageReceived(b"".join(self._fragments)))
                self._fragments, self._fragment_bytes = [], 0
        else:
            raise ScpFrameError(f"DATA frame #{frame.seq} has unknown inner type 0x{kind:02x}")
        self._seal(MsgType.ACK, frame.seq.to_bytes(8, "big"), False)

    def _on_ack(self, frame: ScpFrame) -> None:
        plaintext = self._open_app(frame)
        if len(plaintext) != 8:
            raise ScpFrameError(f"ACK frame #{frame.seq} carries {len(plaintext)} bytes, not 8")
        acked = int.from_bytes(plaintext, "big")
        if not self._outstanding or acked != self._outstanding[0]:
            oldest = f"#{self._outstanding[0]}" if self._outstanding else "nothing"
            raise ScpAckError(f"ACK names frame #{acked}, but {oldest} awaits acknowledgement")
        self._outstanding.popleft()
        if acked == self._close_seq:
            self.state = State.CLOSED
            self._events.append(CloseAcknowledged())
        else:
            self._events.append(Acknowledged(acked))

    def _on_close(self, frame: ScpFrame) -> None:
        plaintext = self._open_app(frame)
        if not _CLOSE_CODE.match(plaintext):
            raise ScpFrameError(f"CLOSE frame #{frame.seq} does not carry an SCP code")
        if self.state is not State.WAIT_FINISH:
            self._seal(MsgType.ACK, frame.seq.to_bytes(8, "big"), False)
        self.state = State.CLOSED
        self._events.append(PeerClosed(plaintext.decode()))


_HANDLERS: dict[tuple[State, MsgType], Callable[[ScpProtocol, ScpFrame], None]] = {
    (State.WAIT_INIT, MsgType.HANDSHAKE_INIT): ScpProtocol._on_init,
    (State.WAIT_RESPONSE, MsgType.HANDSHAKE_RESPONSE): ScpProtocol._on_response,
    (State.WAIT_FINISH, MsgType.ACK): ScpProtocol._on_finish,
    (State.WAIT_FINISH, MsgType.CLOSE): ScpProtocol._on_close,
    **{(s, MsgType.DATA): ScpProtocol._on_data for s in (State.ESTABLISHED, State.CLOSING)},
    **{(s, MsgType.ACK): ScpProtocol._on_ack for s in (State.ESTABLISHED, State.CLOSING)},
    **{(s, MsgType.CLOSE): ScpProtocol._on_close for s in (State.ESTABLISHED, State.CLOSING)},
}
