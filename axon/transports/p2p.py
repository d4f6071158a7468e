"""The framed P2P channel (seed 004) over an asyncio stream: one send call, one receive call.

    channel = await connect(host, port, secret, "top")
    await channel.send(large_payload)           # split into frames
    data = await channel.recv(len(expected))    # gathers frames; returns only verified bytes

Receive semantics, from seed 004 §3:
- frames are gathered until exactly `nbytes` have arrived;
- when the next frame would overshoot `nbytes`, the call returns what it has (frame boundary) and the
  frame stays unread; if not even the first frame fits, P2pBufferTooSmall says how much to ask for;
- if `timeout` passes first, P2pPeerSlow is raised with the verified bytes in its `data`;
- an integrity failure raises its error with the verified bytes gathered before it in `data`.
The shared secret comes from the higher-level protocol and must be fresh for every connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from axon.transports.p2p_protocol import (
    HEADER_LEN,
    MAC_LEN,
    ChannelFrame,
    ChannelSession,
    Half,
    Header,
    P2pBufferTooSmall,
    P2pClosed,
    P2pConfig,
    P2pError,
    P2pIOError,
    P2pPeerSlow,
    P2pTruncated,
    P2pUsageError,
)


class Channel:
    """One party of a P2P channel over a connected stream. One sender and one receiver at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes,
                 half: Half | str, config: P2pConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._session = ChannelSession(secret, half, config)
        self.config = self._session.config
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._send_lock = asyncio.Lock()  # a frame is fully sent before the next begins (seed §4)
        self._recv_lock = asyncio.Lock()
        self._pending: tuple[bytes, Header] | None = None  # a decrypted header whose frame was not taken

    async def send(self, data: bytes, code: int = 0) -> None:
        """Send `data` (split into frames of `config.frame_payload`), every frame carrying `code`."""
        async with self._send_lock:
            frames = self._session.writer.frames(bytes(data), code, self.config.frame_payload)
            try:
                self._writer.write(frames)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                raise P2pIOError(f"cannot send to the peer: {exc.__class__.__name__}") from exc

    async def recv(self, nbytes: int, timeout: float | None = None) -> bytes:
        """Up to `nbytes` verified bytes, ending on a frame boundary (see the module docstring)."""
        if nbytes < 0:
            raise P2pUsageError("nbytes must not be negative")
        deadline = self._clock() + (self.config.recv_timeout if timeout is None else timeout)
        got = bytearray()
        async with self._recv_lock:
            while len(got) < nbytes:
                try:
                    header = await self._next_header(deadline)
                    if len(got) + header.length > nbytes:
                        if got:
                            break
                        raise P2pBufferTooSmall(header.length, nbytes)
                    frame = await self._next_body(header, deadline)
                except P2pError as exc:
                    exc.data = bytes(got)
                    raise
                got += frame.payload
        return bytes(got)

    async def recv_frame(self, timeout: float | None = None) -> ChannelFrame:
        """The next whole frame, with its code and sequence number."""
        deadline = self._clock() + (self.config.recv_timeout if timeout is None else timeout)
        async with self._recv_lock:
            return await self._next_body(await self._next_header(deadline), deadline)

    async def close(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()

    async def __aenter__(self) -> Channel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- internals

    async def _next_header(self, deadline: float) -> Header:
        self._session.reader.ensure_usable()  # a broken channel fails now, not after the next read
        if self._pending is None:
            encrypted = await self._read(HEADER_LEN, deadline)
            self._pending = (encrypted, self._session.reader.header(encrypted))
        return self._pending[1]

    async def _next_body(self, header: Header, deadline: float) -> ChannelFrame:
        body = await self._read(header.length + MAC_LEN, deadline)
        self._pending = None
        return self._session.reader.body(header, body)

    async def _read(self, n: int, deadline: float) -> bytes:
        # readexactly takes nothing from the stream buffer unless all n bytes are there, so a timeout
        # leaves the partial frame in place for the next call.
        try:
            async with asyncio.timeout(max(0.0, deadline - self._clock())):
                return await self._reader.readexactly(n)
        except TimeoutError as exc:
            raise P2pPeerSlow("the peer did not send the requested bytes before the timeout") from exc
        except asyncio.IncompleteReadError as exc:
            if exc.partial or self._pending is not None:
                raise P2pTruncated("the peer closed the connection in the middle of a frame") from exc
            raise P2pClosed("the peer closed the connection") from exc
        except (ConnectionError, OSError) as exc:
            raise P2pIOError(f"connection to the peer failed: {exc.__class__.__name__}") from exc


async def connect(host: str, port: int, secret: bytes, half: Half | str,
                  config: P2pConfig | None = None, connect_timeout: float = 10.0) -> Channel:
    """Open TCP to host:port and return a Channel for the party that encrypts with `half`."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), connect_timeout)
    except (OSError, TimeoutError) as exc:
        raise P2pIOError(f"cannot connect to {host}:{port}: {exc.__class__.__name__}") from exc
    return Channel(reader, writer, secret, half, config)
