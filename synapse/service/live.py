"""What the operator page shows of the decisions a worker makes: the latest ones, per-minute verdict
counts and latency over the last hour, and live delivery to whoever watches (the page's event stream).

It keeps no telemetry or context: a decision's inputs may hold masked fields (docs/service.md, "The
decision log"), and the page is readable by anyone with the evaluate scope. A watcher that cannot take
an item (its stream is gone) is dropped; a watcher never slows a decision down beyond the call that
hands it the item. Thread-safe: decisions are made on the event loop and in the sidecar's threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

VERDICTS = ("ALLOW", "WARN", "HALT", "DENY")
Deliver = Callable[[dict[str, Any]], None]


class _Minute:
    __slots__ = ("counts", "latency_max", "latency_sum", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.counts = dict.fromkeys(VERDICTS, 0)
        self.latency_sum = 0.0
        self.latency_max = 0.0


class DecisionFeed:
    """The last `keep` decisions, `window` seconds of per-`bucket` statistics, and the watchers."""

    def __init__(self, *, keep: int = 200, window: int = 3600, bucket: int = 60) -> None:
        self._recent: deque[tuple[Mapping[str, Any], float, float, str]] = deque(maxlen=keep)
        self._minutes: deque[_Minute] = deque(maxlen=window // bucket)
        self._bucket = bucket
        self._window = window
        self._watchers: dict[int, Deliver] = {}
        self._next_watcher = 0
        self._lock = threading.Lock()

    def record(self, decision: Mapping[str, Any], *, latency_s: float, source: str, now: float) -> None:
        """One decision as recorded (the service's `Decision.to_dict()`, without its inputs), kept as
        given: pass a dict nobody changes afterwards. On the decision path this is an append and a few
        additions; the JSON of an item is made only for a watcher or a reader."""
        verdict = decision.get("verdict")
        with self._lock:
            self._recent.append((decision, now, latency_s, source))
            minute = self._minutes[-1] if self._minutes else None
            if minute is None or now >= minute.start + self._bucket:
                minute = _Minute(int(now) - int(now) % self._bucket)
                self._minutes.append(minute)
            minute.counts[verdict if verdict in minute.counts else "DENY"] += 1
            minute.latency_sum += latency_s
            if latency_s > minute.latency_max:
                minute.latency_max = latency_s
            if not self._watchers:
                return
            watchers = list(self._watchers.items())
        item = _item(decision, now, latency_s, source)
        for key, deliver in watchers:
            try:
                deliver(item)
            except Exception:  # its stream (and event loop) is gone: stop handing it items
                self.unwatch(key)

    def recent(self) -> list[dict[str, Any]]:
        """The latest decisions, oldest first."""
        with self._lock:
            held = list(self._recent)
        return [_item(*entry) for entry in held]

    def stats(self, now: float) -> dict[str, Any]:
        """Per bucket of the last window (oldest first, empty buckets included): verdict counts, mean and
        highest latency in milliseconds."""
        end = int(now) - int(now) % self._bucket
        first = end - self._window + self._bucket
        with self._lock:
            by_start = {m.start: m for m in self._minutes if m.start >= first}
            buckets = []
            for start in range(first, end + 1, self._bucket):
                m = by_start.get(start)
                total = sum(m.counts.values()) if m else 0
                buckets.append({
                    "start": start,
                    "counts": dict(m.counts) if m else dict.fromkeys(VERDICTS, 0),
                    "latency_ms_mean": round(m.latency_sum / total * 1000, 3) if m and total else None,
                    "latency_ms_max": round(m.latency_max * 1000, 3) if m and total else None,
                })
        return {"bucket_seconds": self._bucket, "buckets": buckets}

    def watch(self, deliver: Deliver) -> int:
        """Hand every later decision to `deliver` (called in the deciding thread); a key for unwatch."""
        with self._lock:
            key = self._next_watcher
            self._next_watcher += 1
            self._watchers[key] = deliver
            return key

    def unwatch(self, key: int) -> None:
        with self._lock:
            self._watchers.pop(key, None)


def _item(decision: Mapping[str, Any], now: float, latency_s: float, source: str) -> dict[str, Any]:
    return {**decision, "time": now, "latency_ms": round(latency_s * 1000, 3), "source": source}
