"""Artifact encryption (issue 3 item 3): Wycheproof vectors against the project's own functions, key
wrapping interop with eciespy, wrong recipients, and decryption that never touches the disk."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from ecies import decrypt as eciespy_decrypt
from ecies.config import Config as EciesConfig

from axon import ecies
from axon.artifact_crypto import (
    ArtifactCryptoError,
    ContentDecryptionFailed,
    NotARecipient,
    RecipientError,
    content_aad,
    decrypt_content,
    decrypt_module,
    encrypt_content,
    resolve_recipients,
)
from axon.ledger import ops
from axon.verify import Verifier
from synapse.artifacts import load_verified
from tests.artifact_fixtures import GROUP, NOW, compiled, identity, make_world, wat_module
from tests.vectors import WYCHEPROOF as VECTORS


def _wycheproof(name: str) -> list[tuple[dict, dict]]:
    doc = json.loads((VECTORS / name).read_text())
    return [(group, test) for group in doc["testGroups"] for test in group["tests"]]


GCM = _wycheproof("aes_gcm_test.json")
GCM_256 = [(g, t) for g, t in GCM if (g["keySize"], g["ivSize"], g["tagSize"]) == (256, 96, 128)]
GCM_OTHER = [(g, t) for g, t in GCM if (g["keySize"], g["ivSize"]) != (256, 96)]


def test_the_vector_files_hold_what_the_tests_expect():
    assert len(GCM_256) == 66 and {t["result"] for _, t in GCM_256} == {"valid", "invalid"}
    assert len(HKDF_PREFIX) == 7


@pytest.mark.parametrize("group,test", GCM_256, ids=[f"tc{t['tcId']}" for _, t in GCM_256])
def test_wycheproof_aes_256_gcm(group, test):
    key, iv, aad = (bytes.fromhex(test[k]) for k in ("key", "iv", "aad"))
    msg, sealed = bytes.fromhex(test["msg"]), bytes.fromhex(test["ct"] + test["tag"])
    if test["result"] == "valid":
        assert encrypt_content(key, iv, msg, aad) == sealed
        assert decrypt_content(key, iv, sealed, aad) == msg
    else:  # a modified tag or ciphertext: must never decrypt
        with pytest.raises(ContentDecryptionFailed):
            decrypt_content(key, iv, sealed, aad)


@pytest.mark.parametrize("group,test", GCM_OTHER[::4], ids=[f"tc{t['tcId']}" for _, t in GCM_OTHER[::4]])
def test_other_key_and_iv_sizes_are_refused(group, test):
    """AES-256 with a 96-bit IV only: the content cipher accepts no weaker key and no GHASH-derived IV."""
    key, iv, aad = (bytes.fromhex(test[k]) for k in ("key", "iv", "aad"))
    with pytest.raises(ArtifactCryptoError):
        decrypt_content(key, iv, bytes.fromhex(test["ct"] + test["tag"]), aad)
    with pytest.raises(ArtifactCryptoError):
        encrypt_content(key, iv, bytes.fromhex(test["msg"]), aad)


# HKDF-SHA256 in the key wrap is ecies.derive_key: salt and info empty, 32 bytes. Expand's first block
# T(1) does not depend on the output length, so a longer vector's first 32 bytes are what it must give.
HKDF_PREFIX = [t for _, t in _wycheproof("hkdf_sha256_test.json")
               if t["salt"] == "" and t["info"] == "" and t["size"] >= 32 and t["result"] == "valid"]


@pytest.mark.parametrize("test", HKDF_PREFIX, ids=[f"tc{t['tcId']}" for t in HKDF_PREFIX])
def test_wycheproof_hkdf_sha256_as_the_key_wrap_uses_it(test):
    ikm = bytes.fromhex(test["ikm"])
    split = len(ikm) // 2  # derive_key concatenates its two inputs into the IKM
    assert ecies.derive_key(ikm[:split], ikm[split:]) == bytes.fromhex(test["okm"])[:32]


# -- wrapping and recipients ------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def test_wrapped_content_key_opens_with_eciespy(world):
    """An independent ECIES implementation unwraps the content key; AES-GCM with the header/meta AAD
    then opens the module: the format is what spec/crypto.md says, not just self-consistent."""
    module = wat_module()
    envelope = world.package(module, encrypt_for=[world.node.did])
    wrapped = envelope.recipients[0]
    sealed = ecies.Sealed(wrapped.ephem_pub, wrapped.iv, wrapped.wrapped_key)
    content_key = eciespy_decrypt(world.node.key.secret_bytes(), sealed.to_eciespy(),
                                  config=EciesConfig(symmetric_nonce_length=12))
    aad = content_aad(envelope.header, envelope.meta)
    assert b'"urn"' not in aad and b'"kid"' in aad and b'"created_at"' in aad
    assert decrypt_content(content_key, envelope.content_iv, envelope.blob, aad) == module


def test_recipients_resolution(world):
    both = resolve_recipients([GROUP], world.ledger)
    assert both.context == GROUP
    assert {k.kid for k in both.keys} == {world.node.did, world.node2.did}
    mixed = resolve_recipients([world.node.did, world.outsider.key.public_key.hex()], world.ledger)
    assert mixed.context == [world.node.did, world.outsider.key.public_key.hex()]
    assert [k.kid for k in mixed.keys] == [world.node.did, None]
    for bad in (["did:sopcos:group:nobody"], ["not-a-did"], ["04" + "00" * 64], []):
        with pytest.raises(RecipientError):
            resolve_recipients(bad, world.ledger)
    with pytest.raises(RecipientError):
        resolve_recipients([world.node.did], None)  # a DID needs the ledger
    world.ledger.sign_and_submit(world.root, ops.revoke_key(world.outsider.did), NOW)
    with pytest.raises(RecipientError):
        resolve_recipients([world.outsider.did], world.ledger)


def test_wrong_recipient(world):
    envelope = world.package(wat_module(), encrypt_for=[GROUP])
    aad = envelope.content_aad()
    with pytest.raises(NotARecipient):
        decrypt_module(envelope.blob, envelope.content_iv, envelope.recipients, aad, world.outsider)
    impostor = identity("impostor", name="node-1")
    with pytest.raises(ContentDecryptionFailed):
        decrypt_module(envelope.blob, envelope.content_iv, envelope.recipients, aad, impostor)
    with pytest.raises(ContentDecryptionFailed):  # the right key, but another artifact's header/meta
        decrypt_module(envelope.blob, envelope.content_iv, envelope.recipients,
                       content_aad(envelope.header, {**envelope.meta, "gas_max": 1}), world.node)


# -- RAM only ------------------------------------------------------------------------------------


def _files_containing(roots: list[Path], needles: list[bytes]) -> list[Path]:
    found = []
    for root in roots:
        for path in root.rglob("*") if root.is_dir() else []:
            try:
                data = path.read_bytes() if path.is_file() else b""
            except OSError:
                continue
            if any(n in data for n in needles):
                found.append(path)
    return found


def test_decrypting_and_loading_writes_no_plaintext(world, tmp_path, monkeypatch):
    """Verify, decrypt and compile an encrypted artifact, evaluate it, then search every file under the
    temp dir, the working directory and wasmtime's default cache dir for the module or its code."""
    module = compiled("boiler-guard")
    # Sections and code; starting at a multiple of 3, its base64 is also inside the module's base64.
    code = module[9:201]
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    envelope = world.package(module, encrypt_for=[GROUP])
    artifact = work / "policy.sop"
    artifact.write_bytes(envelope.to_bytes())
    verified, evaluator = load_verified(artifact, Verifier(world.ledger, node_identity=world.node,
                                                           now=lambda: NOW))
    assert verified.encrypted and verified.module == module
    decision = evaluator.evaluate({"pressure_bar": 97.5, "valve_open": False}, {"mode": "AUTO"})
    assert decision.verdict.name == "HALT"
    needles = [module, code, base64.b64encode(code)]
    roots = [tmp_path, work, Path(os.environ.get("TMPDIR", "/tmp")) / "wasmtime",
             Path.home() / ".cache" / "wasmtime"]
    assert _files_containing(roots, needles) == []
    # The scan does find things: the artifact holds the ciphertext's base64.
    assert _files_containing([tmp_path], [base64.b64encode(envelope.blob[:63])]) == [artifact]
