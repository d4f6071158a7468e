"""The decision log: every decision, appended as a JSON line to a hash chain sealed by the node key.

Layout. A log is a directory. Each writer (one per worker process) owns a *stream* named `w0`, `w1`, ...
whose records are spread over numbered segment files `<stream>-000001.jsonl`, `-000002`, ...; a new
segment starts when the current one reaches `rotate_bytes`.

Records. Every record is one line: a JSON object (UTF-8, no whitespace, written once by orjson) with
`seq` (1, 2, 3, ... across the stream's segments), `time` (Unix seconds), `kind`, `prev` (the
previous record's `hash`; the first record of a stream has `GENESIS`), its own fields, and last `hash`.
The hash covers the bytes as written, not a re-encoding: with BODY the record's JSON without `hash`,
    line = BODY[:-1] + ',"hash":"sha256:' + hex(SHA-256(BODY)) + '"}' + "\n"      (hex: 64 lowercase)
so a verifier takes the fixed-length suffix ,"hash":"sha256:<64 hex>"} off the line, puts back the
`}` and hashes that. The suffix cannot be mistaken for part of a string (a `"` inside a JSON string is
always written `\"`), and the line must still parse as one JSON object without repeated names.
Lines end at b"\n" only (U+2028 and other separators inside strings are written as they are).
Kinds:
  segment   first record of every segment file: stream, stream_id, segment index, node DID and key
  start     a writer (re)opened the stream; notes a damaged tail left by a crash
  decision  one evaluation: decision_id, policy, urn, version, verdict, code, rule, reason, gas_used,
            logs, telemetry and context (masked fields as {"hmac-sha256": hex})
  event     {"event": name, "data": {...}}: an artifact lifecycle event (uploaded, loaded, retired,
            revoked, pinned, ...), an alert sent, a command handled
  seal      with UNSIGNED the seal's JSON without `signature` and `hash`,
                BODY = UNSIGNED[:-1] + ',"signature":"' + hex(ECDSA) + '"}'      (hex: 128 lowercase)
            where ECDSA is the node key's 64-byte r‖s signature of SHA-256(UNSIGNED); it covers
            `prev`, so it vouches for the whole chain before it
  stop      a clean shutdown (always followed by a final seal)
Values are written as loggable() says: JSON has no NaN, no infinity and (for most readers) no
integers beyond 2**53.

What this detects. Changing any byte of a record (a value, a name, whitespace, its hash) breaks it;
recomputing the hashes breaks every later seal's signature (which needs the node key); deleting,
reordering or repeating records breaks `seq` and `prev`; deleting a whole segment leaves a gap in the
segment numbers, and deleting segments at the end leaves a seal whose `next_segment` names a missing
file (the writer seals at rotation with it). A stream is bound to the node its first record declares
(later segment records and every seal must name the same DID and key), and the writer seals right
after opening, so even a short-lived stream carries the node's signature. Verification accepts only
what a seal covers: a stream without seals fails, and records after the last seal fail unless the
caller accepts an unsealed tail (a running or crashed writer) and is told how many. Records cut off
at a seal are undetectable from the log alone: the service anchors sealed heads on the ledger
(LOG_ANCHOR, docs/ledger.md; AnchorSchedule says when) and `verify_log(..., ledger=)` holds the log
to every anchor its node posted.

Durability. Each record is written to the file with one write() before `append` returns, so a killed
process loses nothing the kernel has; a background thread fsyncs at least every `fsync_interval`
seconds (outside the append lock), and rotation and close fsync too (a power loss costs at most
that interval).

Masking. A masked value is written as HMAC-SHA256(mask key, canonical JSON of the value). A plain
hash would not do: telemetry values come from small domains (a badge number, a setpoint) and a
SHA-256 of one is found by trying them all. The key (32 random bytes, hex, a 0600 file) must be kept
apart from the log; whoever holds it can still test a guess, which is what lets an auditor check
"was operator 1234 the one?" without the log revealing it to everyone who can read it.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import rfc8785

from axon import strictjson
from axon.keys import Identity, InvalidKey, PublicKey, sha256
from synapse.service.errors import DecisionLogError

if TYPE_CHECKING:
    from axon.ledger import Entry, KeyRecord

GENESIS = "sha256:" + "0" * 64
SEGMENT_RE = re.compile(r"^(?P<stream>w\d{1,3})-(?P<index>\d{6})\.jsonl$")
KINDS = frozenset({"segment", "start", "decision", "event", "seal", "stop"})
_MAX_SAFE_INT = 2**53 - 1
_INF = math.inf
_SCALARS = frozenset({str, int, bool})
# Anything orjson would write differently from loggable() raises, and the record goes through loggable():
# integers beyond 2**53, non-string keys, strings that are not Unicode text. Datetimes and dataclasses
# go to str() as loggable() does (orjson would format them itself).
_OPTIONS = orjson.OPT_STRICT_INTEGER | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
# The last member of every line, and of a seal's line without it the one before (see the module doc).
# Neither can match inside a JSON string: a `"` in a string is always written as `\"`.
_HASH_MEMBER = re.compile(rb',"hash":"sha256:([0-9a-f]{64})"\}\n')
_SIGNATURE_MEMBER = re.compile(rb',"signature":"([0-9a-f]{128})"\}')
_HASH_MEMBER_LEN = len(b',"hash":"sha256:"}\n') + 64
_SIGNATURE_MEMBER_LEN = len(b',"signature":""}') + 128


def loggable(value: Any) -> Any:
    """What the log writes for a value: JSON as is, except that integers beyond 2**53 become the
    doubles the runtime sees anyway (±Infinity beyond the double range), NaN and ±infinity become the
    strings "NaN", "Infinity", "-Infinity" (JSON has no such numbers), keys become strings, a lone
    surrogate in a string becomes its backslash escape, an enum member its value, anything else str()."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return value
        try:
            return float(value)
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, float):
        if -_INF < value < _INF:
            return value
        return "NaN" if value != value else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {loggable(str(k)): loggable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [loggable(v) for v in value]
    if isinstance(value, Enum):
        return loggable(value.value)
    return loggable(str(value))


def _plain(values: dict[str, Any]) -> bool:
    """True when `values` are strings, integers, bools and finite floats: what telemetry and context
    are. orjson writes those as loggable() would, or refuses them (an integer beyond 2**53, a lone
    surrogate), but it writes NaN and infinity as null: only such values may skip loggable()."""
    for v in values.values():
        t = type(v)
        if t is float:
            if not -_INF < v < _INF:
                return False
        elif t not in _SCALARS:
            return False
    return True


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(record, default=str, option=_OPTIONS)
    except orjson.JSONEncodeError:
        pass
    try:
        return orjson.dumps(loggable(record), default=str, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        raise DecisionLogError(f"cannot write a {record.get('kind')} record: {exc}") from exc


class Masker:
    """Replaces configured telemetry/context fields by their keyed digest."""

    def __init__(self, key: bytes, fields: Iterable[str]) -> None:
        if len(key) < 16:
            raise DecisionLogError("the mask key must be at least 16 bytes")
        self._key = key
        self._fields: dict[str, frozenset[str]] = {"telemetry": frozenset(), "context": frozenset()}
        for spec in fields:
            section, _, name = spec.partition(".")
            self._fields[section] = self._fields[section] | {name}

    def digest(self, value: Any) -> str:
        return hmac.new(self._key, rfc8785.dumps(loggable(value)), hashlib.sha256).hexdigest()

    def mask(self, section: str, values: dict[str, Any]) -> dict[str, Any]:
        names = self._fields.get(section)
        if not names or names.isdisjoint(values):
            return values
        return {k: ({"hmac-sha256": self.digest(v)} if k in names else v) for k, v in values.items()}


def load_mask_key(path: Path, randbytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """Read the hex mask key at `path`, creating it (0600, 32 random bytes) when it does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            return bytes.fromhex(path.read_text(encoding="ascii").strip())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise DecisionLogError(f"cannot read the mask key {path}: not a hex key file") from exc
    except OSError as exc:
        raise DecisionLogError(f"cannot create the mask key {path}: {exc.strerror}") from exc
    key = randbytes(32)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key.hex() + "\n")
    return key


# --- writing -------------------------------------------------------------------------------------


@dataclass
class _Tail:
    """Where a stream ended: the last good record and whether anything damaged followed it."""

    seq: int = 0
    hash: str = GENESIS
    segment: int = 0
    stream_id: str = ""
    damaged: str | None = None


class DecisionLog:
    """Append-only writer of one stream. Thread-safe; `close()` seals and fsyncs."""

    def __init__(self, directory: Path, identity: Identity, *, stream: str = "w0",
                 rotate_bytes: int = 64 * 1024 * 1024, seal_every: int = 1000, seal_interval: float = 60.0,
                 fsync_interval: float = 1.0, masker: Masker | None = None,
                 clock: Callable[[], float] = time.time,
                 randbytes: Callable[[int], bytes] = secrets.token_bytes) -> None:
        if not re.fullmatch(r"w\d{1,3}", stream):
            raise DecisionLogError(f"stream name {stream!r} must be 'w' and a number")
        self.directory = Path(directory)
        self.stream = stream
        self._identity = identity
        self._rotate_bytes = rotate_bytes
        self._seal_every = seal_every
        self._seal_interval = seal_interval
        self._fsync_interval = fsync_interval
        self._masker = masker
        self._clock = clock
        self._randbytes = randbytes
        self._lock = threading.Lock()
        self._fd_lock = threading.Lock()
        self._fd = -1
        self._size = 0
        self._dirty = False
        self._unsealed = 0
        self._last_seal = 0.0
        self.sealed_head: tuple[int, str] = (0, GENESIS)
        self._closed = threading.Event()
        self._syncer: threading.Thread | None = None
        self.records_written = 0

    # lifecycle

    def open(self, *, background: bool = True) -> DecisionLog:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DecisionLogError(f"cannot create the decision log directory {self.directory}: "
                                   f"{exc.strerror}") from exc
        tail = find_tail(self.directory, self.stream)
        self._seq, self._prev = tail.seq, tail.hash
        self.stream_id = tail.stream_id or self._randbytes(6).hex()
        self._segment = tail.segment
        last = self._segment_path(self._segment) if self._segment else None
        if last is None or tail.damaged or last.stat().st_size >= self._rotate_bytes:
            self._start_segment(self._segment + 1)
        else:
            self._open_fd(last)
        self._last_seal = self._clock()
        self._append("start", {"pid": os.getpid(), "damaged_tail": tail.damaged})
        self._seal()  # the node's signature covers the stream's binding (its segment record) from the start
        if background:
            self._syncer = threading.Thread(target=self._sync_loop, name=f"decision-log-{self.stream}",
                                            daemon=True)
            self._syncer.start()
        return self

    def close(self) -> None:
        """Write `stop` and a final seal, fsync, close. Safe to call twice."""
        with self._lock:
            if self._fd < 0:
                return
            self._append("stop", {})
            self._seal()
            self._fsync()
            with self._fd_lock:
                os.close(self._fd)
                self._fd = -1
        self._closed.set()
        if self._syncer is not None and self._syncer is not threading.current_thread():
            self._syncer.join(timeout=5)

    # appending

    def append_decision(self, decision: dict[str, Any], telemetry: dict[str, Any], context: dict[str, Any],
                        **fields: Any) -> str:
        """Log one decision and return its decision_id (`<stream_id>-<seq>`)."""
        if self._masker is not None:
            telemetry = self._masker.mask("telemetry", telemetry)
            context = self._masker.mask("context", context)
        if not (_plain(telemetry) and _plain(context)):
            telemetry, context = loggable(telemetry), loggable(context)
        with self._lock:
            seq = self._seq + 1
            decision_id = f"{self.stream_id}-{seq}"
            self._write({"seq": seq, "time": self._clock(), "kind": "decision", "prev": self._prev,
                         **fields, **decision, "decision_id": decision_id, "telemetry": telemetry,
                         "context": context})
            self._after_append()
        return decision_id

    def append_event(self, event: str, /, **data: Any) -> None:
        """An event record: {"event": name, "data": {...}} (nested, so no field can touch the chain's)."""
        with self._lock:
            self._append("event", {"event": event, "data": loggable(data)})
            self._after_append()

    def seal(self) -> tuple[int, str]:
        """Seal what is not sealed yet; the (seq, hash) of the last seal (what a ledger anchor names)."""
        with self._lock:
            if self._unsealed:
                self._seal()
                self._fsync()
            return self.sealed_head

    def sync(self) -> None:
        with self._lock:
            self._fsync()

    @property
    def head(self) -> tuple[int, str]:
        return self._seq, self._prev

    # internals (called with the lock held)

    def _append(self, kind: str, body: dict[str, Any]) -> None:
        self._write({"seq": self._seq + 1, "time": self._clock(), "kind": kind, "prev": self._prev, **body})

    def _write(self, record: dict[str, Any]) -> None:
        """Serialise once; the hash (and a seal's signature) cover exactly the bytes written."""
        if self._fd < 0:
            raise DecisionLogError("the decision log is closed")
        data = _dumps(record)
        if record["kind"] == "seal":
            signature = self._identity.key.sign(sha256(data)).hex().encode()
            data = data[:-1] + b',"signature":"' + signature + b'"}'
        digest = hashlib.sha256(data).hexdigest()
        line = data[:-1] + b',"hash":"sha256:' + digest.encode() + b'"}\n'
        try:
            os.write(self._fd, line)
        except OSError as exc:
            raise DecisionLogError(f"cannot write the decision log: {exc.strerror}") from exc
        self._seq, self._prev = record["seq"], "sha256:" + digest
        self._size += len(line)
        self._dirty = True
        if record["kind"] == "seal":
            self._unsealed = 0
            self.sealed_head = (self._seq, self._prev)
        else:
            self._unsealed += 1
        self.records_written += 1

    def _after_append(self) -> None:
        # No fsync here, on the request path: the syncer thread does it (see _sync_loop).
        if self._unsealed >= self._seal_every:
            self._seal()
        if self._size >= self._rotate_bytes:
            self._seal(next_segment=self._segment + 1)
            self._fsync()
            with self._fd_lock:
                os.close(self._fd)
                self._fd = -1
            self._start_segment(self._segment + 1)

    def _seal(self, next_segment: int | None = None) -> None:
        body: dict[str, Any] = {"signer": self._identity.did,
                                "public_key": self._identity.key.public_key.hex()}
        if next_segment is not None:  # signed, so deleting the segments that follow cannot go unnoticed
            body["next_segment"] = next_segment
        self._append("seal", body)
        self._last_seal = self._clock()

    def _fsync(self) -> None:
        if self._dirty and self._fd >= 0:
            os.fsync(self._fd)
            self._dirty = False

    def _segment_path(self, index: int) -> Path:
        return self.directory / f"{self.stream}-{index:06d}.jsonl"

    def _open_fd(self, path: Path) -> None:
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        except OSError as exc:
            raise DecisionLogError(f"cannot open the decision log {path}: {exc.strerror}") from exc
        self._size = os.fstat(self._fd).st_size

    def _start_segment(self, index: int) -> None:
        path = self._segment_path(index)
        if path.exists():
            raise DecisionLogError(f"{path} already exists; refusing to append to a segment out of order")
        self._segment = index
        self._open_fd(path)
        self._append("segment", {"stream": self.stream, "stream_id": self.stream_id, "segment": index,
                                 "signer": self._identity.did,
                                 "public_key": self._identity.key.public_key.hex()})
        _fsync_dir(self.directory)

    def _sync_loop(self) -> None:
        """Time-based seals, and fsync outside the append lock: an fsync can take tens of
        milliseconds, and appends (the request path) must not wait for it."""
        period = min(self._fsync_interval, self._seal_interval)
        while not self._closed.wait(period):
            with self._lock:
                if self._fd < 0:
                    return
                if self._unsealed and self._clock() - self._last_seal >= self._seal_interval:
                    self._seal()
                fd, dirty, self._dirty = self._fd, self._dirty, False
            if dirty:
                with self._fd_lock:  # close() and rotation take it before closing the descriptor
                    if fd == self._fd:
                        os.fsync(fd)


class AnchorSchedule:
    """When to anchor a log's sealed head on the ledger: after `every` records or `interval` seconds
    since the last attempt (at once the first time), and only a head beyond the last one anchored.
    After a failure it waits `interval`, so an unregistered key or a ledger away is not retried per step."""

    def __init__(self, every: int, interval: float) -> None:
        self.every = every
        self.interval = interval
        self.anchored_seq = 0
        self._last_attempt: float | None = None
        self._failed = False

    def due(self, seq: int, now: float) -> bool:
        if seq <= self.anchored_seq:
            return False
        if self._last_attempt is None or now - self._last_attempt >= self.interval:
            return True
        return not self._failed and seq - self.anchored_seq >= self.every

    def attempted(self, now: float, anchored_seq: int | None) -> None:
        """An attempt at `now`: the seq the ledger now holds, or None when it failed."""
        self._last_attempt, self._failed = now, anchored_seq is None
        if anchored_seq is not None:
            self.anchored_seq = max(self.anchored_seq, anchored_seq)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- reading -------------------------------------------------------------------------------------


def stream_segments(directory: Path) -> dict[str, list[tuple[int, Path]]]:
    """Segment files per stream, in index order."""
    streams: dict[str, list[tuple[int, Path]]] = {}
    for path in directory.iterdir():
        m = SEGMENT_RE.match(path.name)
        if m:
            streams.setdefault(m["stream"], []).append((int(m["index"]), path))
    return {name: sorted(segs) for name, segs in sorted(streams.items())}


def find_tail(directory: Path, stream: str) -> _Tail:
    """The last good record of a stream (reading only the end of its last segment)."""
    segments = stream_segments(directory).get(stream, []) if directory.is_dir() else []
    if not segments:
        return _Tail()
    index, path = segments[-1]
    tail = _Tail(segment=index)
    lines = _last_lines(path, 2)
    for n, raw in enumerate(reversed(lines)):
        try:
            record = _read_record(raw)[0]
        except _Damaged:
            if n == 0:
                tail.damaged = f"{path.name}: last line is not a complete record (interrupted write?)"
            continue
        tail.seq, tail.hash = record["seq"], record["hash"]
        break
    else:
        raise DecisionLogError(f"{path}: cannot find a good record at its end; move the stream aside "
                               "and run 'synapse decisions verify' on it")
    try:
        first = _read_record(_first_line(path))[0]
    except _Damaged as exc:
        raise DecisionLogError(f"{path}: first line is not a segment record: {exc}") from None
    if first["kind"] != "segment" or not isinstance(first.get("stream_id"), str):
        raise DecisionLogError(f"{path}: first line is not a segment record")
    tail.stream_id = first["stream_id"]
    return tail


class _Damaged(Exception):
    """A line that is not an intact record: why, and its seq when it has one."""

    def __init__(self, reason: str, seq: int | None = None) -> None:
        super().__init__(reason)
        self.seq = seq


def _read_record(raw: bytes) -> tuple[dict[str, Any], bytes]:
    """One line (with its newline) checked against its own hash: the record, and the bytes the hash
    covers (the line without its hash member). Raises _Damaged."""
    if not raw.endswith(b"\n"):
        raise _Damaged("last line is incomplete (interrupted write?)")
    try:
        record = strictjson.loads(raw)
    except strictjson.JsonError as exc:
        raise _Damaged(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise _Damaged("not a JSON object")
    seq = record.get("seq") if type(record.get("seq")) is int else None
    # With the whole line valid JSON without repeated names, a match here is the object's last member.
    member = _HASH_MEMBER.fullmatch(raw[-_HASH_MEMBER_LEN:])
    if member is None:
        raise _Damaged('the line does not end with its hash member ,"hash":"sha256:<64 lowercase hex>"}',
                       seq)
    body = raw[:-_HASH_MEMBER_LEN] + b"}"
    if hashlib.sha256(body).hexdigest().encode() != member[1]:
        raise _Damaged("hash mismatch: the record was altered after it was written", seq)
    if seq is None or record.get("kind") not in KINDS or not isinstance(record.get("prev"), str):
        raise _Damaged("not a decision-log record (an integer seq, a known kind and prev are required)", seq)
    return record, body


def _first_line(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.readline()


def _last_lines(path: Path, count: int) -> list[bytes]:
    """The last `count` lines of a file with their newlines (the final one may lack it), read backwards."""
    with path.open("rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        buf = b""
        while pos > 0 and buf.count(b"\n") <= count:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
    lines = [line + b"\n" for line in buf.split(b"\n")]
    lines[-1] = lines[-1][:-1]  # what follows the last newline: nothing, or an incomplete line
    if not lines[-1]:
        lines.pop()
    if pos > 0:
        lines = lines[1:]
    return lines[-count:]


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadRecord:
    file: str
    line: int | None
    seq: int | None
    reason: str

    def __str__(self) -> str:
        line = f" line {self.line}" if self.line is not None else ""
        seq = f" (seq {self.seq})" if self.seq is not None else ""
        return f"{self.file}{line}{seq}: {self.reason}"


@dataclass(frozen=True)
class Anchor:
    """A ledger entry saying that the node's stream `stream_id` had record `seq` with hash `hash`."""

    stream_id: str
    seq: int
    hash: str
    entry: int  # the ledger entry's seq


class AnchorLedger(Protocol):
    """What verification asks the ledger (axon.ledger.Ledger answers it)."""

    def key(self, did: str) -> KeyRecord | None: ...

    def key_by_address(self, address: str) -> KeyRecord | None: ...

    def log_anchors(self, node: str) -> list[Entry]: ...


@dataclass
class StreamReport:
    stream: str
    stream_id: str | None = None
    segments: int = 0
    records: int = 0
    decisions: int = 0
    seals: int = 0
    after_last_seal: int = 0
    anchors: int = 0
    signer: str | None = None
    public_key: str | None = None
    first_bad: BadRecord | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.first_bad is None

    def to_dict(self) -> dict[str, Any]:
        return {"stream": self.stream, "stream_id": self.stream_id, "ok": self.ok, "segments": self.segments,
                "records": self.records, "decisions": self.decisions, "seals": self.seals,
                "after_last_seal": self.after_last_seal, "anchors": self.anchors, "signer": self.signer,
                "public_key": self.public_key,
                "first_bad": None if self.first_bad is None else {
                    "file": self.first_bad.file, "line": self.first_bad.line, "seq": self.first_bad.seq,
                    "reason": self.first_bad.reason},
                "notes": self.notes}


class _Bad(Exception):
    pass


def verify_log(path: Path, public_key: PublicKey | None = None, *, allow_unsealed_tail: bool = False,
               ledger: AnchorLedger | None = None) -> list[StreamReport]:
    """Check a log directory (every stream in it) or one segment file; the first bad record per stream.

    `public_key` pins the node key the stream must be bound to; without it the key declared in the
    stream's first record is used, which shows the log is consistent but not who wrote it. `ledger`
    checks that key against the one registered for the node's DID, and the log against every anchor
    the node posted (docs/service.md). Records after the last seal fail unless `allow_unsealed_tail`.
    """
    path = Path(path)
    rules = _Rules(public_key, allow_unsealed_tail, ledger)
    if path.is_dir():
        reports = [_verify_stream(name, segs, rules, whole=True)
                   for name, segs in stream_segments(path).items()]
        reports += rules.unlogged_streams(path.name, reports)
        if not reports:
            reports.append(StreamReport(stream="-", first_bad=BadRecord(
                str(path), None, None, "no decision-log segments (w<N>-<index>.jsonl): a log emptied of its "
                "segments vouches for nothing")))
        return reports
    m = SEGMENT_RE.match(path.name)
    if not path.is_file():
        raise DecisionLogError(f"{path}: no such file or directory")
    name = m["stream"] if m else path.stem
    index = int(m["index"]) if m else 1
    return [_verify_stream(name, [(index, path)], rules, whole=False)]


class _Rules:
    """What every stream is checked against: the pinned key, the tail rule, the ledger's keys and anchors."""

    def __init__(self, pinned: PublicKey | None, allow_unsealed_tail: bool,
                 ledger: AnchorLedger | None) -> None:
        self.pinned = pinned
        self.allow_unsealed_tail = allow_unsealed_tail
        self.ledger = ledger
        self._anchors: dict[str, dict[str, dict[int, list[Anchor]]]] = {}

    def node_key(self, signer: Any, public_key: Any) -> str | None:
        """Why the node a stream declares cannot be accepted, or None."""
        if self.pinned is not None and public_key != self.pinned.hex():
            return "the stream is bound to a different node key than the one it is checked against"
        if self.ledger is None:
            return None
        record = self.ledger.key(signer) if isinstance(signer, str) else None
        if record is None:
            return f"the stream's node {signer!r} is not a registered key on the ledger"
        if record.public_key.hex() != public_key:
            return f"the stream declares a different key for {signer} than the ledger registers"
        return None

    def anchors(self, node: str) -> dict[str, dict[int, list[Anchor]]]:
        """The node's anchors on the ledger: stream_id -> seq -> anchors (two for one seq is a fork)."""
        if self.ledger is None:
            return {}
        if node not in self._anchors:
            found: dict[str, dict[int, list[Anchor]]] = {}
            for entry in self.ledger.log_anchors(node):
                op = entry.op
                anchor = Anchor(op["stream_id"], op["seq"], op["head"], entry.seq)
                found.setdefault(anchor.stream_id, {}).setdefault(anchor.seq, []).append(anchor)
            self._anchors[node] = found
        return self._anchors[node]

    def unlogged_streams(self, directory: str, reports: list[StreamReport]) -> list[StreamReport]:
        """Streams the ledger anchors for the log's node(s) of which not one segment is left."""
        if self.ledger is None:
            return []
        nodes = {r.signer for r in reports if r.signer}
        pinned = None if self.pinned is None else self.ledger.key_by_address(self.pinned.address)
        if pinned is not None:
            nodes.add(pinned.did)
        present = {r.stream_id for r in reports}
        missing = []
        for node in sorted(nodes):
            for stream_id, by_seq in sorted(self.anchors(node).items()):
                if stream_id in present:
                    continue
                last = max(by_seq)
                reason = (f"the ledger anchors stream {stream_id} of {node} up to seq {last} (entry "
                          f"{by_seq[last][0].entry}), but none of its segments is in the log")
                missing.append(StreamReport(stream=stream_id, stream_id=stream_id, signer=node,
                                            first_bad=BadRecord(directory, None, None, reason)))
        return missing


def _verify_stream(name: str, segments: list[tuple[int, Path]], rules: _Rules, whole: bool) -> StreamReport:
    report = StreamReport(stream=name, segments=len(segments))
    check = _StreamCheck(report, rules, from_genesis=whole)
    if not whole:
        report.notes.append("single segment checked: its first record is taken as the anchor")
    try:
        expected_index = segments[0][0]
        if whole and expected_index != 1:
            raise _Bad(BadRecord(segments[0][1].name, 1, None,
                                 f"segments 1..{expected_index - 1} of stream {name} are missing"))
        for index, seg in segments:
            if index != expected_index:
                raise _Bad(BadRecord(seg.name, 1, None,
                                     f"segment {expected_index:06d} is missing (next present: {index:06d})"))
            expected_index += 1
            lineno = 0
            for lineno, record, body in _records(seg):
                check.record(record, body, seg.name, lineno, index)
            if lineno == 0:
                raise _Bad(BadRecord(seg.name, None, None,
                                     "the segment file is empty: its records were removed"))
        check.end(whole)
    except _Bad as bad:
        report.first_bad = bad.args[0]
    return report


def _records(seg: Path) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    with seg.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                record, body = _read_record(raw)
            except _Damaged as exc:
                raise _Bad(BadRecord(seg.name, lineno, exc.seq, str(exc))) from None
            yield lineno, record, body


class _StreamCheck:
    """The rules of one stream, record by record (docs/service.md, "What verify accepts")."""

    def __init__(self, report: StreamReport, rules: _Rules, from_genesis: bool) -> None:
        self.report = report
        self.rules = rules
        self.from_genesis = from_genesis
        self.seq: int | None = None
        self.prev: str | None = None
        self.node: tuple[Any, Any] | None = None  # (signer DID, public key) of the stream's first record
        self.anchors: dict[int, list[Anchor]] = {}
        self.rotates_to: int | None = None  # the segment the last seal closed its segment for
        self.first: BadRecord | None = None  # where the first and the last record are
        self.last: BadRecord | None = None
        self.first_unsealed: BadRecord | None = None

    def record(self, record: dict[str, Any], body: bytes, file: str, line: int, index: int) -> None:
        seq = record["seq"]

        def bad(reason: str) -> _Bad:
            return _Bad(BadRecord(file, line, seq, reason))

        if self.seq is None:
            if self.from_genesis and (seq != 1 or record["prev"] != GENESIS):
                raise bad("the stream does not start at seq 1 from the genesis hash: its beginning is "
                          "missing")
        else:
            if seq != self.seq + 1:
                raise bad(f"seq jumps from {self.seq} to {seq}: records were removed or reordered")
            if record["prev"] != self.prev:
                raise bad("prev does not match the previous record's hash: the chain is broken here")
        if self.rotates_to is not None and line != 1:
            raise bad(f"a record follows the seal that closed its segment for segment {self.rotates_to:06d}")
        self.rotates_to = None
        kind = record["kind"]
        if (kind == "segment") != (line == 1):
            raise bad("a segment file starts with a segment record, and only there is one")
        if kind == "segment":
            self._segment(record, index, bad)
        if kind == "seal":
            self._seal(record, body, index, bad)
        elif self.first_unsealed is None:
            self.first_unsealed = BadRecord(file, line, seq, "")
        self.report.after_last_seal = 0 if kind == "seal" else self.report.after_last_seal + 1
        if kind == "decision":
            self.report.decisions += 1
        for anchor in self.anchors.get(seq, ()):
            if record["hash"] != anchor.hash:
                raise bad(f"the ledger anchors a different record at seq {seq} (entry {anchor.entry}): "
                          "the log was rewritten after it was anchored")
            self.report.anchors += 1
        self.report.records += 1
        self.seq, self.prev = seq, record["hash"]
        self.last = BadRecord(file, line, seq, "")
        self.first = self.first or self.last

    def _segment(self, record: dict[str, Any], index: int, bad: Callable[[str], _Bad]) -> None:
        if record.get("segment") != index:
            raise bad(f"segment record says segment {record.get('segment')}, file name says {index}")
        node = (record.get("signer"), record.get("public_key"))
        if self.node is None:
            problem = self.rules.node_key(*node)
            if problem:
                raise bad(problem)
            self.node = node
            self.report.stream_id = record.get("stream_id")
            self.report.signer, self.report.public_key = node
            if isinstance(node[0], str) and isinstance(self.report.stream_id, str):
                self.anchors = self.rules.anchors(node[0]).get(self.report.stream_id, {})
        elif record.get("stream_id") != self.report.stream_id:
            raise bad("segment belongs to another stream (stream_id differs)")
        elif node != self.node:
            raise bad("segment declares a different node than the stream is bound to since its first record")

    def _seal(self, record: dict[str, Any], body: bytes, index: int, bad: Callable[[str], _Bad]) -> None:
        if (record.get("signer"), record.get("public_key")) != self.node:
            raise bad("seal names a different node or key than the stream is bound to since its first record")
        member = _SIGNATURE_MEMBER.fullmatch(body[-_SIGNATURE_MEMBER_LEN:])
        if member is None:
            raise bad('seal does not end with its signature member ,"signature":"<128 lowercase hex>"')
        try:
            pub = PublicKey.from_hex(str(record.get("public_key")))
        except (ValueError, InvalidKey) as exc:
            raise bad("seal has a malformed public key") from exc
        signed = body[:-_SIGNATURE_MEMBER_LEN] + b"}"
        if not pub.verify(bytes.fromhex(member[1].decode()), sha256(signed)):
            raise bad("seal signature does not verify: the chain before it was rewritten")
        if "next_segment" in record:
            if record["next_segment"] != index + 1:
                raise bad(f"seal closes segment {index} for segment {record['next_segment']!r}, "
                          f"not {index + 1}")
            self.rotates_to = index + 1
        self.report.seals += 1
        self.first_unsealed = None

    def end(self, whole: bool) -> None:
        """What only the end of the stream shows; the last record present is the one named."""
        first, last, report = self.first, self.last, self.report
        if first is None or last is None:  # every segment has at least one record; checked all the same
            raise _Bad(BadRecord(self.report.stream, None, None, "the stream has no record"))
        if whole and self.rotates_to is not None:
            raise _Bad(replace(last, reason=f"segment {self.rotates_to:06d} is missing: this seal closed its "
                                            "segment for it (segments were deleted from the end)"))
        beyond = [a for seq, anchors in self.anchors.items() if seq > last.seq for a in anchors]
        if whole and beyond:
            top = max(beyond, key=lambda a: a.seq)
            raise _Bad(replace(last, reason=f"the stream ends at seq {last.seq} but the ledger anchors seq "
                                            f"{top.seq} (entry {top.entry}): records were cut off its end"))
        if report.seals == 0:
            raise _Bad(replace(first, reason="the stream has no seal: nothing in it is signed by the node "
                                             "key"))
        if report.after_last_seal:
            unsealed = self.first_unsealed or last
            span = f"{report.after_last_seal} record(s) after the last seal (seq {unsealed.seq}..{last.seq})"
            if not self.rules.allow_unsealed_tail:
                raise _Bad(replace(unsealed, reason=f"{span}: no seal vouches for them (a crash, or records "
                                                    "added; --allow-unsealed-tail accepts them)"))
            report.notes.append(f"{span} accepted unsealed (--allow-unsealed-tail): nothing vouches for them")
        if self.anchors:
            report.notes.append(f"{report.anchors} ledger anchor(s) matched")
        elif self.rules.ledger is not None:
            report.notes.append("the ledger holds no anchor for this stream: records cut off at a seal "
                                "cannot be ruled out")
