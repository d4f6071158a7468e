"""What commands of all three CLIs load from their arguments: a signing key and the ledger.

Not a command itself (it is in no COMMANDS list): `scc package`, `axon verify`, `axon msg` and
`axon ledger` share these so that a missing key or ledger reads the same whichever command met it.
"""

from __future__ import annotations

import os
from pathlib import Path

from axon.clikit import UsageError
from axon.keys import Identity, KeyMaterialError, load_identity
from axon.ledger import ChainBroken, Ledger, LedgerStorageError

LEDGER_ENV = "SOPCOS_LEDGER"


def load_key(path: str | Path | None) -> Identity:
    """The key in key file `path`, else in $SOPCOS_KEY; missing, malformed or locked is a usage error."""
    try:
        return load_identity(path)
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from None


def ledger_path(path: str | Path | None) -> Path:
    """--ledger PATH, else $SOPCOS_LEDGER; neither is a usage error."""
    path = path or os.environ.get(LEDGER_ENV)
    if not path:
        raise UsageError(f"no ledger given: pass --ledger PATH or set {LEDGER_ENV}")
    return Path(path)


def open_ledger(path: str | Path | None) -> Ledger:
    """The ledger (see `ledger_path`) for a command that relies on it: a missing file, a file that is not
    a ledger, and entries that no longer replay (ChainBroken) are all usage errors: the input is unusable.
    """
    try:
        return open_ledger_to_check(path)
    except ChainBroken as exc:
        raise UsageError(f"cannot use ledger {ledger_path(path)}: {exc} [{exc.code}]") from None


def open_ledger_to_check(path: str | Path | None) -> Ledger:
    """As `open_ledger`, but ChainBroken passes through: `axon ledger` reports it as a failed check."""
    try:
        return Ledger.open(ledger_path(path))
    except LedgerStorageError as exc:
        raise UsageError(str(exc)) from None
