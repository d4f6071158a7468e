"""Admission control for an SCP server (seed 002, Security Considerations: "rate limiting").

Pure: no I/O, the clock is injected. `serve()` asks `Admission.admit()` for every accepted TCP
connection before it builds a protocol object, so a refused connection costs no X25519 and no signature.

    admission = Admission(config, clock)
    ticket = admission.admit(source_ip)   # raises ScpBusyError / ScpRateLimited
    ...handshake, abandoned at ticket.deadline...
    ticket.handshake_done()
    ...application...
    ticket.release()
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

from axon.transports.scp_errors import ScpBusyError, ScpConfigError, ScpRateLimited
from axon.transports.scp_protocol import ScpConfig


class SourceBuckets:
    """One token bucket per source: `rate` tokens/s, at most `burst` held; a new connection takes one.

    Memory is bounded by `max_sources`. A bucket untouched for burst/rate seconds is full again, which is
    the same as having none, so such buckets are dropped first; when the table is still full the least
    recently seen source is forgotten (it starts again with a full bucket: fairer than refusing every
    new source, which would let many addresses lock everyone out).
    """

    def __init__(self, rate: float, burst: int, max_sources: int, clock: Callable[[], float]) -> None:
        if not rate > 0 or burst < 1 or max_sources < 1:
            raise ScpConfigError("SourceBuckets needs rate > 0, burst >= 1 and max_sources >= 1")
        self._rate = rate
        self._burst = burst
        self._max = max_sources
        self._clock = clock
        self._refill_time = burst / rate
        # source -> (tokens, time of the last update); ordered from least to most recently seen
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def tokens(self, source: Hashable) -> float:
        """Tokens `source` holds now (burst for a source not in the table)."""
        now = self._clock()
        held, then = self._buckets.get(source, (self._burst, now))
        return min(self._burst, held + max(0.0, now - then) * self._rate)

    def take(self, source: Hashable) -> bool:
        """Take one token for `source`; False (and nothing taken) when its bucket is empty."""
        now = self._clock()
        held = self.tokens(source)
        if held < 1:
            return False
        if source not in self._buckets:
            self._make_room(now)
        self._buckets[source] = (held - 1, now)
        self._buckets.move_to_end(source)
        return True

    def _make_room(self, now: float) -> None:
        while self._buckets:
            oldest, (_, then) = next(iter(self._buckets.items()))
            if now - then < self._refill_time and len(self._buckets) < self._max:
                return
            del self._buckets[oldest]  # full again (idle), or the table is at its cap


class Ticket:
    """One admitted connection's hold on the server's counters; each step counts once.

    `deadline` (clock units) is when its handshake slot must be given back, finished or not: the I/O
    shell abandons the handshake then, whatever the connection is doing.
    """

    def __init__(self, admission: Admission, source: Hashable, deadline: float) -> None:
        self._admission = admission
        self.source = source
        self.deadline = deadline
        self._handshaking = True
        self._open = True

    def handshake_done(self) -> None:
        """The handshake ended (either way): the connection no longer counts as a handshake."""
        if self._handshaking:
            self._handshaking = False
            self._admission._handshake_ended(self.source)

    def release(self) -> None:
        """The connection is gone."""
        self.handshake_done()
        if self._open:
            self._open = False
            self._admission._connections -= 1


class Admission:
    """A server's limits on connections: how many at once, how many handshaking (in all and per source),
    how fast per source, and how long a handshake may hold its slot."""

    def __init__(self, config: ScpConfig, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        self._buckets = SourceBuckets(config.connect_rate, config.connect_burst, config.max_rate_sources,
                                      clock)
        self._connections = 0
        self._handshakes = 0
        # source -> handshakes in progress; a source leaves the table when its count is back to 0, so the
        # table never holds more than max_handshakes entries.
        self._handshakes_by_source: dict[Hashable, int] = {}

    @property
    def connections(self) -> int:
        return self._connections

    @property
    def handshakes(self) -> int:
        return self._handshakes

    def handshakes_from(self, source: Hashable) -> int:
        return self._handshakes_by_source.get(source, 0)

    def admit(self, source: Hashable) -> Ticket:
        """Admit one new connection from `source` or raise; checks that change nothing come first, so a
        connection refused as busy does not spend its source's token."""
        if self._connections >= self._config.max_connections:
            raise ScpBusyError(f"server at its limit of {self._config.max_connections} connections")
        if self._handshakes >= self._config.max_handshakes:
            raise ScpBusyError(f"server at its limit of {self._config.max_handshakes} handshakes in progress")
        if self.handshakes_from(source) >= self._config.max_handshakes_per_source:
            raise ScpRateLimited(f"this source already has {self._config.max_handshakes_per_source} "
                                 "handshakes in progress")
        if not self._buckets.take(source):
            raise ScpRateLimited(f"new connections from this source exceed {self._config.connect_rate:g}/s "
                                 f"(burst {self._config.connect_burst})")
        self._connections += 1
        self._handshakes += 1
        self._handshakes_by_source[source] = self.handshakes_from(source) + 1
        return Ticket(self, source, self._clock() + self._config.handshake_timeout)

    def _handshake_ended(self, source: Hashable) -> None:
        self._handshakes -= 1
        left = self._handshakes_by_source.pop(source) - 1
        if left:
            self._handshakes_by_source[source] = left
