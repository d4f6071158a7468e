"""Hypothesis fuzz: `open` only ever returns a Message or raises the package's own MessagingError."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon import ecies
from axon.keys import SigningKey
from axon.messaging import envelope as E
from axon.messaging import schemas
from axon.messaging.errors import MessagingError
from axon.messaging.inner import Message
from axon.messaging.receiver import Receiver
from axon.messaging.signed import PinnedKeys, SignedEnvelope, sign
from tests.messaging_fixtures import T0, identity

KEY = SigningKey(bytes.fromhex("55" * 32))
SENDER = identity(7, "fuzzer")
GOOD = E.seal(KEY.public_key, Message.new("CMD", {"command": "ping"}, T0)).to_dict()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])



def json_like(floats: st.SearchStrategy) -> st.SearchStrategy:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | floats | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )


json_values = json_like(st.floats())  # NaN and infinities too: what a hostile sender might write
json_documents = json_like(st.floats(allow_nan=False, allow_infinity=False))  # what a sender can seal


def must_open(data) -> None:
    try:
        result = E.open(KEY, data)
    except MessagingError as exc:
        assert exc.code.startswith("MSG-") and str(exc)
        return
    assert isinstance(result, Message)


@FUZZ
@given(st.binary(max_size=2000) | st.text(max_size=2000))
def test_arbitrary_bytes_and_text(data):
    must_open(data)


@FUZZ
@given(st.dictionaries(st.sampled_from(sorted(GOOD) + ["x"]), json_values, max_size=6))
def test_arbitrary_objects_with_envelope_field_names(doc):
    must_open(doc)


@FUZZ
@given(st.sampled_from(sorted(GOOD)), st.text(alphabet="0123456789abcdefABCDEF \n", max_size=300))
def test_one_field_replaced_by_hex_like_text(field, value):
    must_open({**GOOD, field: value})


@FUZZ
@given(st.sampled_from(["iv", "ephem_pub", "blob"]), st.data())
def test_bit_flips_in_valid_envelopes(field, data):
    raw = bytearray.fromhex(GOOD[field])
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] ^= data.draw(st.integers(1, 255))
    must_open({**GOOD, field: raw.hex()})


@FUZZ
@given(st.binary(max_size=600) | st.builds(lambda v: json.dumps(v).encode(), json_values)
       | st.builds(lambda body, t, n, ts: json.dumps({"type": t, "timestamp": ts, "nonce": n,
                                                      "body": body}).encode(),
                   json_values, st.text(max_size=10), st.text(alphabet="0123456789abcdef", max_size=26),
                   st.integers(-10, 2**60) | st.floats()))
def test_authentic_envelopes_with_arbitrary_plaintext(plaintext):
    """Properly encrypted to us, so the inner parser is what gets fuzzed."""
    must_open(E.MessageEnvelope.from_sealed(ecies.seal(KEY.public_key, plaintext)).to_json())


@FUZZ
@given(json_documents, st.text(max_size=40))
def test_receiver_and_signed_wrapper_only_raise_messaging_errors(body, to):
    rx = Receiver(KEY, clock=lambda: T0, did="did:sopcos:me#key-1")
    directory = PinnedKeys({SENDER.did: (SENDER.key.public_key, 3)})
    env = E.seal(KEY.public_key, Message.new("CMD", {"v": body} if not isinstance(body, dict) else body, T0))
    for data in (sign(SENDER, "did:sopcos:me#key-1", env).to_dict(), {"p": "sip-017-signed", "to": to},
                 SignedEnvelope(SENDER.did, to or "x", env, b"\x00" * 64).to_dict()):
        try:
            got = rx.accept_signed(data, directory)
        except MessagingError as exc:
            assert exc.code.startswith("MSG-")
            continue
        assert got.sender.did == SENDER.did and got.message.nonce


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    k: st.sampled_from([v, v.upper(), v[:-1], v + "0", v + "\n", " " + v, ""]) | json_values
    for k, v in GOOD.items()}))
def test_envelope_fast_path_agrees_with_jsonschema(doc):
    assert E.fast_path_accepts(doc) == (schemas.first_error(E.SCHEMA, doc, "envelope") is None)
