"""SCP over asyncio TCP: a thin I/O shell around `ScpProtocol` (seed 002's connect/send/receive/close).

    conn = await connect("plc-gw", 4433, identity, PinnedPeer(gateway_key))
    await conn.send(b"hello")
    reply = await conn.receive()
    await conn.close()

    server = await serve("0.0.0.0", 4433, identity, LedgerPeer(ledger), on_connection)

`on_connection(conn)` runs once per authenticated connection; the connection is closed when it returns.

Under a session agreed over SIP-017 KEY_EXCHANGE (axon.messaging.key_exchange), the client names it and
the server takes it from its store, once:

    conn = await connect("plant-7", 4433, identity, LedgerPeer(ledger), session=session)
    server = await serve(..., session_lookup=sessions.lookup(), require_session=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from axon.keys import Identity
from axon.transports.scp_errors import (
    ScpConnectionClosed,
    ScpError,
    ScpHandshakeTimeout,
    ScpIOError,
    ScpRemoteClose,
)
from axon.transports.scp_limits import Admission
from axon.transports.scp_peers import PeerIdentity, PeerVerifier
from axon.transports.scp_protocol import (
    CLOSE_OK,
    CloseAcknowledged,
    HandshakeComplete,
    MessageReceived,
    PeerClosed,
    Role,
    ScpConfig,
    ScpProtocol,
    SessionKey,
    SessionLookup,
    check_session_settings,
)

log = logging.getLogger(__name__)
READ_CHUNK = 1 << 16


class Connection:
    """One established SCP connection. Not thread-safe; any number of tasks of one loop may use it."""

    def __init__(self, protocol: ScpProtocol, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 clock: Callable[[], float]) -> None:
        self._proto = protocol
        self._reader = reader
        self._writer = writer
        self._clock = clock
        self._inbox: deque[bytes] = deque()
        self._progress = asyncio.Event()  # set whenever a message, an ACK or the end arrives
        self._established = asyncio.Event()
        self._end: ScpError | None = None
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def peer(self) -> PeerIdentity:
        """The authenticated peer (available once connect()/on_connection hands the connection over)."""
        return self._proto.peer

    @property
    def session_id(self) -> bytes | None:
        """The KEY_EXCHANGE session the handshake ran under, if the client named one."""
        return self._proto.session_id

    @property
    def config(self) -> ScpConfig:
        return self._proto.config

    @property
    def closed(self) -> bool:
        return self._end is not None

    async def send(self, data: bytes) -> None:
        """Encrypt and send one message; waits while `max_unacked` frames are unacknowledged."""
        while self._end is None and self._proto.unacked >= self.config.max_unacked:
            await self._wait_progress()
        if self._end is not None:
            raise self._end
        self._proto.send_message(bytes(data))
        await self._flush()

    async def receive(self) -> bytes:
        """The next message. Raises ScpConnectionClosed after a normal close, else the error that ended it."""
        while not self._inbox:
            if self._end is not None:
                raise self._end
            await self._wait_progress()
        data = self._inbox.popleft()
        self._progress.set()  # room in the inbox: the reader may continue
        return data

    async def wait_acknowledged(self) -> None:
        """Wait until the peer has acknowledged every frame sent so far."""
        while self._proto.unacked and self._end is None:
            await self._wait_progress()
        if self._proto.unacked:
            raise self._end

    async def close(self) -> None:
        """Send CLOSE, wait (at most close_timeout) for its ACK, end the TCP connection."""
        self._closing = True  # the application is done reading; let the reader reach the ACK of CLOSE
        self._inbox.clear()
        self._progress.set()
        if self._end is None:
            self._proto.close(CLOSE_OK)
            with contextlib.suppress(ScpError):
                await self._flush()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.config.close_timeout)
            except TimeoutError:
                self._task.cancel()
                self._finish(ScpConnectionClosed("closed without the peer's ACK (close_timeout)"))
        await self._shutdown()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.receive()
            except ScpConnectionClosed:
                return

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- internals

    async def _start(self, deadline: float | None = None) -> None:
        """Run the reader and wait for the handshake's end; at `deadline` (clock units) abandon it,
        whatever the connection is doing (reading, or stuck writing to a peer that does not read)."""
        self._task = asyncio.create_task(self._read_loop())
        waiter = asyncio.create_task(self._established.wait())
        timeout = None if deadline is None else max(0.0, deadline - self._clock())
        await asyncio.wait({self._task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if not self._established.is_set():
            if not self._task.done():
                self._finish(ScpHandshakeTimeout("handshake not complete by the server's deadline"))
                self._writer.transport.abort()  # not close(): that would wait for unsent data to drain
                self._task.cancel()
                await asyncio.wait({self._task})
            await self._shutdown()
            raise self._end or ScpIOError("handshake did not complete")

    async def _wait_progress(self) -> None:
        self._progress.clear()
        await self._progress.wait()

    async def _flush(self) -> None:
        data = self._proto.data_to_send()  # no await between taking and writing: frames stay in order
        if data:
            try:
                self._writer.write(data)
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._finish(ScpIOError(f"cannot send to the peer: {exc.__class__.__name__}"))
                raise self._end from exc

    async def _read_loop(self) -> None:
        proto = self._proto
        try:
            while True:
                await self._dispatch()
                await self._flush()
                if self._end is not None:
                    return
                deadline = proto.deadline()
                try:
                    async with asyncio.timeout(max(0.0, deadline - self._clock())):
                        data = await self._reader.read(READ_CHUNK)
                except TimeoutError:
                    proto.handle_timeout()  # raises once the deadline has really passed
                    continue
                if not data:
                    proto.connection_lost()
                    self._finish(ScpConnectionClosed("the connection is closed"))
                    return
                proto.receive_data(data)
        except ScpError as exc:
            self._finish(exc)
            with contextlib.suppress(ScpError):
                await self._flush()  # the CLOSE naming the error, when there are keys to send it with
        except (ConnectionError, OSError) as exc:
            self._finish(ScpIOError(f"connection to the peer failed: {exc.__class__.__name__}"))
        finally:
            self._finish(ScpConnectionClosed("the connection is closed"))
            await self._shutdown()

    async def _dispatch(self) -> None:
        while (event := self._proto.next_event()) is not None:
            if isinstance(event, MessageReceived):
                while len(self._inbox) >= self.config.max_queued_messages and not self._closing:
                    await self._wait_progress()  # back-pressure: stop reading until the app catches up
                if not self._closing:  # after close() nobody will read it
                    self._inbox.append(event.data)
            elif isinstance(event, HandshakeComplete):
                self._established.set()
            elif isinstance(event, PeerClosed):
                self._finish(ScpConnectionClosed("the peer closed the connection") if event.code == CLOSE_OK
                             else ScpRemoteClose(event.code))
            elif isinstance(event, CloseAcknowledged):
                self._finish(ScpConnectionClosed("the connection is closed"))
            self._progress.set()  # also for Acknowledged: a sender may be waiting for window space

    def _finish(self, end: ScpError) -> None:
        if self._end is None:
            self._end = end
        self._progress.set()

    async def _shutdown(self) -> None:
        if not self._writer.is_closing():
            self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


async def connect(host: str, port: int, identity: Identity, peer_verifier: PeerVerifier, *,
                  config: ScpConfig | None = None, clock: Callable[[], float] = time.monotonic,
                  randbytes: Callable[[int], bytes] = secrets.token_bytes,
                  session: SessionKey | None = None) -> Connection:
    """Open TCP, run the handshake, return the authenticated connection (or raise its ScpError).

    `session`: a KEY_EXCHANGE session with the server, mixed into the key schedule (use each once)."""
    config = config or ScpConfig()
    proto = ScpProtocol(Role.CLIENT, identity, peer_verifier, config=config, clock=clock, randbytes=randbytes,
                        session=session)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), config.handshake_timeout)
    except (OSError, TimeoutError) as exc:
        raise ScpIOError(f"cannot connect to {host}:{port}: {exc.__class__.__name__}") from exc
    proto.initiate()
    conn = Connection(proto, reader, writer, clock)
    await conn._start()
    return conn


class Server:
    """A listening SCP endpoint; `close()` stops listening and closes every open connection."""

    def __init__(self, admission: Admission) -> None:
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._admission = admission

    @property
    def port(self) -> int:
        return self._server.sockets[0].getsockname()[1]

    @property
    def admission(self) -> Admission:
        """The admission limits' live counters (connections open, handshakes in progress)."""
        return self._admission

    async def close(self) -> None:
        self._server.close()
        await asyncio.gather(*(c.close() for c in list(self._connections)), return_exceptions=True)
        await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def serve(host: str, port: int, identity: Identity, peer_verifier: PeerVerifier,
                on_connection: Callable[[Connection], Awaitable[None]], *,
                config: ScpConfig | None = None, clock: Callable[[], float] = time.monotonic,
                randbytes: Callable[[int], bytes] = secrets.token_bytes,
                on_error: Callable[[ScpError, object], None] | None = None,
                on_refused: Callable[[ScpError], None] | None = None,
                session_lookup: SessionLookup | None = None, require_session: bool = False) -> Server:
    """Listen on host:port (0 = any free port); run `on_connection` per authenticated connection.

    `session_lookup(session_id)` hands out the KEY_EXCHANGE session a client names, once, or None
    (`Sessions.lookup()`); with `require_session` a client that names none is refused (SCP-E-SESSION).

    Handshake failures and errors escaping `on_connection` go to `on_error(error, peername)` (default:
    a log line with the code, never key material). So do connections refused by the admission limits
    in `config` (`max_connections`, `max_handshakes`: SCP-E-BUSY; `max_handshakes_per_source`,
    `connect_rate`/`connect_burst` per source IP, timed by `clock`: SCP-E-RATE); those are dropped before
    any crypto work. A handshake still running `handshake_timeout` after admission is abandoned and its
    slot given back. `on_refused(error)` also hears each connection refused by admission or failed in
    its handshake (a counter: synapse's metrics.scp_refused).
    """
    config = config or ScpConfig()
    check_session_settings(Role.SERVER, None, session_lookup, require_session)
    admission = Admission(config, clock)
    server = Server(admission)

    def refused(exc: ScpError, peername: object) -> None:
        if on_refused is not None:
            on_refused(exc)
        report(exc, peername)

    def report(exc: ScpError, peername: object) -> None:
        if on_error is not None:
            on_error(exc, peername)
        else:
            log.warning("SCP connection from %s failed: %s %s", peername, exc.code, exc)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        try:
            ticket = admission.admit(peername[0] if isinstance(peername, tuple) else peername)
        except ScpError as exc:  # over a limit: drop it before any key is made or anything is read
            writer.transport.abort()
            refused(exc, peername)
            return
        try:
            proto = ScpProtocol(Role.SERVER, identity, peer_verifier, config=config, clock=clock,
                                randbytes=randbytes, session_lookup=session_lookup,
                                require_session=require_session)
            conn = Connection(proto, reader, writer, clock)
            try:
                await conn._start(ticket.deadline)
            except ScpError as exc:
                refused(exc, peername)
                return
            finally:
                ticket.handshake_done()
            server._connections.add(conn)
            try:
                await on_connection(conn)
            except ScpError as exc:
                if not isinstance(exc, ScpConnectionClosed):
                    report(exc, peername)
            finally:
                server._connections.discard(conn)
                await conn.close()
        finally:
            ticket.release()

    server._server = await asyncio.start_server(handle, host, port)
    return server
