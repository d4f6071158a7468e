"""Fetching an artifact this node does not hold, from a storage hint (issue 12 item 5; docs/messaging.md).

A SIP-017 CMD `load` names a URN and may say where the artifact is: `storage_hint`, in the form of an
artifact's own `distribution.storage_hint`: an `http://` or `https://` URL, a `file://` URL or an
absolute path. A hint ending in `/` is a directory holding `<sha256 hex of the URN>.sop`; any other
hint names the file itself.

`fetch_artifact` checks, in order, each with its own code:

1. SYNAPSE-FETCH-HINT       the hint is not one of those forms (another scheme, a relative path), or the
                            URN is not a content-addressed artifact URN;
2. SYNAPSE-FETCH-FAILED     the file is missing or unreadable, the server is unreachable, answers anything
                            but 200 (redirects are not followed), or the whole fetch took longer than
                            the timeout;
3. SYNAPSE-FETCH-TOO-LARGE  the declared or the actual size is over the limit (limits.max_artifact_bytes):
                            reading stops at the limit, so an endless response costs nothing more;
4. SYNAPSE-FETCH-URN        the bytes are not an artifact envelope whose content hashes to the URN asked
                            for (the URN is the SHA-256 of the content, so this needs no trust in the
                            sender or the server).

What passes is still only bytes: the caller hands them to the service's upload, where Axon verifies
signature, signer authority and the ledger's registration and revocation before anything is stored.
Locations are reported without user information or query (`redacted`): a URL may carry a credential.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from axon import strictjson
from axon.envelope import URN_PREFIX, ArtifactEnvelope, urn_for
from axon.errors import AxonError
from synapse.service.errors import ServiceError

_HEX = frozenset("0123456789abcdef")
_CHUNK = 65536


class FetchHintError(ServiceError):
    code = "SYNAPSE-FETCH-HINT"
    status = 422


class FetchFailed(ServiceError):
    code = "SYNAPSE-FETCH-FAILED"
    status = 502


class FetchTooLarge(ServiceError):
    code = "SYNAPSE-FETCH-TOO-LARGE"
    status = 413


class FetchWrongUrn(ServiceError):
    code = "SYNAPSE-FETCH-URN"
    status = 422


@dataclass(frozen=True)
class FetchedArtifact:
    data: bytes
    location: str  # redacted: safe to log


def artifact_location(urn: str, storage_hint: str) -> str:
    """Where the artifact `urn` is, by its storage hint (a directory ending in `/`, or the file)."""
    digest = urn.removeprefix(URN_PREFIX)
    if not urn.startswith(URN_PREFIX) or len(digest) != 64 or not set(digest) <= _HEX:
        raise FetchHintError(f"{urn[:100]} is not a content-addressed artifact URN ({URN_PREFIX}<64 hex>)")
    return storage_hint + f"{digest}.sop" if storage_hint.endswith("/") else storage_hint


def redacted(location: str) -> str:
    """The location without user information, query or fragment."""
    parts = urlsplit(location)
    if parts.scheme not in ("http", "https"):
        return location
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def fetch_artifact(urn: str, storage_hint: str, *, max_bytes: int, timeout: float,
                   ca_file: Path | None = None) -> FetchedArtifact:
    """The artifact's bytes, checked as the module docstring says (not yet verified by Axon). `ca_file`:
    the CA https servers must prove themselves with (default: the system's)."""
    location = artifact_location(urn, storage_hint)
    where = redacted(location)
    parts = urlsplit(location)
    if parts.scheme in ("http", "https"):
        data = _http(location, where, max_bytes, timeout, ca_file)
    elif parts.scheme == "file" and parts.netloc in ("", "localhost"):
        data = _file(Path(unquote(parts.path)), where, max_bytes)
    elif parts.scheme == "" and Path(location).is_absolute():
        data = _file(Path(location), where, max_bytes)
    else:
        raise FetchHintError(f"storage hint {where[:200]!r}: this node fetches from http(s) URLs, file URLs "
                             "and absolute paths only")
    _check_urn(urn, data, where)
    return FetchedArtifact(data, where)


def _file(path: Path, where: str, max_bytes: int) -> bytes:
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > max_bytes:
                raise FetchTooLarge(f"{where}: {size} bytes, over the {max_bytes}-byte limit "
                                    "(limits.max_artifact_bytes)")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise FetchFailed(f"{where}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > max_bytes:  # it grew while being read
        raise FetchTooLarge(f"{where}: over the {max_bytes}-byte limit (limits.max_artifact_bytes)")
    return data


def _http(url: str, where: str, max_bytes: int, timeout: float, ca_file: Path | None) -> bytes:
    import httpx  # only a node that fetches pays for importing the HTTP client

    deadline = time.monotonic() + timeout
    try:
        verify = ssl.create_default_context(cafile=str(ca_file)) if ca_file is not None else True
    except (OSError, ssl.SSLError) as exc:
        raise FetchFailed(f"sidecar.commands.fetch_ca_file {ca_file}: {exc}") from None
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, verify=verify) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise FetchFailed(f"{where}: HTTP {response.status_code} {response.reason_phrase}"
                                  + (" (redirects are not followed)" if response.is_redirect else ""))
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchTooLarge(f"{where}: {declared} bytes declared, over the {max_bytes}-byte limit "
                                    "(limits.max_artifact_bytes)")
            data = bytearray()
            for chunk in response.iter_bytes(_CHUNK):
                data += chunk
                if len(data) > max_bytes:
                    raise FetchTooLarge(f"{where}: more than {max_bytes} bytes arrived, over the limit "
                                        "(limits.max_artifact_bytes); stopped reading")
                if time.monotonic() > deadline:
                    raise FetchFailed(f"{where}: not complete after {timeout:g} s "
                                      "(sidecar.commands.fetch_timeout)")
    except httpx.TimeoutException:
        raise FetchFailed(f"{where}: no answer within {timeout:g} s (sidecar.commands.fetch_timeout)") \
            from None
    except httpx.HTTPError as exc:
        raise FetchFailed(f"{where}: {type(exc).__name__}: {exc}") from None
    return bytes(data)


def _check_urn(urn: str, data: bytes, where: str) -> None:
    try:
        envelope = ArtifactEnvelope.parse(strictjson.loads(data))
    except AxonError as exc:  # strictjson.JsonError too
        raise FetchWrongUrn(f"{where}: not an artifact envelope ({exc}), so not {urn}") from None
    actual = urn_for(envelope.blob)
    if actual != urn:
        raise FetchWrongUrn(f"{where}: holds {actual}, not the {urn} asked for")
