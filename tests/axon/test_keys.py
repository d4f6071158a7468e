"""Key generation (`scc keygen`), key files and $SOPCOS_KEY, and signatures against Wycheproof."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from eth_account import Account

from axon.keys import KeyFileError, PublicKey, load_identity
from scc.cli import main as scc
from tests.vectors import wycheproof_path

WYCHEPROOF = wycheproof_path("ecdsa_secp256k1_sha256_bitcoin_test.json")
PASSPHRASE = "correct horse battery staple"


def keygen(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | str, str]:
    rc = scc(["keygen", *args])
    out, err = capsys.readouterr()
    return rc, (json.loads(out) if "--json" in args and rc == 0 else out), err


def test_keygen_writes_an_owner_only_file_and_prints_only_public_details(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "author.key"
    rc, shown, err = keygen(capsys, "-o", str(path), "--name", "author", "--json")
    assert rc == 0 and err == ""
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    secret = doc["secret"]
    assert secret not in json.dumps(shown)
    assert shown["did"] == "did:sopcos:author#key-1" == doc["did"]
    assert shown["public_key"] == doc["public_key"] and shown["encrypted"] is False
    # Cross-check the address with eth-account, from the secret in the file.
    assert shown["address"] == Account.from_key(bytes.fromhex(secret)).address.lower()
    assert PublicKey.from_hex(shown["public_key"]).address == shown["address"]
    identity = load_identity(path, environ={})
    assert identity.did == shown["did"] and identity.key.address == shown["address"]


def test_keygen_text_output_and_default_did(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.key"
    rc, out, _ = keygen(capsys, "-o", str(path))
    assert rc == 0
    doc = json.loads(path.read_text())
    assert f"did:        did:sopcos:{doc['address']}#key-1" in out  # the name defaults to the address
    assert doc["public_key"] in out and doc["address"] in out and doc["secret"] not in out


def test_keygen_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k.key"
    path.write_text("precious")
    rc, _, err = keygen(capsys, "-o", str(path))
    assert rc == 2 and "already exists" in err and path.read_text() == "precious"


def test_keygen_rejects_a_bad_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = keygen(capsys, "-o", str(tmp_path / "k.key"), "--name", "bad name/with spaces")
    assert rc == 2 and "not a valid did:sopcos identifier" in err
    assert not (tmp_path / "k.key").exists()


def test_encrypt_without_a_passphrase_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOPCOS_KEY_PASSPHRASE", raising=False)
    rc, _, err = keygen(capsys, "-o", str(tmp_path / "k.key"), "--encrypt")
    assert rc == 2 and "SOPCOS_KEY_PASSPHRASE" in err and not (tmp_path / "k.key").exists()


@pytest.mark.slow
def test_encrypted_key_file_round_trip_and_wrong_passphrase(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "enc.key"
    monkeypatch.setenv("SOPCOS_KEY_PASSPHRASE", PASSPHRASE)
    rc, shown, _ = keygen(capsys, "-o", str(path), "--name", "plant-a", "--encrypt", "--json")
    assert rc == 0 and shown["encrypted"] is True and stat.S_IMODE(path.stat().st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert "secret" not in doc and doc["encrypted_secret"]["kdf"] == "scrypt"

    identity = load_identity(path, environ={"SOPCOS_KEY_PASSPHRASE": PASSPHRASE})
    assert identity.did == "did:sopcos:plant-a#key-1" and identity.key.address == shown["address"]
    assert Account.from_key(identity.key.secret_bytes()).address.lower() == shown["address"]

    with pytest.raises(KeyFileError, match="wrong passphrase"):
        load_identity(path, environ={"SOPCOS_KEY_PASSPHRASE": PASSPHRASE + "!"})
    with pytest.raises(KeyFileError, match="SOPCOS_KEY_PASSPHRASE"):
        load_identity(path, environ={})
    # The DID is authenticated with the secret: renaming the key in the file breaks decryption.
    doc["did"] = "did:sopcos:impostor#key-1"
    renamed = tmp_path / "renamed.key"
    renamed.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="wrong passphrase or the file was altered"):
        load_identity(renamed, environ={"SOPCOS_KEY_PASSPHRASE": PASSPHRASE})


def test_keys_load_from_the_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "ci.key"
    rc, shown, _ = keygen(capsys, "-o", str(path), "--name", "ci", "--json")
    assert rc == 0
    text = path.read_text()
    secret = json.loads(text)["secret"]
    from_json = load_identity(None, environ={"SOPCOS_KEY": text})
    assert (from_json.did, from_json.key.address) == (shown["did"], shown["address"])
    for bare in (secret, "0x" + secret, "  " + secret.upper() + "\n"):
        ident = load_identity(None, environ={"SOPCOS_KEY": bare})
        assert ident.key.address == shown["address"]
        assert ident.did == f"did:sopcos:{shown['address']}#key-1"  # bare hex carries no name
    monkeypatch.setenv("SOPCOS_KEY", secret)
    assert load_identity().key.address == shown["address"]  # the default environment is os.environ
    with pytest.raises(KeyFileError, match="SOPCOS_KEY"):
        load_identity(None, environ={})
    with pytest.raises(KeyFileError, match="neither a key file"):
        load_identity(None, environ={"SOPCOS_KEY": "not a key"})


# --- Wycheproof: ECDSA secp256k1 SHA-256, Bitcoin variant (DER, low-S only) --------------------------------


def _wycheproof_cases() -> list[tuple[str, dict]]:
    data = json.loads(WYCHEPROOF.read_text())
    assert data["numberOfTests"] == sum(len(g["tests"]) for g in data["testGroups"]) == 463
    return [(g["publicKey"]["uncompressed"], t) for g in data["testGroups"] for t in g["tests"]]


CASES = _wycheproof_cases()


def _expected(test: dict) -> bool:
    # This file has no "acceptable" results (asserted below); if a later revision adds some, the strict
    # reading applies: acceptable means "may be rejected", and a verifier for signatures rejects them.
    assert test["result"] in ("valid", "invalid"), test
    return test["result"] == "valid"


def _der_to_compact(sig: bytes) -> bytes | None:
    """r ‖ s (64 bytes) for a strict-DER signature whose integers fit; None when it does not parse."""
    try:
        r, s = decode_dss_signature(sig)
    except ValueError:
        return None
    if not (0 <= r < 2**256 and 0 <= s < 2**256):
        return b""  # parses, but cannot be written in 64 bytes: must be invalid
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


@pytest.mark.parametrize(("pub", "test"), CASES, ids=[f"tc{t['tcId']}" for _, t in CASES])
def test_wycheproof_ecdsa_secp256k1_bitcoin(pub: str, test: dict) -> None:
    key = PublicKey.from_hex(pub)
    digest = hashlib.sha256(bytes.fromhex(test["msg"])).digest()
    der = bytes.fromhex(test["sig"])
    expected = _expected(test)
    assert key.verify_der(der, digest) is expected, test["comment"]
    compact = _der_to_compact(der)
    if compact is None:
        assert not expected  # every valid vector is strict DER
    elif compact == b"":
        assert not expected
    else:
        assert key.verify(compact, digest) is expected, test["comment"]


def test_wycheproof_covers_both_outcomes_and_the_compact_path() -> None:
    parsed = [t for _, t in CASES if _der_to_compact(bytes.fromhex(t["sig"]))]
    assert sum(t["result"] == "valid" for _, t in CASES) == 162
    assert len(parsed) > 200 and any(t["result"] == "invalid" for t in parsed)
    assert any("SignatureMalleabilityBitcoin" in t["flags"] for t in parsed)  # high-S reaches verify()
