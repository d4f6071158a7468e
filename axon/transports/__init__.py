"""Axon's transports: the SCP channel, the framed P2P channel, the constraint-node protocol.

See docs/transports.md.
"""
