"""Seed 004's framed P2P channel without I/O: AES-256-CTR (NIST vectors), frame layout against an
independent encoding written from the seed text, running MAC, halves, sequence wrap, tampering, fuzz."""

from __future__ import annotations

import hashlib
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.transports.p2p_protocol import (
    HEADER_LEN,
    MAC_LEN,
    ChannelSession,
    FrameReader,
    FrameWriter,
    Header,
    P2pBrokenError,
    P2pChecksumError,
    P2pConfig,
    P2pError,
    P2pMacError,
    P2pSequenceError,
    P2pSizeError,
    P2pUsageError,
    aes256_ctr,
)

# NIST SP 800-38A (2001), Appendix F.5.5 CTR-AES256.Encrypt and F.5.6 CTR-AES256.Decrypt.
NIST_KEY = bytes.fromhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
NIST_COUNTER = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
NIST_PLAIN = [bytes.fromhex(h) for h in (
    "6bc1bee22e409f96e93d7e117393172a", "ae2d8a571e03ac9c9eb76fac45af8e51",
    "30c81c46a35ce411e5fbc1191a0a52ef", "f69f2445df4f9b17ad2b417be66c3710")]
NIST_CIPHER = [bytes.fromhex(h) for h in (
    "601ec313775789a5b7a7f504bbf3d228", "f443e3ca4d62b59aca84e990cacaf5c5",
    "2b0930daa23de94ce87017ba2d84988d", "dfc9c58db67aada613c2dd08457941a6")]


def test_nist_f55_ctr_aes256_encrypt() -> None:
    assert aes256_ctr(NIST_KEY, NIST_COUNTER, b"".join(NIST_PLAIN)) == b"".join(NIST_CIPHER)


def test_nist_f56_ctr_aes256_decrypt() -> None:
    assert aes256_ctr(NIST_KEY, NIST_COUNTER, b"".join(NIST_CIPHER)) == b"".join(NIST_PLAIN)


@pytest.mark.parametrize("block", range(4))
def test_nist_blocks_at_their_stream_offsets(block: int) -> None:
    """Each block decrypts alone at its offset: the counter for block i is init + i (F.5.5's input blocks)."""
    assert aes256_ctr(NIST_KEY, NIST_COUNTER, NIST_CIPHER[block], offset=16 * block) == NIST_PLAIN[block]


@pytest.mark.parametrize("offset", [1, 7, 15, 17, 31, 33, 50])
def test_mid_block_offsets_continue_the_same_stream(offset: int) -> None:
    stream = b"".join(NIST_CIPHER)
    assert aes256_ctr(NIST_KEY, NIST_COUNTER, stream[offset:], offset) == b"".join(NIST_PLAIN)[offset:]


def test_counter_carries_across_all_128_bits() -> None:
    top = b"\xff" * 16
    assert aes256_ctr(NIST_KEY, top, bytes(32))[16:] == aes256_ctr(NIST_KEY, bytes(16), bytes(16))


def test_ctr_refuses_bad_parameters() -> None:
    with pytest.raises(P2pUsageError):
        aes256_ctr(NIST_KEY[:16], NIST_COUNTER, b"x")
    with pytest.raises(P2pUsageError):
        aes256_ctr(NIST_KEY, NIST_COUNTER[:12], b"x")


# --- the frame, against an encoding written straight from the seed's text -----------------------

SECRET = bytes(range(96))


class SeedReference:
    """Seed 004 §2 done by hand: one CTR stream per direction, header ‖ payload ‖ MAC encrypted in order."""

    def __init__(self, half: bytes) -> None:
        self.stream = Cipher(algorithms.AES(half[:32]), modes.CTR(half[32:48])).encryptor()
        self.sha = hashlib.sha256()
        self.seq = 1

    def frame(self, payload: bytes, code: int) -> bytes:
        length = len(payload)
        header = struct.pack(">IIII", length, code, self.seq, length ^ code ^ self.seq)
        self.sha.update(header + payload)
        mac = self.sha.copy().digest()[:8]
        self.seq = (self.seq + 1) % 2**32
        return self.stream.update(header + payload + mac)


