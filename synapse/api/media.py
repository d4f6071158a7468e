"""Which request bodies are declared JSON: the one rule of every route that reads a JSON body.

application/json, or application/<something>+json, parameters such as `charset` allowed. A body
with any other Content-Type, or none, is refused (415) before it is read: the service does not guess
what a body is (docs/service.md). Each route answers the refusal in its own protocol's error body.
"""

from __future__ import annotations

JSON = "application/json"


def not_json(content_type: str | None) -> str | None:
    """None when `content_type` declares JSON, else why the body is refused, for the error message."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == JSON or (media.startswith("application/") and media.endswith("+json")):
        return None
    shown = "no content type" if content_type is None else f"content type {content_type!r}"
    return f"{shown} is not JSON; send {JSON}"
