"""Stage 1: read the policy source as strict JSON (RFC 8259), remembering where every value is.

Stricter than `json.loads`: a duplicate key, NaN/Infinity, a number that overflows a double, text
after the document, invalid UTF-8, a byte-order mark, an unpaired surrogate escape or more than
1 MiB is an error with a line, a column and (where one exists) a JSON Pointer. Objects keep their
key order. Integers that a double holds exactly stay `int`; every other number is a `float`.

The parser is iterative (an explicit stack), so hostile nesting cannot exhaust Python's stack, and
it works token by token with C-accelerated helpers, so it is linear in the size of the source.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from scc.errors import Diagnostic, ReadError
from scc.limits import LIMITS, CompilerLimits

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_SAFE_INT = 2**53 - 1


def pointer_token(key: str | int) -> str:
    """One RFC 6901 reference token."""
    key = str(key)
    return key.replace("~", "~0").replace("/", "~1") if ("~" in key or "/" in key) else key


def join_pointer(base: str, *keys: str | int) -> str:
    for key in keys:
        base = base + "/" + pointer_token(key)
    return base


@dataclass(frozen=True)
class Document:
    """A parsed policy source: the value, and where each JSON value starts in the text."""

    value: Any
    text: str
    offsets: dict[str, int]  # JSON Pointer -> character offset of the value's first character
    line_starts: tuple[int, ...]

    def offset(self, pointer: str) -> int:
        """Offset of `pointer`, or of its nearest ancestor that exists (e.g. for a missing key)."""
        while pointer not in self.offsets and pointer:
            pointer = pointer[: pointer.rfind("/")]
        return self.offsets.get(pointer, 0)

    def position(self, pointer: str) -> tuple[int, int]:
        """1-based (line, column) of `pointer`, columns counted in characters."""
        return _line_column(self.line_starts, self.offset(pointer))

    def locate(self, diagnostic: Diagnostic) -> Diagnostic:
        line, column = self.position(diagnostic.pointer)
        return replace(diagnostic, line=line, column=column)

    def in_document_order(self, diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
        """Locate each diagnostic and sort by where it is in the source (stable for ties)."""
        located = [self.locate(d) for d in diagnostics]
        return sorted(located, key=lambda d: (self.offset(d.pointer), d.pointer.count("/"), d.pointer))


def _line_starts(text: str) -> tuple[int, ...]:
    starts = [0]
    starts.extend(m.end() for m in re.finditer("\n", text))
    return tuple(starts)


def _line_column(line_starts: tuple[int, ...], offset: int) -> tuple[int, int]:
    line = bisect.bisect_right(line_starts, offset) - 1
    return line + 1, offset - line_starts[line] + 1


def _describe_char(ch: str) -> str:
    if ch == "":
        return "the end of the file"
    if ch.isprintable() and not ch.isspace():
        return f"`{ch}`"
    return f"the character U+{ord(ch):04X}"


def read(source: bytes, limits: CompilerLimits = LIMITS) -> Document:
    """Parse `source` or raise ReadError with every problem found before parsing had to stop."""
    if len(source) > limits.max_source_bytes:
        raise ReadError([Diagnostic(
            "SCC-E001", "",
            f"the policy is {len(source):,} bytes; the limit is {limits.max_source_bytes:,} bytes (1 MiB)",
        )])
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as exc:
        prefix = source[: exc.start].decode("utf-8")
        line, column = _line_column(_line_starts(prefix), len(prefix))
        raise ReadError([Diagnostic(
            "SCC-E002", "",
            f"byte 0x{source[exc.start]:02X} at byte offset {exc.start} is not valid UTF-8; "
            "save the policy as UTF-8 text",
            line, column,
        )]) from None
    return _Parser(text, limits).parse()


class _Stop(Exception):
    """Parsing cannot go on; the diagnostics collected so far are reported."""


class _Parser:
    def __init__(self, text: str, limits: CompilerLimits) -> None:
        self.text = text
        self.limits = limits
        self.line_starts = _line_starts(text)
        self.offsets: dict[str, int] = {}
        self.diagnostics: list[Diagnostic] = []

    def report(self, code: str, pos: int, pointer: str, message: str) -> None:
        line, column = _line_column(self.line_starts, pos)
        self.diagnostics.append(Diagnostic(code, pointer, message, line, column))

    def stop(self, code: str, pos: int, pointer: str, message: str) -> _Stop:
        self.report(code, pos, pointer, message)
        return _Stop()

    def parse(self) -> Document:
        try:
            value = self._document()
        except _Stop:
            value = None
        if self.diagnostics:
            raise ReadError(self.diagnostics)
        return Document(value, self.text, self.offsets, self.line_starts)

    def _document(self) -> Any:
        text, n = self.text, len(self.text)
        if text.startswith("\ufeff"):
            raise self.stop("SCC-E003", 0, "", "the file starts with a byte-order mark (BOM); save it as "
                            "UTF-8 without BOM")
        # Each frame: [container, pointer, is_object, pending key]
        stack: list[list[Any]] = []
        pos = _WS.match(text, 0).end()
        pointer = ""
        while True:
            value, pos, opened = self._value(pos, pointer, len(stack))
            if opened is not None:
                # A non-empty container: descend into its first member.
                stack.append([opened, pointer, isinstance(opened, dict), None])
                if isinstance(opened, dict):
                    pos, pointer = self._key(pos, stack[-1])
                else:
                    pointer = pointer + "/0"
                continue
            # `value` is complete: hand it to its parent, closing every container that ends here.
            while True:
                pos = _WS.match(text, pos).end()
                if not stack:
                    if pos != n:
                        raise self.stop("SCC-E007", pos, "",
                                        f"unexpected {_describe_char(text[pos])} after the end of the JSON "
                                        "document; a policy is exactly one JSON object")
                    return value
                frame = stack[-1]
                container, cptr, is_object, key = frame
                close = "}" if is_object else "]"
                if is_object:
                    container[key] = value
                else:
                    container.append(value)
                ch = text[pos] if pos < n else ""
                if ch == ",":
                    pos = _WS.match(text, pos + 1).end()
                    if is_object:
                        pos, pointer = self._key(pos, frame)
                    else:
                        pointer = join_pointer(cptr, len(container))
                    break
                if ch == close:
                    pos += 1
                    value = container
                    stack.pop()
                    continue
                where = join_pointer(cptr, key) if is_object else join_pointer(cptr, len(container) - 1)
                raise self.stop("SCC-E003", pos, where,
                                f"expected `,` or `{close}` but found {_describe_char(ch)}")

    def _value(self, pos: int, pointer: str, depth: int) -> tuple[Any, int, dict | list | None]:
        """Parse the value at `pos`. Returns (value, end, None), or (None, pos, container) when a
        non-empty container opens, with `pos` at its first member."""
        text = self.text
        ch = text[pos] if pos < len(text) else ""
        self.offsets[pointer] = pos
        if ch in ("{", "["):
            if depth >= self.limits.max_json_depth:
                raise self.stop("SCC-E008", pos, pointer,
                                f"the JSON is nested more than {self.limits.max_json_depth} levels deep here")
            after = _WS.match(text, pos + 1).end()
            close = "}" if ch == "{" else "]"
            empty: dict | list = {} if ch == "{" else []
            if text.startswith(close, after):
                return empty, after + 1, None
            return None, after, empty
        if ch == '"':
            return (*self._string(pos, pointer), None)
        if text.startswith("true", pos):
            return True, pos + 4, None
        if text.startswith("false", pos):
            return False, pos + 5, None
        if text.startswith("null", pos):
            return None, pos + 4, None
        for word in ("NaN", "Infinity", "-Infinity"):
            if text.startswith(word, pos):
                self.report("SCC-E005", pos, pointer,
                            f"`{word}` is not a JSON number; policy numbers must be finite")
                return None, pos + len(word), None
        if ch == "-" or ch.isdigit():
            return (*self._number(pos, pointer), None)
        hint = " (a trailing comma is not allowed in JSON)" if ch in ("]", "}") else ""
        if ch == "'":
            hint = " (JSON text uses double quotes)"
        raise self.stop("SCC-E003", pos, pointer,
                        f"expected a value (object, list, text, number, true, false or null) but found "
                        f"{_describe_char(ch)}{hint}")

    def _key(self, pos: int, frame: list[Any]) -> tuple[int, str]:
        """Parse `"key" :` at `pos` into frame[3]; return the position of the value and its pointer."""
        text = self.text
        container, cptr = frame[0], frame[1]
        if not text.startswith('"', pos):
            ch = text[pos] if pos < len(text) else ""
            hint = " (a trailing comma is not allowed in JSON)" if ch == "}" else ""
            raise self.stop("SCC-E003", pos, cptr,
                            f"expected a key in double quotes but found {_describe_char(ch)}{hint}")
        key, end = self._string(pos, cptr)
        pointer = join_pointer(cptr, key)
        if key in container:
            first_line, _ = _line_column(self.line_starts, self.offsets[pointer])
            self.report("SCC-E004", pos, pointer,
                        f"key `{key}` appears twice in this object (first on line {first_line}); "
                        "JSON objects must not repeat a key")
        colon = _WS.match(text, end).end()
        if not text.startswith(":", colon):
            raise self.stop("SCC-E003", colon, pointer,
                            f"expected `:` after the key `{key}` but found "
                            f"{_describe_char(text[colon] if colon < len(text) else '')}")
        frame[3] = key
        return _WS.match(text, colon + 1).end(), pointer

    def _string(self, pos: int, pointer: str) -> tuple[str, int]:
        try:
            value, end = json.decoder.scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as exc:
            if exc.msg.startswith("Invalid control character"):
                why = "text contains a raw control character (such as a line break or tab); write it " \
                      "as an escape like \\n or \\t"
            elif exc.msg.startswith("Unterminated string"):
                why = "text starting here is never closed with a double quote"
            else:
                why = "invalid escape sequence; after \\ JSON allows only \" \\ / b f n r t or uXXXX"
            raise self.stop("SCC-E003", exc.pos, pointer, why) from None
        if _SURROGATE.search(value):
            self.report("SCC-E009", pos, pointer,
                        "text contains a \\uD800-\\uDFFF escape that is not half of a surrogate pair, "
                        "so it is not a character and cannot be stored as UTF-8")
        return value, end

    def _number(self, pos: int, pointer: str) -> tuple[int | float | None, int]:
        text = self.text
        match = _NUMBER.match(text, pos)
        end = match.end() if match else pos
        if match is None or (end < len(text) and (text[end].isalnum() or text[end] in ".+-")):
            raise self.stop("SCC-E003", pos, pointer,
                            "malformed number (JSON numbers have no leading zeros, no leading `+`, "
                            "and digits on both sides of a decimal point)")
        literal = match.group()
        try:
            if match.group(1) is None and match.group(2) is None:
                as_int = int(literal)
                if abs(as_int) <= _MAX_SAFE_INT:
                    return (-0.0 if literal == "-0" else as_int), end
                number = float(as_int)
            else:
                number = float(literal)
        except OverflowError:
            number = math.inf
        if math.isinf(number):
            self.report("SCC-E006", pos, pointer,
                        f"the number {literal[:40]} is too large for a double (about ±1.8e308 at most)")
            return None, end
        return number, end
