"""Published test vectors kept in the repository (tests/vectors/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

WYCHEPROOF = Path(__file__).resolve().parent / "vectors" / "wycheproof"


def wycheproof_path(name: str) -> Path:
    """The path of a Wycheproof file, e.g. `wycheproof_path("x25519_test.json")`."""
    path = WYCHEPROOF / name
    if not path.is_file():
        raise FileNotFoundError(f"Wycheproof file {name} is not in {WYCHEPROOF}")
    return path


def wycheproof(name: str) -> dict:
    return json.loads(wycheproof_path(name).read_text(encoding="utf-8"))
