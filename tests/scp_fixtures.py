"""Shared helpers for the SCP tests: deterministic identities, an injected clock, in-memory pumping."""

from __future__ import annotations

import asyncio
import random

from axon.keys import Identity, SigningKey, did_for, sha256
from axon.transports.scp_errors import ScpError
from axon.transports.scp_peers import PinnedPeer
from axon.transports.scp_protocol import Event, Role, ScpConfig, ScpProtocol


class Clock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def identity(name: str) -> Identity:
    key = SigningKey(sha256(name.encode()))
    return Identity(key, did_for(key.public_key, name))


CLIENT = identity("scp-client")
SERVER = identity("scp-server")
MALLORY = identity("scp-mallory")


def make_pair(config: ScpConfig | None = None, clock: Clock | None = None, seed: int = 1,
              client_verifier=None, server_verifier=None,
              client_identity: Identity = CLIENT) -> tuple[ScpProtocol, ScpProtocol, Clock]:
    clock = clock or Clock()
    rng = random.Random(seed)
    client = ScpProtocol(Role.CLIENT, client_identity, client_verifier or PinnedPeer(SERVER.key.public_key),
                         config=config, clock=clock, randbytes=rng.randbytes)
    server = ScpProtocol(Role.SERVER, SERVER, server_verifier or PinnedPeer(client_identity.key.public_key),
                         config=config, clock=clock, randbytes=rng.randbytes)
    return client, server, clock


def deliver(data: bytes, dst: ScpProtocol) -> list[Event]:
    dst.receive_data(data)
    events = []
    while (event := dst.next_event()) is not None:
        events.append(event)
    return events


def pump(src: ScpProtocol, dst: ScpProtocol) -> list[Event]:
    return deliver(src.data_to_send(), dst)


def handshake(client: ScpProtocol, server: ScpProtocol) -> None:
    client.initiate()
    pump(client, server)
    pump(server, client)
    pump(client, server)


class Errors(list):
    """A server's `on_error` hook that keeps what it is told, for a test to wait on."""

    def __call__(self, exc: ScpError, peername: object) -> None:
        self.append(exc)

    async def wait(self, n: int = 1) -> None:
        while len(self) < n:
            await asyncio.sleep(0.01)
