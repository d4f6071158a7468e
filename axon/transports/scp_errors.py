"""SCP's exception tree. Every error has a stable `code`; the same code travels in a CLOSE frame."""

from __future__ import annotations

from axon.errors import AxonError


class ScpError(AxonError):
    """Root of every SCP error."""

    code = "SCP-E"


class ScpConfigError(ScpError):
    code = "SCP-E-CONFIG"


class ScpFrameError(ScpError):
    """A frame (or a decrypted payload) that does not follow the layout."""

    code = "SCP-E-FRAME"


class ScpVersionError(ScpFrameError):
    code = "SCP-E-VERSION"


class ScpTypeError(ScpFrameError):
    code = "SCP-E-TYPE"


class ScpSizeError(ScpFrameError):
    code = "SCP-E-SIZE"


class ScpTruncatedError(ScpFrameError):
    code = "SCP-E-TRUNCATED"


class ScpStateError(ScpError):
    """A message that is not allowed in the connection's current phase."""

    code = "SCP-E-STATE"


class ScpHmacError(ScpError):
    code = "SCP-E-HMAC"


class ScpReplayError(ScpError):
    code = "SCP-E-REPLAY"


class ScpOrderError(ScpError):
    code = "SCP-E-ORDER"


class ScpDecryptError(ScpError):
    code = "SCP-E-DECRYPT"


class ScpHandshakeError(ScpError):
    code = "SCP-E-HANDSHAKE"


class ScpKeyError(ScpError):
    code = "SCP-E-KEY"


class ScpAuthError(ScpError):
    """The peer's transcript signature does not verify: it does not hold the key it claims."""

    code = "SCP-E-AUTH"


class ScpPeerRejected(ScpError):
    """The peer proved a key, but the verifier does not accept that key/DID."""

    code = "SCP-E-PEER"


class ScpSessionError(ScpError):
    """A KEY_EXCHANGE session named in the handshake is unusable: unknown, expired, already used, agreed
    with other parties, or (as the client sees it) keyed differently at the server."""

    code = "SCP-E-SESSION"


class ScpHandshakeTimeout(ScpError):
    code = "SCP-E-HANDSHAKE-TIMEOUT"


class ScpIdleTimeout(ScpError):
    code = "SCP-E-IDLE"


class ScpRekeyError(ScpError):
    code = "SCP-E-REKEY"


class ScpSequenceExhausted(ScpError):
    code = "SCP-E-SEQ-EXHAUSTED"


class ScpAckError(ScpError):
    code = "SCP-E-ACK"


class ScpBusyError(ScpError):
    """The server refused a new connection: too many open or too many handshakes in progress."""

    code = "SCP-E-BUSY"


class ScpRateLimited(ScpError):
    """The server refused a new connection: its source opened new connections too fast, or already has
    `max_handshakes_per_source` handshakes in progress."""

    code = "SCP-E-RATE"


class ScpIOError(ScpError):
    code = "SCP-E-IO"


class ScpRemoteClose(ScpError):
    """The peer closed the connection because of an error; `remote_code` is the code it sent."""

    code = "SCP-E-REMOTE"

    def __init__(self, remote_code: str) -> None:
        super().__init__(f"peer closed the connection with error {remote_code}")
        self.remote_code = remote_code


class ScpConnectionClosed(ScpError):
    """The connection ended normally (CLOSE/ACK); nothing more can be sent or received."""

    code = "SCP-CLOSED"
