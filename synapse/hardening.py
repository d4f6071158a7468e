"""Keeping a decrypted policy module out of core dumps, other processes and swap (docs/artifacts.md).

`harden_process()` runs first in every process that may hold a decrypted module or the node key
(`synapse serve`/`run` and each of their workers, `synapse eval` of a `.sop`):

- RLIMIT_CORE (0, 0): the kernel writes no core file, and the process cannot raise the limit again;
- PR_SET_DUMPABLE 0 (Linux): no core dump through a pipe handler either (systemd-coredump, apport,
  which ignore RLIMIT_CORE), and processes of the same user may no longer ptrace the process or read
  its /proc/PID/mem. execve resets the flag, so a spawned worker hardens itself again.

`LockedBuffer(n)` is a bytearray whose pages are mlock()ed where RLIMIT_MEMLOCK allows (so the
plaintext is never written to swap) and which `wipe()` zeroes: the module is decrypted into it,
compiled from it, then wiped. Only that buffer is locked, never the whole process (mlockall):
wasmtime reserves gigabytes of virtual address space per instance, which mlockall would try to
pin. What this does not cover (wasmtime's compiled code, copies Python makes, root) is listed in
docs/artifacts.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import resource
import sys
from dataclasses import dataclass
from types import TracebackType

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


_LIBC = _libc()


@dataclass(frozen=True)
class Hardening:
    """What `harden_process` achieved; each False says why in `notes`."""

    no_core_file: bool
    not_dumpable: bool
    notes: tuple[str, ...] = ()


def harden_process() -> Hardening:
    """No core dumps, not dumpable (Linux). Never raises: what the OS refuses is reported, not fatal."""
    notes: list[str] = []
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        no_core = True
    except (OSError, ValueError) as exc:
        no_core = False
        notes.append(f"RLIMIT_CORE not set to 0: {exc}")
    not_dumpable = False
    if sys.platform.startswith("linux") and _LIBC is not None:
        if _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
            not_dumpable = dumpable() == 0
        else:
            notes.append(f"PR_SET_DUMPABLE refused: errno {ctypes.get_errno()}")
    else:
        notes.append("PR_SET_DUMPABLE is Linux only")
    return Hardening(no_core, not_dumpable, tuple(notes))


def dumpable() -> int | None:
    """PR_GET_DUMPABLE (0: not dumpable), or None where there is no prctl."""
    if not sys.platform.startswith("linux") or _LIBC is None:
        return None
    return int(_LIBC.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


class LockedBuffer:
    """A zero-filled bytearray of `size` bytes, mlock()ed if the OS allows (`locked` says whether).

    Use it as a context manager, or call `wipe()`: the bytes are zeroed, then unlocked. A buffer must
    not be resized (its address would change), so hand out `data` only to code that writes in place.
    """

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        # The ctypes view holds an export of the bytearray, so it cannot be resized (moved) while alive.
        self._view = (ctypes.c_char * size).from_buffer(self.data) if size else None
        self._address = ctypes.addressof(self._view) if self._view is not None else 0
        self.locked = bool(size) and _LIBC is not None and _LIBC.mlock(
            ctypes.c_void_p(self._address), ctypes.c_size_t(size)) == 0

    def __len__(self) -> int:
        return len(self.data)

    def wipe(self) -> None:
        size = len(self.data)
        if size:
            ctypes.memset(self._address, 0, size)
            if self.locked and _LIBC is not None:
                _LIBC.munlock(ctypes.c_void_p(self._address), ctypes.c_size_t(size))
        self.locked = False

    def __enter__(self) -> LockedBuffer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.wipe()
