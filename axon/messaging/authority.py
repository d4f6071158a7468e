"""Who may send what: the authority level each message type and command requires.

SIP-017 authenticates nobody (anyone can encrypt to a public key), so a receiver acts only on messages
whose sender it knows (signed.py: the OpCode 9 transaction's signer, or a signed wrapper) and whose
authority level, from the ledger or a pinned key, is at least the level below. docs/messaging.md
carries the same table; tests/test_messaging_authority.py checks the two agree.

| message                     | level  | why |
| --------------------------- | ------ | --- |
| LOG, ALERT                  | LVL_1  | information only; any registered, unrevoked key |
| CMD ping                    | LVL_1  | liveness check, changes nothing |
| KEY_EXCHANGE                | LVL_2  | opens an SCP session to this node |
| CMD set_context             | LVL_3  | changes an input that policies decide on, until it expires |
| CMD load, CMD unload        | LVL_4  | changes which policies run beside the PLC |
| CMD with any other command  | LVL_5  | unknown: refused unless the root would send it |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from axon.messaging.errors import Unauthorised
from axon.messaging.inner import Message

log = logging.getLogger("axon.messaging.authority")

MIN_LEVEL, MAX_LEVEL = 1, 5
TYPE_LEVELS: Mapping[str, int] = {"LOG": 1, "ALERT": 1, "KEY_EXCHANGE": 2}
COMMAND_LEVELS: Mapping[str, int] = {"ping": 1, "set_context": 3, "load": 4, "unload": 4}


class SenderRecord(Protocol):
    did: str
    level: int


def required_level(message: Message) -> int:
    """The level `message` needs; unknown commands and types need the highest (fail safe)."""
    if message.type == "CMD":
        command = message.body.get("command")
        return COMMAND_LEVELS.get(command, MAX_LEVEL) if isinstance(command, str) else MAX_LEVEL
    return TYPE_LEVELS.get(message.type, MAX_LEVEL)


def describe(message: Message) -> str:
    """`CMD load`, `ALERT`: what a log line may say about a message (no body content)."""
    command = message.body.get("command") if message.type == "CMD" else None
    if isinstance(command, str):
        return f"CMD {command if command in COMMAND_LEVELS else '(unknown command)'}"
    return message.type


def authorise(sender: SenderRecord, message: Message) -> None:
    """Raise Unauthorised (and log it, without content) unless `sender` has the level `message` needs."""
    needed = required_level(message)
    if sender.level < needed:
        reason = (f"{describe(message)} needs authority LVL_{needed}; sender {sender.did} has "
                  f"LVL_{sender.level}")
        log.warning("SIP-017 message dropped: %s: %s", Unauthorised.code, reason)
        raise Unauthorised(reason)
