"""Strict JSON reading, the one way every untrusted JSON document enters the project.

Refused, each with a reason and a position: invalid UTF-8, duplicate keys, NaN/Infinity, numbers that
overflow to infinity, integer literals too long to read, trailing garbage, and nesting deeper than a
limit; on request (`allow_floats=False`) any number that is not an integer literal. The depth is
measured *before* parsing: CPython's parser recurses per level, and with a raised recursion limit a few
kilobytes of brackets exhaust the C stack and kill the process instead of raising.

Every JSON document the project reads goes through `loads` (ruff's TID251 bans `json.loads`,
`orjson.loads` and their kin everywhere else; pyproject.toml). The usual document takes a fast path:
orjson reads it, and the result is kept only when it cannot differ from the strict reading (no more
colons than keys, so no key repeated; no more brackets than the depth limit; no float that may have
been a long integer literal). Anything else, including whatever orjson refuses, is read again by the
standard library's parser with the strict hooks, which decides and says where. The fast path is an
accelerator: SOPCOS_ACCELERATORS=off leaves every document to the strict parser (axon/accelerators.py).
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson

from axon import accelerators
from axon.errors import AxonError

DEFAULT_MAX_DEPTH = 64


class JsonError(AxonError):
    """Not strict JSON. `reason` says what, `line`/`column` say where (1-based), when known."""

    code = "AXON-JSON"

    def __init__(self, reason: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line} column {column}" if line is not None else ""
        super().__init__(f"{reason}{where}")
        self.reason, self.line, self.column = reason, line, column


def depth(text: str, limit: int) -> int:
    """How deeply `[`/`{` nest in JSON text (strings skipped), stopping once past `limit`."""
    level = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            level += 1
            if level > deepest:
                deepest = level
                if deepest > limit:
                    break
        elif ch in "]}":
            level -= 1
    return deepest


def _few_openers(text: str, limit: int) -> bool:
    """True when the text holds at most `limit` `[`/`{` in all, so it cannot nest deeper than `limit`.

    A cheap bound (str.find runs at memchr speed) that spares the usual document depth()'s per-character
    Python loop (docs/service.md, "Performance"): a 134 KB `.sop` envelope is mostly one base64 string
    and has ~10.
    """
    count = 0
    for opener in "[{":
        at = text.find(opener)
        while at != -1:
            count += 1
            if count > limit:
                return False
            at = text.find(opener, at + 1)
    return True


def loads(data: bytes | str, *, max_depth: int = DEFAULT_MAX_DEPTH, allow_floats: bool = True) -> Any:
    """Parse one strict JSON document, or raise JsonError.

    `allow_floats=False` also refuses numbers with a fraction or an exponent (`12.0`, `1e3`), for
    formats whose numbers are all integers (a float there is an error, or an attempt at ambiguity).
    """
    if isinstance(data, memoryview | bytearray):
        data = bytes(data)
    doc = _fast(data, max_depth, allow_floats) if accelerators.ENABLED else _UNDECIDED
    if doc is not _UNDECIDED:
        return doc
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JsonError(f"not UTF-8 (byte {exc.start})") from None
    else:
        text = data
    if not _few_openers(text, max_depth) and depth(text, max_depth) > max_depth:
        raise JsonError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant,
                          parse_float=_finite if allow_floats else _no_float)
    except json.JSONDecodeError as exc:
        raise JsonError(_plain(exc.msg), exc.lineno, exc.colno) from None
    except _Refused as exc:
        raise JsonError(str(exc)) from None
    except (ValueError, RecursionError):  # Python refuses integer literals of more than 4,300 digits
        raise JsonError("a number is too long to read") from None


_UNDECIDED = object()
_CONTAINERS = (dict, list)
_LONG_INTEGER = 2.0**63  # orjson reads an integer literal beyond 64 bits as a float; the strict parser as int


def _fast(data: bytes | str, max_depth: int, allow_floats: bool) -> Any:
    """orjson's reading of `data` when it cannot differ from the strict one, else _UNDECIDED.

    Every key in JSON text is followed by a colon, so when the text holds no more colons than the
    document kept keys, no key repeated (orjson keeps the last of two): the check costs a byte count and
    one walk over the parsed values. Nor can it nest deeper than it has brackets.
    """
    colon, brackets = (b":", (b"[", b"{")) if type(data) is bytes else (":", ("[", "{"))
    if data.count(brackets[0]) + data.count(brackets[1]) > max_depth:
        return _UNDECIDED
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _UNDECIDED
    keys, pending = 0, [doc]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            keys += len(value)
            pending.extend(value.values())
        elif kind is list:
            pending.extend(value)
        elif kind is float and (not allow_floats or not -_LONG_INTEGER < value < _LONG_INTEGER):
            return _UNDECIDED
    return doc if data.count(colon) <= keys else _UNDECIDED


class _Refused(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        key = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise _Refused(f"key {key!r} appears twice in one object")
    return doc


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused("a number overflows to infinity")  # not echoed: it may be a masked input value
    return value


def _no_float(text: str) -> Any:
    raise _Refused(f"the number {text[:32]} is not an integer")


def _plain(msg: str) -> str:
    return "unexpected text after the JSON document" if msg == "Extra data" else msg
