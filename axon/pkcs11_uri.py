"""RFC 7512 `pkcs11:` URIs: which module, token and key object a signer lives in, and where its PIN is.

No maintained Python package parses these, so this is a small strict parser of the RFC's grammar:
path attributes separated by `;` (token, manufacturer, serial, model, library-*, slot-*, object, id,
type), query attributes separated by `&` (pin-value, pin-source, module-name, module-path), values
percent-decoded (`id` as bytes, the others as UTF-8). A character the grammar does not allow where it
stands, a repeated or unknown attribute, a bad percent escape, or pin-value together with pin-source
is an error naming the attribute. Errors and `redacted()` never contain the PIN.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from axon.keys import KeyMaterialError, is_pkcs11_uri

SCHEME = "pkcs11:"

PATH_ATTRIBUTES = ("token", "manufacturer", "serial", "model", "library-manufacturer",
                   "library-description", "library-version", "slot-description", "slot-manufacturer",
                   "slot-id", "object", "id", "type")
QUERY_ATTRIBUTES = ("pin-value", "pin-source", "module-name", "module-path")
OBJECT_TYPES = ("public", "private", "cert", "secret-key", "data")

# RFC 7512 pk11-pchar / pk11-qchar: unreserved, the listed reserved characters, percent escapes. The path
# may not hold "/", "?", "|" (the query may), nor either of its separators ";" "&".
_UNRESERVED = r"A-Za-z0-9\-._~"
_PATH_VALUE = re.compile(rf"(?:[{_UNRESERVED}:\[\]@!$'()*+,=]|%[0-9A-Fa-f]{{2}})*\Z")
_QUERY_VALUE = re.compile(rf"(?:[{_UNRESERVED}:\[\]@!$'()*+,=/?|]|%[0-9A-Fa-f]{{2}})*\Z")
_DIGITS = re.compile(r"[0-9]+\Z")
_VERSION = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


class Pkcs11UriError(KeyMaterialError):
    code = "AXON-KEY-PKCS11-URI"


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed `pkcs11:` URI. `path` and `query` map attribute names to decoded values (`id` is bytes)."""

    path: dict[str, str | bytes] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)

    @property
    def token(self) -> str | None:
        return self.path.get("token")  # type: ignore[return-value]

    @property
    def object(self) -> str | None:
        return self.path.get("object")  # type: ignore[return-value]

    @property
    def id(self) -> bytes | None:
        return self.path.get("id")  # type: ignore[return-value]

    def redacted(self) -> str:
        """The URI for messages: every attribute but pin-value, re-encoded."""
        path = ";".join(f"{name}={_encode(value)}" for name, value in self.path.items())
        query = "&".join(f"{name}={_encode(value, query=True)}" for name, value in self.query.items()
                         if name != "pin-value")
        return SCHEME + path + (f"?{query}" if query else "")

    def pin(self) -> str | None:
        """pin-value, else the first line of the file pin-source names (a path, or a `file:` URI), else
        None."""
        if "pin-value" in self.query:
            return self.query["pin-value"]
        source = self.query.get("pin-source")
        if source is None:
            return None
        path = _pin_file(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise Pkcs11UriError(f"cannot read the PIN file {path} (pin-source): {exc.strerror}") from None
        except UnicodeDecodeError:
            raise Pkcs11UriError(f"the PIN file {path} (pin-source) is not UTF-8 text") from None
        lines = text.splitlines()
        if not lines or not lines[0]:
            raise Pkcs11UriError(f"the PIN file {path} (pin-source) is empty")
        return lines[0]


def parse(text: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI strictly. Raises Pkcs11UriError saying which attribute is wrong and why."""
    if not is_pkcs11_uri(text):
        raise Pkcs11UriError("a PKCS#11 URI starts with 'pkcs11:'")
    rest = text[len(SCHEME):]
    if "#" in rest:
        raise Pkcs11UriError("a PKCS#11 URI has no fragment ('#' must be written %23)")
    path_text, _, query_text = rest.partition("?")
    path: dict[str, str | bytes] = {}
    for name, raw in _attributes(path_text, ";", "path"):
        if name not in PATH_ATTRIBUTES:
            raise Pkcs11UriError(f"unknown path attribute {name!r} (known: {', '.join(PATH_ATTRIBUTES)})")
        if not _PATH_VALUE.match(raw):
            raise Pkcs11UriError(f"path attribute {name!r}: a character that must be percent-encoded "
                                 "(or a bad %-escape)")
        path[name] = _path_value(name, raw)
    query: dict[str, str] = {}
    for name, raw in _attributes(query_text, "&", "query"):
        if name not in QUERY_ATTRIBUTES:
            raise Pkcs11UriError(f"unknown query attribute {name!r} (known: {', '.join(QUERY_ATTRIBUTES)})")
        if not _QUERY_VALUE.match(raw):
            # Never echo the value: it may be the PIN.
            raise Pkcs11UriError(f"query attribute {name!r}: a character that must be percent-encoded "
                                 "(or a bad %-escape)")
        query[name] = _text(name, raw)
    if "pin-value" in query and "pin-source" in query:
        raise Pkcs11UriError("pin-value and pin-source both given: use one")
    return Pkcs11Uri(path, query)


def _attributes(text: str, separator: str, part: str) -> list[tuple[str, str]]:
    if not text:
        return []
    seen: set[str] = set()
    pairs = []
    for item in text.split(separator):
        name, equals, raw = item.partition("=")
        if not equals or not name:
            raise Pkcs11UriError(f"{part} attribute {name or item!r} is not NAME=VALUE")
        if name in seen:
            raise Pkcs11UriError(f"{part} attribute {name!r} given twice")
        seen.add(name)
        pairs.append((name, raw))
    return pairs


def _path_value(name: str, raw: str) -> str | bytes:
    if name == "id":
        return unquote_to_bytes(raw)
    value = _text(name, raw)
    if name == "slot-id" and not _DIGITS.match(value):
        raise Pkcs11UriError(f"slot-id must be a decimal number, not {value!r}")
    if name == "library-version" and not _VERSION.match(value):
        raise Pkcs11UriError(f"library-version must be MAJOR[.MINOR], not {value!r}")
    if name == "type" and value not in OBJECT_TYPES:
        raise Pkcs11UriError(f"type must be one of {', '.join(OBJECT_TYPES)}, not {value!r}")
    return value


def _text(name: str, raw: str) -> str:
    try:
        return unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Pkcs11UriError(f"attribute {name!r} is not UTF-8 once percent-decoded") from None


def _encode(value: str | bytes, query: bool = False) -> str:
    data = value if isinstance(value, bytes) else value.encode("utf-8")
    allowed = _QUERY_VALUE if query else _PATH_VALUE
    return "".join(chr(b) if b < 128 and allowed.match(chr(b)) else f"%{b:02X}"
                   for b in data)


def _pin_file(source: str) -> Path:
    if source.startswith("file:"):
        rest = source[len("file:"):]
        if rest.startswith("//"):
            host, slash, rest = rest[2:].partition("/")
            if host not in ("", "localhost") or not slash:
                raise Pkcs11UriError("pin-source: a file: URI names a local file (file:///PATH)")
            rest = "/" + rest
        return Path(rest)
    if re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", source):
        raise Pkcs11UriError("pin-source: only a file path or a file: URI is supported")
    return Path(source)