@pytest.mark.parametrize(("half", "secret_half"), [("top", SECRET[:48]), ("bottom", SECRET[48:])])
def test_frames_match_the_seed_reference(half: str, secret_half: bytes) -> None:
    session = ChannelSession(SECRET, half)
    reference = SeedReference(secret_half)
    for i, size in enumerate([0, 1, 15, 16, 17, 100, 4096, 3]):  # odd sizes: frames straddle blocks
        payload = bytes((i * 7 + j) % 256 for j in range(size))
        assert session.writer.frame(payload, code=0xC0DE0000 + i) == reference.frame(payload, 0xC0DE0000 + i)


def test_header_layout_and_checksum() -> None:
    header = Header(length=0x01020304, code=0xA0B0C0D0, seq=7).pack()
    assert header == bytes.fromhex("01020304" "a0b0c0d0" "00000007" "a1b2c3d3")  # big-endian, XOR checksum
    assert len(header) == HEADER_LEN and MAC_LEN == 8


def test_mac_runs_across_frames() -> None:
    writer, reader_half = FrameWriter(SECRET[:48]), SECRET[:48]
    wire = writer.frame(b"first", 1) + writer.frame(b"second", 2)
    plain = aes256_ctr(reader_half[:32], reader_half[32:], wire)
    h1 = Header(5, 1, 1).pack()
    h2 = Header(6, 2, 2).pack()
    assert plain[HEADER_LEN + 5:HEADER_LEN + 5 + 8] == hashlib.sha256(h1 + b"first").digest()[:8]
    assert plain[-8:] == hashlib.sha256(h1 + b"first" + h2 + b"second").digest()[:8]
    assert plain[-8:] != hashlib.sha256(h2 + b"second").digest()[:8]


def pair(config: P2pConfig | None = None) -> tuple[ChannelSession, ChannelSession]:
    return ChannelSession(SECRET, "top", config), ChannelSession(SECRET, "bottom", config)


def read_all(reader: FrameReader, wire: bytes) -> list[tuple[int, int, bytes]]:
    frames = []
    while wire:
        header = reader.header(wire[:HEADER_LEN])
        end = HEADER_LEN + header.length + MAC_LEN
        frame = reader.body(header, wire[HEADER_LEN:end])
        frames.append((frame.code, frame.seq, frame.payload))
        wire = wire[end:]
    return frames


def test_round_trip_both_directions() -> None:
    top, bottom = pair()
    assert read_all(bottom.reader, top.writer.frame(b"down", 1) + top.writer.frame(b"more", 2)) == [
        (1, 1, b"down"), (2, 2, b"more")]
    assert read_all(top.reader, bottom.writer.frame(b"up", 9)) == [(9, 1, b"up")]


def test_send_splits_into_frames() -> None:
    top, bottom = pair()
    data = bytes(range(256)) * 10
    frames = read_all(bottom.reader, top.writer.frames(data, code=3, frame_payload=1000))
    assert [(c, s, len(p)) for c, s, p in frames] == [(3, 1, 1000), (3, 2, 1000), (3, 3, 560)]
    assert b"".join(p for _, _, p in frames) == data
    assert read_all(bottom.reader, top.writer.frames(b"", 0)) == [(0, 4, b"")]


def test_halves_are_separate_keystreams() -> None:
    top, bottom = pair()
    assert top.writer.frame(b"same", 0) != bottom.writer.frame(b"same", 0)
    both_top = ChannelSession(SECRET, "top")
    with pytest.raises(P2pChecksumError):  # a peer on the wrong half cannot even read a header
        read_all(both_top.reader, ChannelSession(SECRET, "top").writer.frame(b"hello", 0))


def test_sequence_wraps_from_ffffffff_to_zero() -> None:
    top, bottom = pair()
    top.writer._dir.seq = bottom.reader._dir.seq = 0xFFFFFFFE
    wire = b"".join(top.writer.frame(b"%d" % i, 0) for i in range(4))
    assert [s for _, s, _ in read_all(bottom.reader, wire)] == [0xFFFFFFFE, 0xFFFFFFFF, 0, 1]


def test_sequence_mismatch_with_a_valid_checksum() -> None:
    top, bottom = pair()
    top.writer._dir.seq = 5  # same keystream position, wrong number
    with pytest.raises(P2pSequenceError):
        read_all(bottom.reader, top.writer.frame(b"x", 0))


