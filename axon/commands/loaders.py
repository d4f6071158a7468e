"""What commands of all three CLIs load from their arguments: a signing key and the ledger.

Not a command itself (it is in no COMMANDS list): `scc package`, `axon verify`, `axon msg` and
`axon ledger` share these so that a missing key or ledger reads the same whichever command met it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from axon.clikit import UsageError
from axon.keys import Identity, KeyMaterialError, load_identity
from axon.ledger import ChainBroken, Ledger, LedgerError, LedgerStorageError

if TYPE_CHECKING:
    from axon.ledger.chain import ChainLedger

LEDGER_ENV = "SOPCOS_LEDGER"
INDEX_ENV = "SOPCOS_LEDGER_INDEX"
CONFIRMATIONS_ENV = "SOPCOS_LEDGER_CONFIRMATIONS"


def load_key(path: str | Path | None) -> Identity:
    """The key in key file `path`, else in $SOPCOS_KEY; missing, malformed or locked is a usage error."""
    try:
        return load_identity(path)
    except KeyMaterialError as exc:
        raise UsageError(str(exc)) from None


def ledger_location(path: str | Path | None) -> str:
    """--ledger PATH|URL, else $SOPCOS_LEDGER; neither is a usage error."""
    path = path or os.environ.get(LEDGER_ENV)
    if not path:
        raise UsageError(f"no ledger given: pass --ledger PATH or set {LEDGER_ENV} (a ledger file, or an "
                         "Ethereum node's http(s):// URL)")
    return str(path)


def ledger_path(path: str | Path | None) -> Path:
    """--ledger PATH, else $SOPCOS_LEDGER; neither is a usage error."""
    return Path(ledger_location(path))


def chain_index_path(url: str, index: str | Path | None = None) -> Path:
    """Where a command keeps its index of the ledger on the chain at `url`: --index, else
    $SOPCOS_LEDGER_INDEX, else one file per URL under the user's cache directory."""
    index = index or os.environ.get(INDEX_ENV)
    if index:
        return Path(index)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sopcos"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / f"ledger-index-{hashlib.sha256(url.encode()).hexdigest()[:16]}.sqlite"


def open_chain_ledger(url: str, index: str | Path | None = None,
                      confirmations: int | None = None) -> ChainLedger:
    """The ledger on the Ethereum node at `url`, its index brought up to the confirmed head (web3 is
    imported only here). An unreachable node, another chain or a broken index is a usage error."""
    from axon.ledger.chain import ChainLedger

    if confirmations is None:
        confirmations = int(os.environ.get(CONFIRMATIONS_ENV, "0"))
    try:
        return ChainLedger.connect_followed(url, chain_index_path(url, index), confirmations=confirmations)
    except LedgerError as exc:
        raise UsageError(f"cannot follow the ledger on {url}: {exc} [{exc.code}]") from None


def open_ledger(path: str | Path | None) -> Ledger:
    """The ledger (see `ledger_path`) for a command that relies on it: a missing file, a file that is not
    a ledger, and entries that no longer replay (ChainBroken) are all usage errors: the input is unusable.
    """
    try:
        return open_ledger_to_check(path)
    except ChainBroken as exc:
        raise UsageError(f"cannot use ledger {ledger_path(path)}: {exc} [{exc.code}]") from None


def open_ledger_to_check(path: str | Path | None, index: str | Path | None = None,
                         confirmations: int | None = None) -> Ledger:
    """As `open_ledger`, but ChainBroken passes through: `axon ledger` reports it as a failed check.
    An http(s):// URL is a ledger on an Ethereum node (open_chain_ledger)."""
    location = ledger_location(path)
    if location.lower().startswith(("http://", "https://")):
        return open_chain_ledger(location, index, confirmations)
    try:
        return Ledger.open(ledger_path(path))
    except LedgerStorageError as exc:
        raise UsageError(str(exc)) from None
