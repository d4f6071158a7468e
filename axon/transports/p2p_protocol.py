"""The framed P2P channel of seed 004, as pure framing/crypto state (no I/O).

Frame, entirely encrypted with AES-256-CTR:
    header (16) ‖ payload (LENGTH) ‖ MAC (8)
    header = LENGTH (4) ‖ CODE (4) ‖ SEQ (4) ‖ CHECKSUM (4), big-endian, CHECKSUM = LENGTH ^ CODE ^ SEQ
    MAC    = first 8 bytes of SHA-256 over header ‖ payload of this frame and of every earlier frame in
             the same direction (one SHA-256 state carried across frames, read out through a copy)
Sequence numbers are 32-bit, start at 1 and wrap (0xFFFFFFFF is followed by 0).

The 96-byte shared secret is split in a "top" half (bytes 0..47) and a "bottom" half (48..95); each
half is an AES-256 key (32) ‖ initial counter block (16). A party encrypts with its own half and
decrypts with the other, so the two directions never share a keystream. Each direction is one
continuous CTR keystream: a frame uses exactly as many keystream bytes as it is long and the next
frame starts where it ended (mid-block when it must); nothing is padded on the wire.

Because the header decrypts on its own, a receiver learns LENGTH after 16 bytes and can refuse an
oversized frame before reading it. What this construction does not protect against is written down in
docs/transports.md ("P2P: honest limits"); new designs should use SCP.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from axon.errors import AxonError

SECRET_LEN = 96
HALF_LEN = 48
KEY_LEN = 32
BLOCK = 16
HEADER = struct.Struct(">IIII")
HEADER_LEN = HEADER.size  # 16
MAC_LEN = 8
U32 = 0xFFFFFFFF
FIRST_SEQ = 1


class P2pError(AxonError):
    """Root of every P2P channel error. `data` holds the verified bytes gathered before it happened."""

    code = "P2P-E"

    def __init__(self, message: str, *, data: bytes = b"", code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.data = data


class P2pUsageError(P2pError):
    code = "P2P-E-USAGE"


class P2pChecksumError(P2pError):
    code = "P2P-E-CHECKSUM"


class P2pSequenceError(P2pError):
    code = "P2P-E-SEQUENCE"


class P2pSizeError(P2pError):
    code = "P2P-E-SIZE"


class P2pMacError(P2pError):
    code = "P2P-E-MAC"


class P2pBrokenError(P2pError):
    """An earlier integrity failure left the stream out of step; the channel cannot be used again."""

    code = "P2P-E-BROKEN"


class P2pBufferTooSmall(P2pError):
    """The next frame is longer than the bytes asked for; `needed` is its payload length."""

    code = "P2P-E-BUFFER"

    def __init__(self, needed: int, requested: int) -> None:
        super().__init__(f"next frame carries {needed} bytes but only {requested} were asked for; "
                         f"receive at least {needed}")
        self.needed = needed


class P2pPeerSlow(P2pError):
    code = "P2P-E-SLOW"


class P2pTruncated(P2pError):
    code = "P2P-E-TRUNCATED"


class P2pClosed(P2pError):
    code = "P2P-E-CLOSED"


class P2pIOError(P2pError):
    code = "P2P-E-IO"


class Half(Enum):
    TOP = "top"
    BOTTOM = "bottom"


@dataclass(frozen=True)
class P2pConfig:
    """Every P2P limit in one place."""

    frame_payload: int = 1 << 16  # bytes per frame when send() splits a payload
    max_frame_payload: int = 1 << 20  # the longest frame a receiver accepts (seed allows 2**32-1)
    recv_timeout: float = 30.0  # the "pre-defined timeout" after which receive reports a slow peer

    def __post_init__(self) -> None:
        if not 1 <= self.frame_payload <= U32 or not 1 <= self.max_frame_payload <= U32:
            raise P2pUsageError("frame_payload and max_frame_payload must be 1..2**32-1")
        if not self.recv_timeout > 0:
            raise P2pUsageError("recv_timeout must be positive")


def aes256_ctr(key: bytes, initial_counter: bytes, data: bytes, offset: int = 0) -> bytes:
    """XOR `data` with the AES-256-CTR keystream starting `offset` bytes into the stream.

    The counter block is a 128-bit big-endian integer incremented per block (NIST SP 800-38A §B.1
    with the whole block as counter), which is what OpenSSL does.
    """
    if len(key) != KEY_LEN or len(initial_counter) != BLOCK or offset < 0:
        raise P2pUsageError("AES-256-CTR takes a 32-byte key, a 16-byte counter block and offset >= 0")
    block, skip = divmod(offset, BLOCK)
    counter = ((int.from_bytes(initial_counter, "big") + block) % (1 << 128)).to_bytes(BLOCK, "big")
    encryptor = Cipher(algorithms.AES(key), modes.CTR(counter)).encryptor()
    if skip:
        encryptor.update(bytes(skip))
    return encryptor.update(data)


def split_secret(secret: bytes, half: Half) -> tuple[bytes, bytes]:
    """(the half this party encrypts with, the half it decrypts with)."""
    if len(secret) != SECRET_LEN:
        raise P2pUsageError(f"shared secret must be {SECRET_LEN} bytes (two halves of key ‖ counter), "
                            f"got {len(secret)}")
    top, bottom = secret[:HALF_LEN], secret[HALF_LEN:]
    return (top, bottom) if half is Half.TOP else (bottom, top)


@dataclass(frozen=True)
class Header:
    length: int
    code: int
    seq: int

    def pack(self) -> bytes:
        return HEADER.pack(self.length, self.code, self.seq, self.length ^ self.code ^ self.seq)


@dataclass(frozen=True)
class ChannelFrame:
    code: int
    seq: int
    payload: bytes


class _Direction:
    """One direction's stream state: keystream position, next sequence number, running SHA-256."""

    __slots__ = ("key", "counter", "position", "seq", "hash")

    def __init__(self, half: bytes) -> None:
        self.key, self.counter = half[:KEY_LEN], half[KEY_LEN:]
        self.position = 0
        self.seq = FIRST_SEQ
        self.hash = hashlib.sha256()

    def crypt(self, data: bytes, offset: int = 0) -> bytes:
        return aes256_ctr(self.key, self.counter, data, self.position + offset)


