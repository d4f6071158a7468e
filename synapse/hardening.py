"""Keeping a decrypted policy module out of core dumps, other processes and swap (docs/artifacts.md).

`harden_process()` runs first in every process that may hold a decrypted module or the node key
(`synapse serve`/`run` and each of their workers, `synapse eval` of a `.sop`):

- RLIMIT_CORE (0, 0): the kernel writes no core file, and the process cannot raise the limit again;
- PR_SET_DUMPABLE 0 (Linux): no core dump through a pipe handler either (the kernel calls
  systemd-coredump or apport whatever RLIMIT_CORE says), and processes of the same user may no
  longer ptrace the process or read its /proc/PID/mem. execve resets the flag, so a spawned worker
  hardens itself again.

`locked_bytearray(n)` is a bytearray whose pages are mlock()ed where RLIMIT_MEMLOCK allows (so the
plaintext is never written to swap), and `wipe(buffer)` zeroes and unlocks it: Axon decrypts the
module into one (`Verifier(plaintext=locked_bytearray)`), Synapse compiles from it, then wipes it.
Only that buffer is locked, never the whole process (mlockall): wasmtime reserves gigabytes of
virtual address space per instance, which mlockall would try to pin. What this does not cover
(wasmtime's compiled code, copies made on the way, root) is listed in docs/artifacts.md.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from dataclasses import dataclass
from functools import cache

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


@cache
def _libc() -> ctypes.CDLL | None:
    # Found on first use, not at import: ctypes.util and find_library cost a command that never
    # hardens (`synapse eval X.wasm`) part of its start-up (issue 15).
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None


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
    libc = _libc()
    if sys.platform.startswith("linux") and libc is not None:
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
            not_dumpable = dumpable() == 0
        else:
            notes.append(f"PR_SET_DUMPABLE refused: errno {ctypes.get_errno()}")
    else:
        notes.append("PR_SET_DUMPABLE is Linux only")
    return Hardening(no_core, not_dumpable, tuple(notes))


def dumpable() -> int | None:
    """PR_GET_DUMPABLE (0: not dumpable), or None where there is no prctl."""
    libc = _libc()
    if not sys.platform.startswith("linux") or libc is None:
        return None
    return int(libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


class LockedPlaintext(bytearray):
    """A bytearray that is wiped when it is collected, if nobody wiped it before (a module decrypted
    and then not compiled: an artifact re-verified while its evaluator is kept, or refused late)."""

    def __del__(self) -> None:
        wipe(self)


def locked_bytearray(size: int) -> bytearray:
    """A zero-filled LockedPlaintext whose pages are mlock()ed when RLIMIT_MEMLOCK (or CAP_IPC_LOCK)
    allows, else the same unlocked. For `Verifier(plaintext=locked_bytearray)`. Do not resize it (that
    would move it off the locked pages); `wipe` it once used."""
    buffer = LockedPlaintext(size)
    libc = _libc()
    if size and libc is not None:
        libc.mlock(ctypes.c_void_p(_address(buffer)), ctypes.c_size_t(size))
    return buffer


def wipe(buffer: bytearray) -> None:
    """Zero `buffer` in place, then unlock its pages."""
    size = len(buffer)
    if size:
        address = _address(buffer)
        ctypes.memset(address, 0, size)
        libc = _libc()
        if libc is not None:
            libc.munlock(ctypes.c_void_p(address), ctypes.c_size_t(size))


def _address(buffer: bytearray) -> int:
    return ctypes.addressof((ctypes.c_char * len(buffer)).from_buffer(buffer))
