"""Waiting for an event in a test, not for a fixed time: a fixed sleep followed by an assertion fails on
a busy machine (it measures the machine, not the code). The deadline only bounds a failure: generous."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 30.0


def wait_until(predicate: Callable[[], T], timeout: float = DEADLINE_S, what: str = "the condition",
               poll: float = 0.05) -> T:
    """Call `predicate` until it returns something truthy and return that; AssertionError naming `what`
    once `timeout` seconds have passed without it."""
    deadline = time.monotonic() + timeout
    while True:
        found = predicate()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)
