"""SIP-017 envelope: exact outer/inner JSON, eciespy interop both ways, tampering, limits."""

from __future__ import annotations

import json
import random

import pytest
from ecies import decrypt as ecies_decrypt
from ecies import encrypt as ecies_encrypt
from ecies.config import Config

from axon import ecies
from axon.keys import SigningKey
from axon.messaging import envelope as E
from axon.messaging import inner
from axon.messaging.errors import DecryptFailed, MalformedEnvelope, SchemaError, TooLarge
from axon.messaging.inner import Message

ECIESPY_12 = Config(symmetric_nonce_length=12)
RECIPIENT = SigningKey(bytes.fromhex("11" * 32))
OTHER = SigningKey(bytes.fromhex("22" * 32))


def _msg(body: dict | None = None, ts: int = 1_736_524_000) -> Message:
    return Message("CMD", ts, "0123456789abcdef01234567", body if body is not None else {"command": "ping"})


def test_seal_produces_exactly_the_sip017_outer_json():
    doc = json.loads(E.seal(RECIPIENT.public_key, _msg()).to_json())
    assert list(doc) == ["p", "enc", "iv", "ephem_pub", "blob"]
    assert doc["p"] == "sip-017" and doc["enc"] == "AES-256-GCM"
    assert len(bytes.fromhex(doc["iv"])) == 12
    assert len(bytes.fromhex(doc["ephem_pub"])) == 65 and doc["ephem_pub"].startswith("04")
    assert doc["blob"] == doc["blob"].lower()


def test_inner_json_is_exactly_type_timestamp_nonce_body():
    env = E.seal(RECIPIENT.public_key, _msg({"command": "ping", "x": [1, 2]}))
    plaintext = ecies.open_sealed(RECIPIENT, env.to_sealed())
    assert json.loads(plaintext) == {"type": "CMD", "timestamp": 1_736_524_000,
                                     "nonce": "0123456789abcdef01234567",
                                     "body": {"command": "ping", "x": [1, 2]}}


def test_round_trip_through_text_bytes_dict_and_object():
    message = _msg({"k": "välue ✓"})
    env = E.seal(RECIPIENT.public_key, message)
    for form in (env, env.to_dict(), env.to_json(), env.to_json().encode()):
        assert E.open(RECIPIENT, form) == message


def test_fresh_ephemeral_key_and_iv_for_every_message():
    envs = [E.seal(RECIPIENT.public_key, _msg()) for _ in range(20)]
    assert len({e.ephem_pub for e in envs}) == 20
    assert len({e.iv for e in envs}) == 20
    assert all(e.ephem_pub != RECIPIENT.public_key.raw for e in envs)


def test_message_new_has_96_bit_random_nonce():
    a, b = Message.new("LOG", {}, 5.9), Message.new("LOG", {}, 5.9)
    assert a.timestamp == 5 and len(a.nonce) == 24 and a.nonce != b.nonce


def test_eciespy_decrypts_project_envelopes():
    message = _msg({"set_pressure": 80})
    env = E.seal(RECIPIENT.public_key, message)
    plaintext = ecies_decrypt(RECIPIENT.secret_bytes(), env.to_sealed().to_eciespy(), config=ECIESPY_12)
    assert inner.parse(plaintext) == message


def test_project_opens_eciespy_output():
    message = _msg({"alarm": "PT-101 high"})
    data = ecies_encrypt(RECIPIENT.public_key.raw, message.to_bytes(), config=ECIESPY_12)
    env = E.MessageEnvelope.from_sealed(ecies.Sealed.from_eciespy(data))
    assert E.open(RECIPIENT, env.to_json()) == message


def test_wrong_recipient_cannot_open():
    env = E.seal(RECIPIENT.public_key, _msg())
    with pytest.raises(DecryptFailed) as info:
        E.open(OTHER, env.to_json())
    assert info.value.code == "MSG-DECRYPT"


