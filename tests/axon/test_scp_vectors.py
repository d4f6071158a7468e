"""SCP's primitive wrappers (axon.transports.scp_crypto) against the Wycheproof vectors.

X25519, HMAC-SHA-256, HKDF-SHA256 and AES-GCM, from tests/vectors/wycheproof/ (C2SP/wycheproof).
Every vector runs against the project's own functions, never against `cryptography` directly.
"""

from __future__ import annotations

import pytest

from axon.transports.scp_crypto import (
    AesGcm,
    hkdf_sha256,
    hmac_check,
    hmac_sha256,
    x25519_shared,
)
from axon.transports.scp_errors import (
    ScpConfigError,
    ScpDecryptError,
    ScpError,
    ScpHmacError,
    ScpKeyError,
)
from tests.vectors import wycheproof


def cases(name: str) -> list[tuple[dict, dict]]:
    doc = wycheproof(name)
    return [(group, test) for group in doc["testGroups"] for test in group["tests"]]


def ids(items: list[tuple[dict, dict]]) -> list[str]:
    return [f"tc{t['tcId']}" for _, t in items]


X25519 = cases("x25519_test.json")
HMAC = cases("hmac_sha256_test.json")
HKDF = cases("hkdf_sha256_test.json")
GCM = cases("aes_gcm_test.json")


def test_vector_files_are_the_expected_ones() -> None:
    # Guards against an empty or swapped vector file silently making every test below vacuous.
    assert (len(X25519), len(HMAC), len(HKDF), len(GCM)) == (518, 174, 86, 316)


@pytest.mark.parametrize(("group", "test"), X25519, ids=ids(X25519))
def test_x25519(group: dict, test: dict) -> None:
    assert group["curve"] == "curve25519"
    private, public, shared = (bytes.fromhex(test[k]) for k in ("private", "public", "shared"))
    if not any(shared):
        # RFC 7748 §6.1: a low-order public key gives the all-zero secret; SCP refuses it.
        with pytest.raises(ScpKeyError):
            x25519_shared(private, public)
    else:
        # "valid" and "acceptable" (twist, non-canonical) keys must give the RFC's result.
        assert x25519_shared(private, public) == shared


def test_x25519_rejects_wrong_length_key() -> None:
    private = bytes.fromhex(X25519[0][1]["private"])
    with pytest.raises(ScpKeyError):
        x25519_shared(private, bytes(31))


@pytest.mark.parametrize(("group", "test"), HMAC, ids=ids(HMAC))
def test_hmac_sha256(group: dict, test: dict) -> None:
    key, msg, tag = (bytes.fromhex(test[k]) for k in ("key", "msg", "tag"))
    valid = test["result"] == "valid"
    assert (hmac_sha256(key, msg)[: group["tagSize"] // 8] == tag) is valid
    if group["tagSize"] == 256 and valid:
        hmac_check(key, msg, tag)
    else:
        # Wrong tags fail, and so do truncated ones: SCP always carries the full 32 bytes.
        with pytest.raises(ScpHmacError):
            hmac_check(key, msg, tag)


@pytest.mark.parametrize(("group", "test"), HKDF, ids=ids(HKDF))
def test_hkdf_sha256(group: dict, test: dict) -> None:
    ikm, salt, info = (bytes.fromhex(test[k]) for k in ("ikm", "salt", "info"))
    if test["result"] == "valid":
        assert hkdf_sha256(ikm, salt, info, test["size"]) == bytes.fromhex(test["okm"])
    else:
        assert "SizeTooLarge" in test["flags"]
        with pytest.raises(ScpConfigError):
            hkdf_sha256(ikm, salt, info, test["size"])


SCP_GCM = [(g, t) for g, t in GCM if (g["keySize"], g["ivSize"], g["tagSize"]) == (256, 96, 128)]
OTHER_GCM = [(g, t) for g, t in GCM if (g, t) not in SCP_GCM]


@pytest.mark.parametrize(("group", "test"), SCP_GCM, ids=ids(SCP_GCM))
def test_aes_256_gcm(group: dict, test: dict) -> None:
    key, iv, aad, msg, ct, tag = (bytes.fromhex(test[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag"))
    aead = AesGcm(key)
    if test["result"] == "valid":
        assert aead.seal(iv, msg, aad) == ct + tag
        assert aead.open(iv, ct + tag, aad) == msg
    else:
        with pytest.raises(ScpDecryptError):
            aead.open(iv, ct + tag, aad)


def test_gcm_vectors_for_scp_parameters_exist() -> None:
    assert len(SCP_GCM) == 66
    assert {t["result"] for _, t in SCP_GCM} == {"valid", "invalid"}


@pytest.mark.parametrize(("group", "test"), OTHER_GCM, ids=ids(OTHER_GCM))
def test_aes_gcm_other_parameters_are_refused(group: dict, test: dict) -> None:
    """SCP's wrapper is AES-256 with 96-bit nonces only; AES-128/192 keys and other IV sizes fail."""
    key, iv, aad, ct, tag = (bytes.fromhex(test[k]) for k in ("key", "iv", "aad", "ct", "tag"))
    with pytest.raises(ScpError):
        AesGcm(key).open(iv, ct + tag, aad)
