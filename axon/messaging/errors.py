"""Errors of SIP-017 messaging. Every one has a stable code; messages say what, where and why.

No error ever carries key material or decrypted content: a message that failed a check is untrusted,
and its text must not reach logs verbatim.
"""

from __future__ import annotations

from axon.errors import AxonError


class MessagingError(AxonError):
    """Root of every SIP-017 messaging error."""

    code = "MSG"


class MessagingConfigError(MessagingError):
    """A messaging limit or window is outside what the implementation allows."""

    code = "MSG-CONFIG"


class TooLarge(MessagingError):
    """The envelope is larger than the configured limit (checked before anything is parsed)."""

    code = "MSG-TOO-LARGE"


class MalformedEnvelope(MessagingError):
    """The outer JSON (p, enc, iv, ephem_pub, blob) is not SIP-017 §3.3's schema."""

    code = "MSG-ENVELOPE"


class WrongRecipient(MessagingError):
    """The signed `to` (or the OpCode 9 `to`) names someone other than this receiver."""

    code = "MSG-RECIPIENT"


class DecryptFailed(MessagingError):
    """Not encrypted to this key, or a byte of iv, ephem_pub or blob was altered."""

    code = "MSG-DECRYPT"


class SchemaError(MessagingError):
    """The decrypted inner JSON (type, timestamp, nonce, body) is not SIP-017 §3.4's schema."""

    code = "MSG-SCHEMA"


class StaleMessage(MessagingError):
    """The timestamp is older than the receiver's window (SIP-017 §4.1)."""

    code = "MSG-STALE"


class FutureMessage(MessagingError):
    """The timestamp is further ahead than the receiver's window (SIP-017 §4.1)."""

    code = "MSG-FUTURE"


class ReplayedMessage(MessagingError):
    """A message with this nonce was already accepted within the window (SIP-017 §4.1)."""

    code = "MSG-REPLAY"


class ReplayCacheFull(MessagingError):
    """The nonce cache is full of unexpired nonces: new messages are refused rather than a nonce forgotten."""

    code = "MSG-REPLAY-CACHE-FULL"


class BadMessageSignature(MessagingError):
    """The signed wrapper's signature does not verify against the sender's key."""

    code = "MSG-SIGNATURE"


class UnknownMessageSender(MessagingError):
    """The sender's DID is neither on the ledger nor pinned, or its key is revoked."""

    code = "MSG-UNKNOWN-SENDER"


class Unauthorised(MessagingError):
    """The sender's authority level is below what the message or command requires."""

    code = "MSG-UNAUTHORISED"


class KeyExchangeError(MessagingError):
    """A KEY_EXCHANGE offer or accept is malformed, expired, or does not match its counterpart."""

    code = "MSG-KEY-EXCHANGE"


class BrokerUnavailable(MessagingError):
    """The MQTT broker cannot be reached, refused the connection, or did not acknowledge a publish."""

    code = "MSG-BROKER"
