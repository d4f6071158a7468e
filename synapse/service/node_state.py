"""What a node must remember across its workers and its restarts: the signed requests it accepted, and
the highest ledger head it verified.

Both live in one SQLite file in the node's store directory (`<store>/node-state.sqlite`, WAL), which
every worker of the node opens: SQLite's locking makes "accept this request once" and "the head only
moves forward" atomic between processes, and the file outlives a restart. Memory per worker would let
a captured request replay on another worker or after a restart, and would let a node that restarted
take a shortened ledger for the real one.

    accepted_requests(digest PRIMARY KEY, expires_at)   digest: what the request signed (auth.py);
                                                        expired rows are pruned on insert
    verified_head(id = 1, seq, hash)                    the highest head this node checked (ledger_link.py)
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from synapse.service.errors import ServiceError

FILE_NAME = "node-state.sqlite"
Head = tuple[int, bytes]  # a ledger entry: (seq, entry hash)
_BUSY_TIMEOUT_MS = 5000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS accepted_requests (digest BLOB PRIMARY KEY, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS accepted_requests_expiry ON accepted_requests (expires_at);
CREATE TABLE IF NOT EXISTS verified_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL,
                                          hash BLOB NOT NULL);
"""


class NodeStateError(ServiceError):
    code = "SYNAPSE-SVC-NODE-STATE"
    status = 503


class NodeState:
    """The node's shared memory (see the module docstring). Opened on first use; safe to call from
    several threads (one connection, one lock) and several processes (SQLite's locks)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = FULL")  # an accepted request stays accepted after a crash
                conn.executescript(_SCHEMA)
            except (OSError, sqlite3.Error) as exc:
                raise NodeStateError(f"cannot open the node state {self.path}: {exc}") from None
            self._conn = conn
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken before reading (BEGIN IMMEDIATE): no other worker interleaves."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise NodeStateError(f"cannot {what} in {self.path}: {exc}") from None

    # -- signed requests -----------------------------------------------------------------------------

    def accept_once(self, digest: bytes, expires_at: float, now: float, limit: int) -> bool:
        """Record `digest` as accepted until `expires_at`: True the first time, False if any worker
        already accepted it (a replay). Raises NodeStateError beyond `limit` unexpired entries."""
        with self._write("record the request") as conn:
            conn.execute("DELETE FROM accepted_requests WHERE expires_at < ?", (now,))
            if conn.execute("SELECT 1 FROM accepted_requests WHERE digest = ?", (digest,)).fetchone():
                return False
            if conn.execute("SELECT count(*) FROM accepted_requests").fetchone()[0] >= limit:
                raise NodeStateError(f"{limit} signed requests accepted within the replay window: refusing "
                                     "more until some expire")
            conn.execute("INSERT INTO accepted_requests (digest, expires_at) VALUES (?, ?)",
                         (digest, expires_at))
            return True

    # -- ledger head ---------------------------------------------------------------------------------

    def verified_head(self) -> Head | None:
        with self._lock:
            try:
                row = self._connection().execute("SELECT seq, hash FROM verified_head").fetchone()
            except sqlite3.Error as exc:
                raise NodeStateError(f"cannot read {self.path}: {exc}") from None
        return None if row is None else (int(row[0]), bytes(row[1]))

    def advance_head(self, check: Callable[[Head | None], Head]) -> Head:
        """Under the file's write lock: `check(remembered)` returns the head to remember (or raises, and
        nothing changes); the remembered head only moves forward. Returns the head now remembered."""
        with self._write("remember the ledger head") as conn:
            row = conn.execute("SELECT seq, hash FROM verified_head").fetchone()
            remembered = None if row is None else (int(row[0]), bytes(row[1]))
            seq, head_hash = check(remembered)
            if remembered is None or seq > remembered[0]:
                conn.execute("INSERT INTO verified_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT (id) "
                             "DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, head_hash))
                remembered = (seq, head_hash)
            return remembered
