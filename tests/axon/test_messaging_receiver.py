"""SIP-017 receiver rules (§3.4, §4.1): window, replays, nonce cache bounds, unknown types, counters."""

from __future__ import annotations

import logging

import pytest

from axon.keys import SigningKey
from axon.messaging import envelope as E
from axon.messaging.errors import (
    DecryptFailed,
    FutureMessage,
    MalformedEnvelope,
    MessagingConfigError,
    ReplayCacheFull,
    ReplayedMessage,
    StaleMessage,
)
from axon.messaging.inner import Message
from axon.messaging.receiver import NonceCache, Receiver, ReceiverConfig
from tests.messaging_fixtures import T0

KEY = SigningKey(bytes.fromhex("33" * 32))


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def sealed(type_: str = "LOG", ts: int = T0, body: dict | None = None, nonce: str | None = None) -> str:
    message = Message.new(type_, body or {}, ts)
    if nonce is not None:
        message = Message(message.type, message.timestamp, nonce, message.body)
    return E.seal(KEY.public_key, message).to_json()


def receiver(now: float = T0, **config) -> tuple[Receiver, Clock]:
    clock = Clock(now)
    return Receiver(KEY, ReceiverConfig(**config), clock), clock


def test_accepts_a_fresh_message_and_counts_it():
    rx, _ = receiver()
    message = rx.accept(sealed("ALERT", body={"policy": "boiler"}))
    assert message is not None and message.body == {"policy": "boiler"}
    assert rx.counts["accepted"] == 1


def test_replay_of_the_same_envelope_is_dropped():
    rx, _ = receiver()
    env = sealed()
    rx.accept(env)
    with pytest.raises(ReplayedMessage) as info:
        rx.accept(env)
    assert info.value.code == "MSG-REPLAY" and rx.counts["dropped:MSG-REPLAY"] == 1


def test_same_nonce_in_a_fresh_envelope_is_dropped():
    """A replay re-encrypted by the sender (new ephemeral key, new IV) still carries the nonce."""
    rx, _ = receiver()
    rx.accept(sealed(nonce="ab" * 12, body={"n": 1}))
    with pytest.raises(ReplayedMessage):
        rx.accept(sealed(nonce="ab" * 12, body={"n": 2}))


@pytest.mark.parametrize(("offset", "error"), [(-31, StaleMessage), (31, FutureMessage),
                                               (-3600, StaleMessage), (10**6, FutureMessage)])
def test_timestamps_outside_the_default_30s_window_are_dropped(offset, error):
    rx, _ = receiver()
    with pytest.raises(error) as info:
        rx.accept(sealed(ts=T0 + offset))
    assert info.value.code in ("MSG-STALE", "MSG-FUTURE") and str(abs(offset)) in str(info.value)


@pytest.mark.parametrize("offset", [-30, 30, 0])
def test_window_edges_are_inclusive(offset):
    rx, _ = receiver()
    assert rx.accept(sealed(ts=T0 + offset)) is not None


def test_window_is_configurable_up_to_five_minutes_and_no_further():
    rx, _ = receiver(window_s=300)
    assert rx.accept(sealed(ts=T0 - 300)) is not None
    with pytest.raises(StaleMessage):
        rx.accept(sealed(ts=T0 - 301))
    for bad in (301, 0, -5, 30.5, True):
        with pytest.raises(MessagingConfigError) as info:
            ReceiverConfig(window_s=bad)
        assert info.value.code == "MSG-CONFIG"


def test_clock_is_injected():
    rx, clock = receiver()
    env = sealed(ts=T0)
    clock.now = T0 + 31
    with pytest.raises(StaleMessage):
        rx.accept(env)
    clock.now = T0
    assert rx.accept(env) is not None  # the stale attempt did not record the nonce


def test_replay_after_the_window_is_stale_not_accepted():
    rx, clock = receiver()
    env = sealed(ts=T0)
    rx.accept(env)
    clock.now = T0 + 10_000
    with pytest.raises(StaleMessage):
        rx.accept(env)
    assert len(rx.nonces) == 0  # and the cache has forgotten it: the window guards it now