class FrameWriter:
    """Encrypts outgoing frames for one party."""

    def __init__(self, half: bytes) -> None:
        self._dir = _Direction(half)

    def frame(self, payload: bytes, code: int = 0) -> bytes:
        if not 0 <= code <= U32:
            raise P2pUsageError(f"frame code {code} is not a 32-bit unsigned integer")
        if len(payload) > U32:
            raise P2pUsageError("a frame carries at most 2**32-1 bytes")
        d = self._dir
        header = Header(len(payload), code, d.seq).pack()
        d.hash.update(header)
        d.hash.update(payload)
        ciphertext = d.crypt(header + payload + d.hash.copy().digest()[:MAC_LEN])
        d.position += len(ciphertext)
        d.seq = (d.seq + 1) & U32
        return ciphertext

    def frames(self, data: bytes, code: int = 0, frame_payload: int = 1 << 16) -> bytes:
        """`data` split into frames of at most `frame_payload` bytes (one empty frame for empty data)."""
        view = memoryview(data)
        pieces = [view[i:i + frame_payload] for i in range(0, len(data), frame_payload)] or [view]
        return b"".join(self.frame(bytes(p), code) for p in pieces)


class FrameReader:
    """Decrypts and verifies incoming frames for one party, in two steps as the seed allows.

    `header(first16)` decrypts and checks a header without changing any state, so a caller can decide
    not to take the frame yet; `body(header, rest)` verifies the MAC and only then advances the
    keystream, sequence number and hash. After any integrity failure the reader refuses further use.
    """

    def __init__(self, half: bytes, max_frame_payload: int) -> None:
        self._dir = _Direction(half)
        self._max = max_frame_payload
        self._failed: P2pError | None = None

    @property
    def expected_seq(self) -> int:
        return self._dir.seq

    def header(self, encrypted: bytes) -> Header:
        self.ensure_usable()
        if len(encrypted) != HEADER_LEN:
            raise P2pUsageError(f"a header is {HEADER_LEN} bytes, got {len(encrypted)}")
        length, code, seq, checksum = HEADER.unpack(self._dir.crypt(encrypted))
        if checksum != length ^ code ^ seq:
            self._fail(P2pChecksumError(f"header checksum of frame #{self._dir.seq} does not match: "
                                        "wrong key or corrupted stream"))
        if seq != self._dir.seq:
            self._fail(P2pSequenceError(f"frame carries sequence {seq}, {self._dir.seq} expected: "
                                        "frames dropped, replayed or reordered"))
        if length > self._max:
            self._fail(P2pSizeError(f"frame #{seq} declares {length} bytes; this receiver accepts at "
                                    f"most {self._max}"))
        return Header(length, code, seq)

    def body(self, header: Header, encrypted: bytes) -> ChannelFrame:
        """`encrypted` = the payload and MAC that follow the header (header.length + 8 bytes)."""
        self.ensure_usable()
        if len(encrypted) != header.length + MAC_LEN:
            raise P2pUsageError(f"frame body is {header.length + MAC_LEN} bytes, got {len(encrypted)}")
        d = self._dir
        if header.seq != d.seq:
            raise P2pUsageError("body() must follow header() of the same frame")
        plain = d.crypt(encrypted, HEADER_LEN)
        payload, mac = plain[:header.length], plain[header.length:]
        running = d.hash.copy()
        running.update(header.pack())
        running.update(payload)
        if not hmac.compare_digest(running.copy().digest()[:MAC_LEN], mac):
            self._fail(P2pMacError(f"MAC of frame #{header.seq} does not match: the frame or an "
                                   "earlier one was altered"))
        d.hash = running
        d.position += HEADER_LEN + len(encrypted)
        d.seq = (d.seq + 1) & U32
        return ChannelFrame(header.code, header.seq, payload)

    def ensure_usable(self) -> None:
        if self._failed is not None:
            raise P2pBrokenError(f"channel unusable after an earlier {self._failed.code}")

    def _fail(self, exc: P2pError) -> None:
        self._failed = exc
        raise exc


class ChannelSession:
    """Both directions of one party: `writer` encrypts with its half, `reader` decrypts the other."""

    def __init__(self, secret: bytes, half: Half | str, config: P2pConfig | None = None) -> None:
        try:
            half = Half(half)
        except ValueError as exc:
            raise P2pUsageError(f"half must be 'top' or 'bottom', got {half!r}") from exc
        self.config = config or P2pConfig()
        mine, theirs = split_secret(secret, half)
        self.writer = FrameWriter(mine)
        self.reader = FrameReader(theirs, self.config.max_frame_payload)
