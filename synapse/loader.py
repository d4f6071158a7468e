"""Where policy modules come from: the one entry point that turns a file into an `Evaluator`.

Today a raw `.wasm` module (for development: nothing vouches for it). Signed `.sop` artifacts, verified
by Axon before anything runs, arrive here too, so the CLI and the service never open modules themselves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from synapse.errors import ModuleUnreadable
from synapse.evaluate import Evaluator
from synapse.sandbox import Limits, load_module


def open_module(
    path: str | Path, *, limits: Limits | None = None, clock: Callable[[], float] = time.time
) -> Evaluator:
    """Read, check and instantiate the module at `path`; raise a `ModuleError` naming what is wrong."""
    try:
        wasm = Path(path).read_bytes()
    except OSError as exc:
        raise ModuleUnreadable(f"cannot read module {str(path)!r}: {exc.strerror or exc}") from None
    return Evaluator(load_module(wasm), limits=limits, clock=clock)
