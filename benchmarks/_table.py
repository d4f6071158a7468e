"""Timing and the printed table, shared by the benchmark scripts (run from this folder's scripts, which
have it on sys.path: `from _table import per_op_us, print_table`)."""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable, Collection, Iterator, Sequence


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect, then keep the garbage collector off while timing (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def seconds_per_call(fn: Callable[[], object], n: int) -> float:
    """Mean seconds per call over `n` calls in a row."""
    with gc_paused():
        start = time.perf_counter_ns()
        for _ in range(n):
            fn()
        return (time.perf_counter_ns() - start) / n / 1e9


def per_op_us(fn: Callable[[], object], n: int, rounds: int) -> tuple[float, float]:
    """(median, best) microseconds per call over `rounds` rounds of `n` calls.

    On a shared machine the slower rounds measure the other processes: the best is the figure to judge
    a target on (timeit's advice), the median shows the spread.
    """
    results = [seconds_per_call(fn, n) * 1e6 for _ in range(rounds)]
    return statistics.median(results), min(results)


def p50_p99(samples: Sequence[float]) -> tuple[float, float]:
    """The median and the 99th percentile (nearest rank) of `samples`."""
    ordered = sorted(samples)
    n = len(ordered)
    return ordered[n // 2], ordered[min(n - 1, (n * 99) // 100)]


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Collection[int] = ()) -> None:
    """Columns as wide as their widest cell, two spaces apart, a rule under the header; the columns
    whose index is in `right` (figures) are right-aligned, the others left-aligned."""
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    print(line(header))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
