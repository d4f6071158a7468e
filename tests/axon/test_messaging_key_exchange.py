"""KEY_EXCHANGE (SIP-017 §5.3): offer/accept/complete, binding, expiry, low-order points."""

from __future__ import annotations

import json
import random

import pytest

from axon.messaging import key_exchange as kx
from axon.messaging.errors import KeyExchangeError
from tests.vectors import wycheproof

ALICE, BOB = "did:sopcos:hq#key-1", "did:sopcos:plant-7#key-1"
T = 1_736_524_000


def rng(seed: int):
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def test_both_sides_derive_the_same_key_bound_to_both_dids():
    pending = kx.offer(BOB, T, randbytes=rng(1))
    answer, theirs = kx.accept(pending.offer.to_body(), ALICE, BOB, T + 1, randbytes=rng(2))
    ours = kx.complete(pending, answer.to_body(), BOB, ALICE, T + 2)
    assert ours == theirs and len(ours.key) == 32
    assert (ours.initiator, ours.responder) == (ALICE, BOB) and ours.session_id == pending.offer.session_id
    assert ours.key.hex() not in repr(ours)
    # A different pair of identities, same X25519 keys → a different key.
    _, other = kx.accept(pending.offer.to_body(), "did:sopcos:mallory#key-1", BOB, T + 1, randbytes=rng(2))
    assert other.key != ours.key


def test_bodies_round_trip_through_json_and_schema():
    pending = kx.offer(BOB, T, ttl_s=60, randbytes=rng(3))
    body = json.loads(json.dumps(pending.offer.to_body()))
    assert set(body) == {"kx", "protocol", "session_id", "x25519", "expires_at"}
    assert kx.SessionOffer.from_body(body) == pending.offer and body["expires_at"] == T + 60


@pytest.mark.parametrize("mutate", [
    lambda b: b.update(kx="accept"), lambda b: b.update(session_id="00"),
    lambda b: b.update(x25519="ZZ" * 32), lambda b: b.update(extra=1), lambda b: b.pop("expires_at"),
    lambda b: b.update(protocol="tls"),
])
def test_malformed_offers_are_refused(mutate):
    body = kx.offer(BOB, T, randbytes=rng(4)).offer.to_body()
    mutate(body)
    with pytest.raises(KeyExchangeError) as info:
        kx.accept(body, ALICE, BOB, T)
    assert info.value.code == "MSG-KEY-EXCHANGE"


def test_expired_or_too_long_offers_are_refused():
    pending = kx.offer(BOB, T, ttl_s=10, randbytes=rng(5))
    with pytest.raises(KeyExchangeError, match="expired"):
        kx.accept(pending.offer.to_body(), ALICE, BOB, T + 11)
    body = {**pending.offer.to_body(), "expires_at": T + 10 * 3600}
    with pytest.raises(KeyExchangeError, match="longer than"):
        kx.accept(body, ALICE, BOB, T)
    with pytest.raises(KeyExchangeError):
        kx.offer(BOB, T, ttl_s=kx.MAX_TTL_S + 1)


def test_accept_must_answer_this_offer_from_its_responder():
    pending = kx.offer(BOB, T, randbytes=rng(6))
    other = kx.offer(BOB, T, randbytes=rng(7))
    answer, _ = kx.accept(other.offer.to_body(), ALICE, BOB, T)
    with pytest.raises(KeyExchangeError, match="does not answer this offer"):
        kx.complete(pending, answer.to_body(), BOB, ALICE, T)
    answer, _ = kx.accept(pending.offer.to_body(), ALICE, BOB, T)
    with pytest.raises(KeyExchangeError, match="came from"):
        kx.complete(pending, answer.to_body(), "did:sopcos:mallory#key-1", ALICE, T)
    with pytest.raises(KeyExchangeError, match="expired"):
        kx.complete(pending, answer.to_body(), BOB, ALICE, T + kx.DEFAULT_TTL_S + 1)


def _wycheproof_zero_shared() -> list[dict]:
    tests = [t for g in wycheproof("x25519_test.json")["testGroups"] for t in g["tests"]]
    return [t for t in tests if "ZeroSharedSecret" in t["flags"]]


ZERO = _wycheproof_zero_shared()


@pytest.mark.parametrize("test", ZERO, ids=[str(t["tcId"]) for t in ZERO])
def test_low_order_x25519_keys_from_wycheproof_are_refused(test):
    """Wycheproof X25519 public keys whose shared secret is all zero: a peer forcing a known key."""
    private = bytes.fromhex(test["private"])
    pending = kx.offer(BOB, T, randbytes=lambda n: private if n == 32 else b"\x01" * n)
    answer = kx.SessionAccept(pending.offer.session_id, bytes.fromhex(test["public"]),
                              kx.offer_hash(pending.offer))
    with pytest.raises(KeyExchangeError, match="low-order"):
        kx.complete(pending, answer.to_body(), BOB, ALICE, T)


def test_sessions_are_taken_once_and_expire():
    store = kx.Sessions(max_sessions=2)
    pending = kx.offer(BOB, T, ttl_s=30, randbytes=rng(8))
    _, session = kx.accept(pending.offer.to_body(), ALICE, BOB, T)
    store.add(session, T)
    assert store.take(session.session_id, T + 1) == session
    assert store.take(session.session_id, T + 1) is None
    store.add(session, T)
    assert store.take(session.session_id, T + 31) is None
    for seed in (9, 10):
        p = kx.offer(BOB, T, randbytes=rng(seed))
        store.add(kx.accept(p.offer.to_body(), ALICE, BOB, T)[1], T)
    p = kx.offer(BOB, T, randbytes=rng(11))
    with pytest.raises(KeyExchangeError, match="pending"):
        store.add(kx.accept(p.offer.to_body(), ALICE, BOB, T)[1], T)
