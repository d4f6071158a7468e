"""The unattended sidecar (`synapse run`): its feed-evaluate-log loop, the alerts it seals, and the
SIP-017 plant commands it takes from the ledger."""