@pytest.mark.parametrize("field", ["iv", "ephem_pub", "blob"])
def test_tampering_any_byte_of_any_field_is_detected(field):
    env = E.seal(RECIPIENT.public_key, _msg()).to_dict()
    raw = bytearray.fromhex(env[field])
    rng = random.Random(field)
    positions = sorted({rng.randrange(len(raw)) for _ in range(12)} | {len(raw) - 1}
                       | ({0, 1} if field != "ephem_pub" else {1, 40}))
    for pos in positions:
        tampered = bytearray(raw)
        tampered[pos] ^= 1 << rng.randrange(8)
        doc = {**env, field: tampered.hex()}
        with pytest.raises((DecryptFailed, MalformedEnvelope)) as info:
            E.open(RECIPIENT, doc)
        # A flipped ephemeral key is either off the curve (refused up front) or a different point.
        assert info.value.code in ({"MSG-DECRYPT", "MSG-ENVELOPE"} if field == "ephem_pub"
                                   else {"MSG-DECRYPT"})


@pytest.mark.parametrize(("field", "value", "where"), [
    ("p", "sip-018", "/p"), ("enc", "AES-128-GCM", "/enc"), ("iv", "00" * 16, "/iv"),
    ("iv", "0X" * 12, "/iv"), ("iv", "AB" * 12, "/iv"), ("ephem_pub", "02" + "11" * 32, "/ephem_pub"),
    ("blob", "abc", "/blob"), ("blob", "00" * 16, "/blob"), ("iv", 12, "/iv"),
    ("iv", "00" * 12 + "\n", "/iv"), ("blob", "0" * 35, "/blob"),
])
def test_malformed_fields_are_rejected_with_their_location(field, value, where):
    doc = {**E.seal(RECIPIENT.public_key, _msg()).to_dict(), field: value}
    with pytest.raises(MalformedEnvelope) as info:
        E.open(RECIPIENT, doc)
    assert f"envelope {where}:" in str(info.value)


def test_missing_and_extra_fields_are_named():
    doc = E.seal(RECIPIENT.public_key, _msg()).to_dict()
    with pytest.raises(MalformedEnvelope, match="missing required field.*'iv'"):
        E.open(RECIPIENT, {k: v for k, v in doc.items() if k != "iv"})
    with pytest.raises(MalformedEnvelope, match="unexpected field.*'memo'"):
        E.open(RECIPIENT, {**doc, "memo": "x"})


def test_off_curve_ephemeral_key_is_refused_before_decryption():
    doc = E.seal(RECIPIENT.public_key, _msg()).to_dict()
    doc["ephem_pub"] = "04" + "00" * 64
    with pytest.raises(MalformedEnvelope, match="ephem_pub: not a point on secp256k1"):
        E.open(RECIPIENT, doc)


@pytest.mark.parametrize("cut", [1, 10, 100, 300])
def test_truncated_envelope_json_is_rejected(cut):
    text = E.seal(RECIPIENT.public_key, _msg()).to_json()
    with pytest.raises((MalformedEnvelope, DecryptFailed)):
        E.open(RECIPIENT, text[: len(text) - cut])


def test_truncated_blob_fails_authentication():
    env = E.seal(RECIPIENT.public_key, _msg())
    with pytest.raises(DecryptFailed):
        E.open(RECIPIENT, E.MessageEnvelope(env.iv, env.ephem_pub, env.blob[:-1]))


def test_oversized_envelope_is_rejected_before_parsing():
    big = E.seal(RECIPIENT.public_key, _msg({"pad": "x" * 40_000}))
    text = big.to_json()
    assert len(text) > E.DEFAULT_MAX_BYTES
    for form in (text, text.encode(), big.to_dict(), big):
        with pytest.raises(TooLarge) as info:
            E.open(RECIPIENT, form)
        assert info.value.code == "MSG-TOO-LARGE"
    # Below the limit it opens, and a smaller configured limit refuses it.
    small = E.seal(RECIPIENT.public_key, _msg({"pad": "x" * 1000}))
    assert E.open(RECIPIENT, small.to_json()).body["pad"] == "x" * 1000
    with pytest.raises(TooLarge):
        E.open(RECIPIENT, small.to_json(), max_bytes=1024)
    # Not JSON: a non-text, non-object input is a precise error, not a crash.
    with pytest.raises(MalformedEnvelope, match="expected JSON text"):
        E.open(RECIPIENT, 42)  # type: ignore[arg-type]


def _sealed_plaintext(plaintext: bytes) -> dict:
    return E.MessageEnvelope.from_sealed(ecies.seal(RECIPIENT.public_key, plaintext)).to_dict()


