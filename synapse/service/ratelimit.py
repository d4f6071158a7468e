"""Request rate bounds: one token bucket per client (address or credential name)."""

from __future__ import annotations

import time
from collections.abc import Callable

from synapse.service.errors import RateLimited

_MAX_CLIENTS = 10_000


class RateLimiter:
    """`rate` tokens per second refill each client's bucket up to `burst`; a request takes one.

    Buckets of clients not seen for a while are forgotten (a full bucket is the same as no bucket), so
    the table stays bounded even when addresses vary.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, last refill time)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def check(self, client: str, cost: float = 1.0) -> None:
        """Take `cost` tokens from `client`'s bucket or raise RateLimited with a Retry-After."""
        if self.rate <= 0:
            return
        now = self._clock()
        tokens, last = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < cost:
            self._buckets[client] = (tokens, now)
            retry = (cost - tokens) / self.rate
            raise RateLimited(f"more than {self.rate:g} requests per second (burst {self.burst:g}); "
                              f"retry in {retry:.3f} s", retry_after=retry)
        self._buckets[client] = (tokens - cost, now)
        if len(self._buckets) > _MAX_CLIENTS:
            self._forget(now)

    def _forget(self, now: float) -> None:
        full_after = self.burst / self.rate
        self._buckets = {c: (t, last) for c, (t, last) in self._buckets.items() if now - last < full_after}
        if len(self._buckets) > _MAX_CLIENTS:  # a flood of distinct clients: keep the most recent
            recent = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[-_MAX_CLIENTS // 2:]
            self._buckets = dict(recent)
