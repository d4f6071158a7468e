"""Axon: the trust layer (keys, envelopes, ledger, messaging, transports)."""