@pytest.mark.parametrize(("offset", "error"), [
    (HEADER_LEN + 2, P2pMacError),  # payload
    (-1, P2pMacError),  # MAC
    (0, P2pChecksumError),  # length
    (5, P2pChecksumError),  # code
    (14, P2pChecksumError),  # checksum
])
def test_tampering_is_detected_and_breaks_the_channel(offset: int, error: type) -> None:
    top, bottom = pair()
    wire = bytearray(top.writer.frame(b"close breaker 4", 0x10))
    wire[offset] ^= 0x20
    with pytest.raises(error):
        read_all(bottom.reader, bytes(wire))
    with pytest.raises(P2pBrokenError):
        bottom.reader.header(bytes(16))


def test_replay_and_reorder_are_detected() -> None:
    top, bottom = pair()
    first, second = top.writer.frame(b"one", 0), top.writer.frame(b"two", 0)
    read_all(bottom.reader, first)
    with pytest.raises((P2pChecksumError, P2pSequenceError)):  # keystream moved on: the header is garbage
        read_all(bottom.reader, first)
    top, bottom = pair()
    first, second = top.writer.frame(b"one", 0), top.writer.frame(b"two", 0)
    with pytest.raises((P2pChecksumError, P2pSequenceError)):
        read_all(bottom.reader, second + first)


def test_wrong_secret_is_detected_at_the_header() -> None:
    writer = ChannelSession(bytes(96), "top").writer
    with pytest.raises(P2pChecksumError):
        read_all(ChannelSession(SECRET, "bottom").reader, writer.frame(b"x" * 40, 0))


def test_oversized_frame_is_refused_from_its_header() -> None:
    top, bottom = pair(P2pConfig(max_frame_payload=100))
    wire = top.writer.frame(b"y" * 101, 0)
    with pytest.raises(P2pSizeError):
        bottom.reader.header(wire[:HEADER_LEN])


def test_header_does_not_consume_state() -> None:
    top, bottom = pair()
    wire = top.writer.frame(b"peek", 0)
    assert bottom.reader.header(wire[:16]) == bottom.reader.header(wire[:16])
    assert read_all(bottom.reader, wire) == [(0, 1, b"peek")]


def test_usage_errors() -> None:
    with pytest.raises(P2pUsageError):
        ChannelSession(bytes(64), "top")
    with pytest.raises(P2pUsageError):
        ChannelSession(SECRET, "left")
    with pytest.raises(P2pUsageError):
        ChannelSession(SECRET, "top").writer.frame(b"", code=2**32)
    with pytest.raises(P2pUsageError):
        P2pConfig(frame_payload=0)


def test_known_plaintext_forgery_succeeds_as_docs_say() -> None:
    """The honest limit (docs/transports.md): the MAC is an unkeyed hash under a malleable cipher. Anyone
    who knows a frame's plaintext and everything sent before it can replace it with a frame of equal
    length that the receiver accepts. This test pins that weakness down so nobody relies on it."""
    top, bottom = pair()
    original = b"setpoint=040"
    wire = top.writer.frame(original, 7)
    forged_payload = b"setpoint=100"
    header = Header(len(original), 7, 1).pack()
    known = header + original + hashlib.sha256(header + original).digest()[:8]
    wanted = header + forged_payload + hashlib.sha256(header + forged_payload).digest()[:8]
    forged = bytes(c ^ k ^ w for c, k, w in zip(wire, known, wanted, strict=True))
    assert read_all(bottom.reader, forged) == [(7, 1, forged_payload)]


# --- fuzz: only the package's own errors come out --------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(st.binary(min_size=16, max_size=16), st.binary(max_size=300))
def test_fuzz_random_header_and_body(header_bytes: bytes, body: bytes) -> None:
    _, bottom = pair(P2pConfig(max_frame_payload=256))
    try:
        header = bottom.reader.header(header_bytes)
        bottom.reader.body(header, body)
    except P2pError:
        pass


@pytest.mark.slow
@FUZZ
@given(st.lists(st.binary(max_size=64), min_size=1, max_size=5), st.integers(0, 2000), st.integers(1, 255))
def test_fuzz_mutated_stream(payloads: list[bytes], position: int, flip: int) -> None:
    top, bottom = pair()
    wire = bytearray(b"".join(top.writer.frame(p, i) for i, p in enumerate(payloads)))
    wire[position % len(wire)] ^= flip
    try:
        read_all(bottom.reader, bytes(wire))
    except P2pError:
        return
    pytest.fail("a flipped bit went unnoticed")