@pytest.mark.parametrize(("plaintext", "reason"), [
    (b"\xff\xfe", "not UTF-8"),
    (b"{", "not valid JSON"),
    (b'{"type":"CMD","type":"LOG","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":{}}', "appears twice"),
    (b'{"type":"CMD","timestamp":NaN,"nonce":"' + b"0" * 24 + b'","body":{}}', "NaN"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":{"x":-1e999}}', "infinity"),
    (b'{"type":"cmd","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":{}}', "/type"),
    (b'{"type":"CMD","timestamp":-1,"nonce":"' + b"0" * 24 + b'","body":{}}', "/timestamp"),
    (b'{"type":"CMD","timestamp":true,"nonce":"' + b"0" * 24 + b'","body":{}}', "/timestamp"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 22 + b'","body":{}}', "/nonce"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":[]}', "/body"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 24 + b'"}', "missing required field(s) 'body'"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":{},"x":1}', "unexpected field"),
    (b'{"type":"CMD","timestamp":1,"nonce":"' + b"0" * 24 + b'","body":' + b'{"a":' * 40 + b"1" + b"}" * 41,
     "nested deeper"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 64 levels"),
    (b'{"type":"CMD","timestamp":' + b"9" * 5000 + b',"nonce":"' + b"0" * 24 + b'","body":{}}',
     "not valid JSON"),
])
def test_inner_schema_violations_are_rejected_with_a_reason(plaintext, reason):
    with pytest.raises(SchemaError) as info:
        E.open(RECIPIENT, _sealed_plaintext(plaintext), max_bytes=1 << 20)
    assert reason in str(info.value) and info.value.code == "MSG-SCHEMA"


def test_schema_errors_do_not_echo_decrypted_content():
    secret_value = "TOPSECRET-RECIPE-42"
    body = json.dumps({"type": "CMD", "timestamp": secret_value, "nonce": "0" * 24, "body": {}}).encode()
    with pytest.raises(SchemaError) as info:
        E.open(RECIPIENT, _sealed_plaintext(body))
    assert secret_value not in str(info.value)


def test_float_timestamp_with_integer_value_is_carried_as_int():
    body = b'{"type":"LOG","timestamp":7.0,"nonce":"' + b"a" * 24 + b'","body":{}}'
    message = E.open(RECIPIENT, _sealed_plaintext(body))
    assert message.timestamp == 7 and type(message.timestamp) is int


def test_no_message_a_receiver_would_drop_can_be_made_or_sealed():
    with pytest.raises(SchemaError, match="/type"):
        Message("cmd", 1, "0" * 24, {})
    with pytest.raises(SchemaError, match="/nonce"):
        Message.new("CMD", {}, 1, randbytes=lambda n: b"\x00" * (n + 1))
    with pytest.raises(SchemaError, match="/body"):
        E.seal(RECIPIENT.public_key, Message("CMD", 1, "0" * 24, {"x": float("nan")}))


def test_fast_path_agrees_with_jsonschema():
    """The fast outer check is derived from the schema; both must agree on accept/reject."""
    from axon.messaging import schemas
    good = E.seal(RECIPIENT.public_key, _msg()).to_dict()
    variants = [good, {**good, "iv": good["iv"].upper()}, {**good, "blob": good["blob"][:-1]},
                {**good, "p": "sip-017 "}, {**good, "ephem_pub": good["ephem_pub"] + "\n"}]
    for doc in variants:
        assert E.fast_path_accepts(doc) == (schemas.first_error(E.SCHEMA, doc, "envelope") is None)


def test_an_envelope_with_two_ivs_is_refused_before_decryption():
    # issue 10: with "last member wins" the first iv was invisible to every check and the envelope opened;
    # a reader must never choose between two values of one member.
    text = E.seal(RECIPIENT.public_key, _msg()).to_json()
    iv = json.loads(text)["iv"]
    doubled = text.replace(f'"iv":"{iv}"', f'"iv":"{"00" * 12}","iv":"{iv}"')
    assert doubled != text
    with pytest.raises(MalformedEnvelope, match="envelope: not strict JSON: key 'iv' appears twice"):
        E.open(RECIPIENT, doubled)
    with pytest.raises(MalformedEnvelope, match="appears twice"):
        E.open(RECIPIENT, doubled.encode())
    assert E.open(RECIPIENT, text) == _msg()
