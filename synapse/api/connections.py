"""HTTP connections of one worker, bounded against slow and greedy clients (docs/service.md, "Connections").

uvicorn with httptools bounds none of these by default: a connection that never sends a byte is held
forever, a request head may be any size and take any time, and connections are accepted until the
process runs out of file descriptors (and then the ledger follower fails too). `GuardedProtocol` is
uvicorn's httptools protocol with four bounds added:

- a cap on open connections (`max_connections`): a new connection over it evicts the least recently
  active connection that is waiting for its client (idle, or still sending a request), else it gets
  503 `SYNAPSE-SVC-BUSY`. File descriptors used by clients stay under the cap, whatever they do.
- the request head: at most `max_head_bytes` (431 `SYNAPSE-SVC-HEAD-TOO-LARGE`), complete within
  `head_timeout` seconds of its first byte (408 `SYNAPSE-SVC-HEAD-TIMEOUT`);
- the request body: complete within `body_timeout` seconds of the head (else the connection is closed;
  the application sees the client disconnect);
- idleness: a connection with no request in progress is closed after `keep_alive_timeout` seconds,
  a new one included (uvicorn arms that timer only after a first response).

`ConnectionTable` is the decision part, without I/O, so it can be tested alone.
"""

from __future__ import annotations

import asyncio
import enum
import json
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

Conn = TypeVar("Conn", bound=Hashable)


class ConnectionTable(Generic[Conn]):
    """Which connections are open, and which of them wait for their client, least recently active first.

    A connection is either *waiting* (for its client: idle, or a request still arriving) or *busy* (the
    server owes it a response). Only waiting connections may be evicted: closing them costs the server
    no work already done, and a client that is really there reconnects.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._waiting: OrderedDict[Conn, None] = OrderedDict()
        self._busy: set[Conn] = set()

    def __len__(self) -> int:
        return len(self._waiting) + len(self._busy)

    def open(self, conn: Conn) -> tuple[bool, Conn | None]:
        """Admit `conn` as waiting: (admitted, the connection to evict for it, if any)."""
        victim = None
        if len(self) >= self.capacity:
            if not self._waiting:
                return False, None
            victim, _ = self._waiting.popitem(last=False)
        self._waiting[conn] = None
        return True, victim

    def active(self, conn: Conn) -> None:
        """The client sent something: it becomes the most recently active of the waiting ones."""
        if conn in self._waiting:
            self._waiting.move_to_end(conn)

    def busy(self, conn: Conn) -> None:
        if self._waiting.pop(conn, 0) is None:  # 0: not there (evicted or closed); None: it was
            self._busy.add(conn)

    def waiting(self, conn: Conn) -> None:
        if conn in self._busy:
            self._busy.discard(conn)
            self._waiting[conn] = None

    def close(self, conn: Conn) -> None:
        self._waiting.pop(conn, None)
        self._busy.discard(conn)


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    max_head_bytes: int
    head_timeout: float
    body_timeout: float
    keep_alive_timeout: float


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """The protocol class for one worker's server: one table, shared by the worker's connections."""
    return type("GuardedProtocol", (GuardedProtocol,), {"limits": limits,
                                                        "table": ConnectionTable(limits.max_connections)})


def _refusal(status: int, code: str, message: str) -> bytes:
    body = json.dumps({"code": code, "message": message, "errors": []}).encode()
    retry = b"retry-after: 1\r\n" if status == 503 else b""
    return b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: ", str(len(body)).encode(), b"\r\n", retry,
                     b"connection: close\r\n\r\n", body])


class _HeadTooLarge(Exception):
    """Raised inside the parser's callback to stop parsing (the 431 is already on its way)."""


class Phase(enum.Enum):
    """What a connection waits for."""

    HEAD = "a request head"  # idle, or a head arriving (a pipelined one too, while the server works)
    BODY = "the body"
    SERVING = "the server"


class GuardedProtocol(HttpToolsProtocol):
    limits: ConnectionLimits
    table: ConnectionTable[GuardedProtocol]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = Phase.HEAD
        self._head_bytes = 0  # received since the last request was complete: the next head, so far
        self._read_timer: asyncio.TimerHandle | None = None  # the head's or the body's deadline

    # -- opening and closing

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        admitted, victim = self.table.open(self)
        if victim is not None:
            victim.transport.close()
        if not admitted:
            self._refuse(503, "SYNAPSE-SVC-BUSY",
                         f"the server has {self.limits.max_connections} connections, all being served; "
                         "retry shortly")
            return
        # A new connection is idle until it sends something: the keep-alive bound applies from the start.
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                            self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self.table.close(self)
        self._stop_read_timer()
        super().connection_lost(exc)

    def _refuse(self, status: int, code: str, message: str) -> None:
        self._stop_read_timer()
        if not self.transport.is_closing():
            self.transport.write(_refusal(status, code, message))
            self.transport.close()

    # -- reading requests

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        self.table.active(self)
        if self._phase is not Phase.BODY:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no upgrade is served (websockets are off)
        except httptools.HttpParserError:
            if not self.transport.is_closing():  # closing: our own refusal stopped the parser
                self.send_400_response("Invalid HTTP request received.")
            return
        if self.transport.is_closing():
            return
        if self._phase is not Phase.BODY and self._head_bytes > self.limits.max_head_bytes:
            self._head_too_large()
        elif self._read_timer is None:
            # A request that arrived whole needs no timer; one still arriving gets its deadline now.
            if self._phase is Phase.HEAD and self._head_bytes:
                self._read_timer = self.loop.call_later(self.limits.head_timeout, self._head_timed_out)
            elif self._phase is Phase.BODY:
                self._read_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def on_headers_complete(self) -> None:
        # The bytes counted may include the start of a body; only then is the head itself measured.
        if self._head_bytes > self.limits.max_head_bytes and self._head_size() > self.limits.max_head_bytes:
            self._head_too_large()
            raise _HeadTooLarge
        self._stop_read_timer()
        self._phase = Phase.BODY
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_read_timer()
        self._phase, self._head_bytes = Phase.HEAD, 0
        if self.cycle is not None and not self.cycle.response_complete:
            self._phase = Phase.SERVING
            self.table.busy(self)
        super().on_message_complete()

    def on_response_complete(self) -> None:
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined:
            if self._phase is Phase.SERVING:
                self._phase = Phase.HEAD
            self.table.waiting(self)

    # -- deadlines

    def _head_size(self) -> int:
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _head_too_large(self) -> None:
        self._refuse(431, "SYNAPSE-SVC-HEAD-TOO-LARGE",
                     f"the request head is larger than {self.limits.max_head_bytes} bytes")

    def _head_timed_out(self) -> None:
        self._read_timer = None
        self._refuse(408, "SYNAPSE-SVC-HEAD-TIMEOUT",
                     f"the request head did not arrive within {self.limits.head_timeout:g} s")

    def _body_timed_out(self) -> None:
        # The application is reading the body: closing tells it the client is gone; no answer is owed.
        self._read_timer = None
        self.transport.close()

    def _stop_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None