def test_unknown_types_are_ignored_without_error_and_counted():
    rx, _ = receiver()
    assert rx.accept(sealed("TELEMETRY_V2", body={"x": 1})) is None
    assert rx.accept(sealed("FUTURE")) is None
    assert rx.counts["ignored_unknown_type"] == 2 and rx.counts["accepted"] == 0
    assert not any(k.startswith("dropped:") for k in rx.counts)


def test_unknown_type_replay_is_still_dropped():
    rx, _ = receiver()
    env = sealed("NEWTYPE")
    assert rx.accept(env) is None
    with pytest.raises(ReplayedMessage):
        rx.accept(env)


def test_drops_are_counted_by_code_and_logged_without_content(caplog):
    rx, _ = receiver()
    other = SigningKey(bytes.fromhex("44" * 32))
    secret = {"recipe": "SECRET-FORMULA-17"}
    caplog.set_level(logging.INFO, logger="axon.messaging")
    with pytest.raises(DecryptFailed):
        rx.accept(E.seal(other.public_key, Message.new("CMD", secret, T0)).to_json())
    with pytest.raises(MalformedEnvelope):
        rx.accept("{}")
    rx.accept(sealed("CMD", body=secret))
    assert rx.counts["dropped:MSG-DECRYPT"] == 1 and rx.counts["dropped:MSG-ENVELOPE"] == 1
    assert "MSG-DECRYPT" in caplog.text and "SECRET-FORMULA" not in caplog.text
    assert KEY.secret_bytes().hex() not in caplog.text


def test_nonce_cache_full_of_live_nonces_refuses_new_messages():
    rx, clock = receiver(max_nonces=3)
    for i in range(3):
        rx.accept(sealed(body={"i": i}))
    with pytest.raises(ReplayCacheFull) as info:
        rx.accept(sealed(body={"i": 3}))
    assert info.value.code == "MSG-REPLAY-CACHE-FULL" and len(rx.nonces) == 3
    clock.now = T0 + 31  # the three expire: room again
    assert rx.accept(sealed(ts=T0 + 31, body={"i": 4})) is not None
    assert len(rx.nonces) == 1


def test_nonce_cache_evicts_expired_entries_first():
    cache = NonceCache(max_entries=2)
    cache.add("a", expires_at=100, now=50)
    cache.add("b", expires_at=200, now=50)
    cache.add("c", expires_at=300, now=150)  # "a" expired at 100: evicted, not refused
    assert "a" not in cache and "b" in cache and "c" in cache
    with pytest.raises(ReplayedMessage):
        cache.add("b", expires_at=250, now=150)


def test_clock_stepping_back_cannot_replay_a_forgotten_nonce():
    rx, clock = receiver()
    env = sealed(ts=T0)
    rx.accept(env)
    clock.now = T0 + 100
    rx.accept(sealed(ts=T0 + 100))  # evicts the first nonce
    clock.now = T0  # the clock steps back: the first message looks fresh again
    with pytest.raises(StaleMessage, match="forgotten"):
        rx.accept(env)


def test_a_restarted_receiver_refuses_messages_from_before_its_start():
    env_before, env_after = sealed(ts=T0 - 1), sealed(ts=T0)
    first = Receiver(KEY, clock=lambda: T0)
    assert first.accept(env_before) is not None
    restarted = Receiver(KEY, clock=lambda: T0, started_at=T0)  # its nonce cache is empty
    with pytest.raises(StaleMessage, match="restarted"):
        restarted.accept(env_before)
    assert restarted.accept(env_after) is not None


def test_max_envelope_bytes_is_the_receivers_limit():
    rx, _ = receiver(max_envelope_bytes=1024)
    with pytest.raises(Exception) as info:
        rx.accept(sealed(body={"pad": "x" * 600}))
    assert info.value.code == "MSG-TOO-LARGE"
    with pytest.raises(MessagingConfigError):
        ReceiverConfig(max_envelope_bytes=10)
