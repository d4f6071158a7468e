"""SIP-017 end-to-end encrypted machine-to-machine messages (docs/messaging.md).

A row of small stages: envelope.py (outer JSON, seal/open over axon.ecies) → inner.py (inner schema)
→ receiver.py (freshness window, nonce cache, unknown types) → signed.py (who sent it) →
authority.py (may they ask for this). key_exchange.py negotiates SCP sessions over KEY_EXCHANGE.
"""

from axon.messaging.envelope import MessageEnvelope, open, seal
from axon.messaging.errors import MessagingError
from axon.messaging.inner import Message
from axon.messaging.receiver import Received, Receiver, ReceiverConfig
from axon.messaging.signed import SignedEnvelope, sign

__all__ = ["Message", "MessageEnvelope", "MessagingError", "Received", "Receiver", "ReceiverConfig",
           "SignedEnvelope", "open", "seal", "sign"]
