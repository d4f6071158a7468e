"""Wycheproof ECDH secp256k1 vectors against the project's ECDH (axon.keys), the one SIP-017 uses.

Wycheproof gives public keys as DER SubjectPublicKeyInfo and the shared secret as the x-coordinate;
our ECDH returns the whole point (spec/crypto.md), so its x is compared. The SPKI is read with
`cryptography`; a key that `cryptography` will not load but that is a well-formed named-secp256k1 SPKI
(an off-curve point, a bad compressed x) has its point bytes handed to *our* code, which must refuse it.
"""

from __future__ import annotations

import pytest
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from axon.keys import InvalidKey, PublicKey, SigningKey
from tests.vectors import wycheproof

DATA = wycheproof("ecdh_secp256k1_test.json")
TESTS = [t for group in DATA["testGroups"] for t in group["tests"]]
# DER header of a SubjectPublicKeyInfo for id-ecPublicKey on the named curve secp256k1, with the
# BIT STRING of an uncompressed (65-byte) or compressed (33-byte) point following it.
SPKI_K1 = {bytes.fromhex("3056301006072a8648ce3d020106052b8104000a034200"): 65,
           bytes.fromhex("3036301006072a8648ce3d020106052b8104000a032200"): 33}
# The flags under which the *point itself* is not on secp256k1: our code alone must refuse these.
OFF_CURVE = {"InvalidCurveAttack", "ModifiedPublicPoint", "InvalidCompressedPublic"}


class Rejected(Exception):
    pass


def raw_point(der: bytes) -> bytes | None:
    for header, size in SPKI_K1.items():
        if der.startswith(header) and len(der) == len(header) + size:
            return der[len(header):]
    return None


def our_public_key(der: bytes) -> PublicKey:
    """DER SPKI → the point bytes → axon.keys.PublicKey (which validates the point)."""
    try:
        key = load_der_public_key(der)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        point = raw_point(der)
        if point is None:
            raise Rejected(f"not a secp256k1 SubjectPublicKeyInfo: {exc}") from exc
        return PublicKey.from_bytes(point)  # cryptography refused the point: so must we
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256k1":
        raise Rejected("public key is not on secp256k1")
    return PublicKey.from_bytes(key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))


def our_shared_x(test: dict) -> bytes:
    private = SigningKey(int(test["private"], 16).to_bytes(32, "big"))
    point = private.ecdh_point(our_public_key(bytes.fromhex(test["public"])))
    assert len(point) == 65 and point[0] == 4
    return point[1:33]


def test_vector_file_is_the_expected_one():
    assert DATA["algorithm"] == "ECDH" and len(TESTS) == DATA["numberOfTests"] == 752


@pytest.mark.parametrize("test", TESTS, ids=[str(t["tcId"]) for t in TESTS])
def test_wycheproof_ecdh(test):
    if test["result"] == "invalid":
        with pytest.raises((InvalidKey, Rejected)):
            our_shared_x(test)
        return
    try:
        shared = our_shared_x(test)
    except (InvalidKey, Rejected):
        # "acceptable": refusing is allowed (e.g. an unusual ASN.1 encoding), never a wrong secret.
        assert test["result"] == "acceptable", test["comment"]
        return
    assert shared.hex() == test["shared"], test["comment"]


OFF_CURVE_TESTS = [t for t in TESTS if OFF_CURVE & set(t["flags"])]


def test_off_curve_vectors_are_present():
    assert len(OFF_CURVE_TESTS) >= 18


@pytest.mark.parametrize("test", OFF_CURVE_TESTS, ids=[str(t["tcId"]) for t in OFF_CURVE_TESTS])
def test_off_curve_points_are_refused_by_our_code_path(test):
    """No help from cryptography: the raw point bytes go straight to PublicKey.from_bytes."""
    point = raw_point(bytes.fromhex(test["public"]))
    assert point is not None
    with pytest.raises(InvalidKey):
        PublicKey.from_bytes(point)
