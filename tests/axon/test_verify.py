"""Axon verification (issue 3 item 5/7): every check's error code, in order, against a real ledger."""

from __future__ import annotations

import base64
import json

import pytest
import rfc8785

from axon import envelope as env_mod
from axon.envelope import ArtifactEnvelope
from axon.keys import Identity
from axon.ledger import AuthorityDenied, NonceGap, ReplayedTransaction, authority, operation_transaction, ops
from axon.verify import (
    CHECKS,
    ArtifactSuperseded,
    CheckProgress,
    InstalledVersions,
    Verifier,
    VerifyConfig,
    VerifyError,
)
from tests.artifact_fixtures import (
    GROUP,
    NOW,
    World,
    flip_b64,
    identity,
    make_world,
    set_leaf,
    tamper_cases,
    wat_module,
)

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@pytest.fixture
def world(tmp_path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def module() -> bytes:
    return wat_module()


def verifier(world: World, node=None, now: float = NOW, **config) -> Verifier:
    return Verifier(world.ledger, VerifyConfig(**config), node_identity=node, now=lambda: now)


def code_of(world: World, data: bytes, node=None, now: float = NOW, installed=None, **config) -> str:
    with pytest.raises(VerifyError) as info:
        verifier(world, node, now, **config).verify(data, installed)
    return info.value.code


def dumps(doc: dict) -> bytes:
    return json.dumps(doc).encode()


def resign(world: World, doc: dict, signer=None) -> bytes:
    """Re-sign an edited document as `signer` (the author by default): what a key holder can do."""
    return env_mod.sign(ArtifactEnvelope.parse(doc), signer or world.author).to_bytes()


# -- the happy path ------------------------------------------------------------------------------------


def test_a_signed_registered_artifact_verifies(world, module):
    envelope = world.package(module)
    result = verifier(world).verify(envelope.to_bytes())
    assert result.module == module
    assert (result.policy, result.version, result.kid) == ("boiler-guard", "1.2.0", world.author.did)
    assert result.urn == envelope.urn == "urn:sopcos:artifact:sha256:" + env_mod.sha256_hex(module)
    assert (result.authority_level, result.signer_level, result.encrypted) == (3, 3, False)
    assert result.meta.gas_max == 12


def test_the_checks_run_in_the_order_the_issue_lists(world, module):
    order = ["size", "json", "schema", "magic", "version", "type", "signer", "signature", "integrity", "urn",
             "authority", "registered", "policy_name", "not_revoked", "not_superseded", "not_expired",
             "rollback", "decryption", "module"]
    assert [c.__name__.removeprefix("check_") for c in CHECKS] == order
    progress = CheckProgress()  # what a verification actually ran, in the order it ran them
    verifier(world).verify(world.package(module).to_bytes(), progress=progress)
    assert progress.passed == order


def test_a_failure_reports_which_checks_had_passed(world, module):
    envelope = world.package(module, register=False)
    with pytest.raises(VerifyError) as info:
        verifier(world).verify(envelope.to_bytes())
    assert info.value.code == "AXON-VERIFY-UNREGISTERED"
    assert info.value.passed[-1] == "authority" and "signature" in info.value.passed
    assert info.value.to_dict()["check"] == "registered"


# -- 1-2: size and strict JSON -------------------------------------------------------------------------


def test_size_limit(world, module):
    data = world.package(module).to_bytes()
    assert code_of(world, data, max_artifact_bytes=len(data) - 1) == "AXON-VERIFY-SIZE"
    verifier(world, max_artifact_bytes=len(data)).verify(data)


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda t: t.replace(b'{"distribution"', b'{"signature":"x","distribution"', 1),
                 id="duplicate-key"),
    pytest.param(lambda t: t.replace(b'"gas_max":12', b'"gas_max":NaN'), id="nan"),
    pytest.param(lambda t: t.replace(b'"gas_max":12', b'"gas_max":12.0'), id="float"),
    pytest.param(lambda t: t.replace(b'"gas_max":12', b'"gas_max":1.2e1'), id="exponent"),
    pytest.param(lambda t: b"\xef\xbb\xbf" + t, id="byte-order-mark"),
    pytest.param(lambda t: t.replace(b"file:///", b"file:\xff//"), id="invalid-utf8"),
    pytest.param(lambda t: t.replace(b"file:///", b"file:\\ud800//"), id="lone-surrogate"),
    pytest.param(lambda t: t + b"{}", id="trailing-data"),
    pytest.param(lambda t: t[:-1], id="truncated"),
    pytest.param(lambda t: b"[" * 5000 + b"]" * 5000, id="deep-nesting"),
    pytest.param(lambda t: t.replace(b'"storage_hint":"', b'"storage_hint":' + b"[" * 20 + b'"', 1)
                 .replace(b'/artifacts/"', b'/artifacts/"' + b"]" * 20, 1), id="nested-too-deep"),
])
def test_strict_json(world, module, mangle):
    data = world.package(module).to_bytes()
    assert code_of(world, mangle(data)) == "AXON-VERIFY-JSON"


@pytest.mark.parametrize("mangle, says", [
    (lambda t: t.replace(b'"gas_max":12', b'"gas_max":12.0'), "the number 12.0 is not an integer"),
    (lambda t: t.replace(b'{"distribution"', b'{"signature":"x","distribution"', 1),
     "'signature' appears twice"),
    (lambda t: t[:-1], "at line 1 column"),
    (lambda t: t.replace(b"file:///", b"file:\\udfff//"), "unpaired UTF-16 surrogate"),
    (lambda t: t.replace(b"file:///", b"file:\\ud83d\\ude00\\udc00//"), "unpaired UTF-16 surrogate"),
    (lambda t: b"[" * 17 + b"]" * 17, "nested deeper than 16 levels"),
])
def test_strict_json_errors_say_what_is_wrong(world, module, mangle, says):
    with pytest.raises(VerifyError) as info:
        verifier(world).verify(mangle(world.package(module).to_bytes()))
    assert info.value.code == "AXON-VERIFY-JSON" and says in str(info.value)
    assert str(info.value).startswith("the artifact is not strict JSON: ")


def test_a_paired_surrogate_escape_is_not_refused(world, module):
    """Escapes are fine when they spell real characters; only the schema or signature may object."""
    data = world.package(module, storage_hint="file:///😀").to_bytes()
    escaped = data.replace("😀".encode(), b"\\ud83d\\ude00")
    assert escaped != data
    assert verifier(world).verify(escaped).envelope["distribution"]["storage_hint"] == "file:///😀"


def test_a_pretty_printed_envelope_still_verifies(world, module):
    """The signature covers the canonical form of the values, not the file's whitespace."""
    data = world.package(module).to_bytes()
    verifier(world).verify(json.dumps(json.loads(data), indent=2).encode())


# -- 3-4: schema and header ----------------------------------------------------------------------------

SIP009_FIELDS = {
    "header": ["magic", "version", "type", "kid"],
    "meta": ["source_hash", "compiler_version", "authority_level", "urn"],
    "distribution": ["storage_hint"],
    "payload": ["integrity", "blob"],
}


ADDED_META = ("policy", "version", "abi", "gas_max", "created_at")
TOP = ("header", "meta", "encryption", "distribution", "payload", "signature")


@pytest.mark.parametrize("path", [(obj, name) for obj, names in SIP009_FIELDS.items() for name in names]
                         + [("meta", name) for name in ADDED_META] + [(name,) for name in TOP])
def test_removing_any_required_field_is_a_schema_error(world, module, path):
    doc = json.loads(world.package(module).to_bytes())
    target = doc
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    assert code_of(world, dumps(doc)) == "AXON-VERIFY-SCHEMA"


@pytest.mark.parametrize("where", [(), ("header",), ("meta",), ("encryption",), ("distribution",),
                                   ("payload",)])
def test_an_unknown_field_anywhere_is_a_schema_error(world, module, where):
    doc = json.loads(world.package(module).to_bytes())
    target = doc
    for key in where:
        target = target[key]
    target["x_extra"] = 1
    assert code_of(world, dumps(doc)) == "AXON-VERIFY-SCHEMA"


@pytest.mark.parametrize("field,value", [
    ("signature", "not base64!"), ("signature", base64.b64encode(bytes(63)).decode()),
    ("payload", {"integrity": "md5:abc", "blob": "AAAA"}), ("payload", {"integrity": "sha256:" + "0" * 64,
                                                                          "blob": "AA=A"}),
    ("encryption", {"enabled": "yes"}), ("encryption", {"enabled": True}),
    ("meta", "LVL_3"),
])
def test_values_of_the_wrong_form_are_schema_errors(world, module, field, value):
    doc = json.loads(world.package(module).to_bytes())
    doc[field] = value
    assert code_of(world, dumps(doc)) == "AXON-VERIFY-SCHEMA"


def test_a_non_canonical_base64_signature_is_refused(world, module):
    """The unused low bits of base64's last character must be zero: one signature, one spelling."""
    doc = json.loads(world.package(module).to_bytes())
    sig = doc["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    doc["signature"] = sig[:85] + alphabet[alphabet.index(sig[85]) | 1] + "=="
    assert base64.b64decode(doc["signature"]) == base64.b64decode(sig)
    assert code_of(world, dumps(doc)) == "AXON-VERIFY-SCHEMA"


@pytest.mark.parametrize("field,value,code", [
    ("magic", "SOPX", "AXON-VERIFY-MAGIC"),
    ("version", "1.0", "AXON-VERIFY-VERSION"),
    ("version", "2.0", "AXON-VERIFY-VERSION"),
    ("type", "WASM_MODULE", "AXON-VERIFY-TYPE"),
])
def test_header_values(world, module, field, value, code):
    doc = json.loads(world.package(module).to_bytes())
    doc["header"][field] = value
    assert code_of(world, dumps(doc)) == code
    assert code_of(world, resign(world, doc)) == code  # even when signed: this Axon does not read it


# -- 5-6: signer and signature -------------------------------------------------------------------------


def test_unknown_signer(world, module):
    stranger = identity("stranger")
    envelope = world.package(module, signer=stranger, register=False)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-SIGNER-UNKNOWN"


def test_revoked_signer(world, module):
    data = world.package(module).to_bytes()
    world.ledger.sign_and_submit(world.root, ops.revoke_key(world.author.did), NOW)
    assert code_of(world, data) == "AXON-VERIFY-SIGNER-REVOKED"


def test_wrong_key_under_the_authors_kid(world, module):
    """Signed by another registered key while claiming to be the author."""
    envelope = world.package(module)
    forged = env_mod.sign(envelope, world.junior)  # keeps header.kid = author
    assert forged.kid == world.author.did
    assert code_of(world, forged.to_bytes()) == "AXON-VERIFY-SIGNATURE"


def test_high_s_twin_of_a_valid_signature_is_refused(world, module):
    doc = json.loads(world.package(module).to_bytes())
    sig = base64.b64decode(doc["signature"])
    s = int.from_bytes(sig[32:], "big")
    doc["signature"] = base64.b64encode(sig[:32] + (N - s).to_bytes(32, "big")).decode()
    assert code_of(world, dumps(doc)) == "AXON-VERIFY-SIGNATURE"


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_tampering_with_any_field_fails_with_its_code(world, module, encrypted):
    envelope = world.package(module, encrypt_for=[GROUP] if encrypted else None)
    doc = json.loads(envelope.to_bytes())
    verifier(world, world.node).verify(envelope.to_bytes())  # untouched, it passes
    cases = tamper_cases(world, doc)
    leaves = {path for path, _, _ in cases}
    assert leaves >= _leaf_paths(doc), "every leaf of the envelope is tampered with"
    for path, value, code in cases:
        data = dumps(set_leaf(doc, path, value))
        assert code_of(world, data, world.node) == code, path


def _leaf_paths(value: object, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_leaf_paths(v, f"{prefix}{k}/") for k, v in value.items()))
    if isinstance(value, list):
        return set().union(*(_leaf_paths(v, f"{prefix}{i}/") for i, v in enumerate(value[:1])))
    return {prefix.rstrip("/")}


# -- 7-9: integrity, URN, authority (signed by a key holder, so the signature passes) -------------------


def test_blob_changed_and_re_signed_fails_integrity(world, module):
    doc = json.loads(world.package(module).to_bytes())
    doc["payload"]["blob"] = base64.b64encode(module + b"\x00").decode()
    assert code_of(world, resign(world, doc)) == "AXON-VERIFY-INTEGRITY"


def test_integrity_fixed_but_urn_kept_fails_urn(world, module):
    doc = json.loads(world.package(module).to_bytes())
    other = wat_module(version="1.2.1")
    doc["payload"] = {"integrity": "sha256:" + env_mod.sha256_hex(other),
                      "blob": base64.b64encode(other).decode()}
    assert code_of(world, resign(world, doc)) == "AXON-VERIFY-URN"


@pytest.mark.parametrize("declared", ["LVL_4", "LVL_5"])
def test_declaring_more_authority_than_the_signer_holds(world, module, declared):
    envelope = world.package(module, level=declared, register=False)
    world.register(envelope, by=world.root)  # even with a registration by the root
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-AUTHORITY"


def test_junior_re_signing_the_authors_artifact_as_itself(world, module):
    doc = json.loads(world.package(module).to_bytes())
    doc["header"]["kid"] = world.junior.did
    assert code_of(world, resign(world, doc, world.junior)) == "AXON-VERIFY-AUTHORITY"


def test_the_ledger_refuses_authority_escalation(world, module):
    envelope = world.package(module, signer=world.junior, level="LVL_3", register=False)
    with pytest.raises(AuthorityDenied):
        world.register(envelope, by=world.junior)
    with pytest.raises(AuthorityDenied):  # nor can the junior make itself a LVL_3 key to sign with
        world.ledger.sign_and_submit(world.junior, ops.register_key(
            "did:sopcos:junior-alt#key-1", identity("junior-alt").key.public_key, "LVL_3"), NOW)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-AUTHORITY"


def test_declaring_less_authority_than_the_signer_holds_is_fine(world, module):
    envelope = world.package(module, level="LVL_1")
    assert verifier(world).verify(envelope.to_bytes()).authority_level == 1


# -- 10-13: the ledger's word on the artifact ----------------------------------------------------------


def test_unregistered(world, module):
    assert code_of(world, world.package(module, register=False).to_bytes()) == "AXON-VERIFY-UNREGISTERED"


def test_registered_for_another_version(world, module):
    envelope = world.package(module, register=False)
    world.ledger.sign_and_submit(world.author, ops.register_artifact(envelope.urn, "boiler-guard", "1.0.0",
                                                                     "LVL_3"), NOW)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-REGISTRATION"


def _admin(world: World) -> Identity:
    admin = identity("admin")
    world.ledger.sign_and_submit(world.root, ops.register_key(admin.did, admin.key.public_key, "LVL_4"), NOW)
    return admin


def test_a_lower_key_cannot_take_over_a_policy_name(world, module, monkeypatch):
    """Issue 10: a LVL_2 key packages a higher version of a LVL_4 key's policy, declared LVL_1 (all it may
    sign), whose module always ALLOWs. The ledger refuses to register it (rule 12); on a ledger that took
    it anyway (written without rule 12) Axon still refuses it, so no node serves it or raises its floor."""
    admin = _admin(world)
    genuine = world.package(module, signer=admin, level="LVL_4")  # boiler-guard 1.2.0 binds the name
    always_allow = wat_module(MEMORY + EVALUATE, version="9.0.0")
    hijack = world.package(always_allow, signer=world.junior, level="LVL_1", register=False)
    with pytest.raises(AuthorityDenied) as refused:
        world.register(hijack, by=world.junior)
    assert refused.value.code == "AXON-LEDGER-POLICY-NAME"
    assert code_of(world, hijack.to_bytes()) == "AXON-VERIFY-UNREGISTERED"
    with monkeypatch.context() as patched:  # the registration only; Axon below runs the real rule
        patched.setattr(authority, "may_publish_policy", lambda *args: None)
        world.register(hijack, by=world.junior)
    assert world.ledger.artifact(hijack.urn) is not None
    with pytest.raises(VerifyError) as info:
        verifier(world).verify(hijack.to_bytes())
    assert info.value.code == "AXON-VERIFY-POLICY-NAME" and info.value.check == "policy_name"
    assert admin.did in str(info.value) and info.value.passed[-1] == "registered"
    assert verifier(world).verify(genuine.to_bytes()).signer_level == 4


def test_the_signer_not_only_the_registrant_must_hold_the_name(world, module):
    """The ledger sees who registers; Axon holds the signer to the name too."""
    world.package(module, level="LVL_2")  # the author (LVL_3) owns boiler-guard, at LVL_2
    junior_signed = world.package(wat_module(version="1.3.0"), signer=world.junior, level="LVL_2",
                                  register=False)
    world.register(junior_signed, by=world.author)  # the owner registers what the junior signed
    assert code_of(world, junior_signed.to_bytes()) == "AXON-VERIFY-POLICY-NAME"


def test_an_administrator_at_or_above_the_owner_speaks_for_the_name(world, module):
    world.package(module)  # the author (LVL_3) owns boiler-guard at LVL_3
    admin = _admin(world)
    fix = world.package(wat_module(version="1.2.1"), signer=admin, level="LVL_3")
    assert verifier(world).verify(fix.to_bytes()).kid == admin.did
    lowered = world.package(wat_module(version="1.2.2"), signer=admin, level="LVL_2")  # LVL_4 > LVL_3
    assert world.ledger.policy("boiler-guard").level == 2
    verifier(world).verify(lowered.to_bytes())


def test_revoked_artifact(world, module):
    envelope = world.package(module)
    world.ledger.sign_and_submit(world.author, ops.revoke_artifact(envelope.urn, "wrong trip point"), NOW)
    with pytest.raises(VerifyError) as info:
        verifier(world).verify(envelope.to_bytes())
    assert info.value.code == "AXON-VERIFY-REVOKED" and "wrong trip point" in str(info.value)


def test_superseded_artifact_names_its_successor(world, module):
    old = world.package(module)
    new = world.package(wat_module(version="1.3.0"))
    world.ledger.sign_and_submit(world.author, ops.supersede_artifact(old.urn, new.urn), NOW)
    with pytest.raises(ArtifactSuperseded) as info:
        verifier(world).verify(old.to_bytes())
    assert info.value.code == "AXON-VERIFY-SUPERSEDED"
    assert info.value.successor == new.urn and new.urn in str(info.value)
    assert info.value.to_dict()["successor"] == new.urn
    verifier(world).verify(new.to_bytes())


def test_replayed_registration_does_not_undo_a_revocation(world, module):
    envelope = world.package(module, register=False)
    op = ops.register_artifact(envelope.urn, envelope.policy, envelope.version, "LVL_3")
    raw = operation_transaction(op, world.ledger.nonce_of(world.author.key.address)).sign(
        world.author.key, world.ledger.chain_id).encode()
    world.ledger.submit(raw, NOW)
    world.ledger.sign_and_submit(world.author, ops.revoke_artifact(envelope.urn, "recalled"), NOW)
    with pytest.raises(ReplayedTransaction):
        world.ledger.submit(raw, NOW + 1)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-REVOKED"


def test_out_of_order_operations_are_refused_and_change_nothing(world, module):
    """A revocation signed with a later nonce cannot land before the registration it follows."""
    envelope = world.package(module, register=False)
    nonce = world.ledger.nonce_of(world.author.key.address)
    register = operation_transaction(
        ops.register_artifact(envelope.urn, envelope.policy, envelope.version, "LVL_3"), nonce)
    revoke = operation_transaction(ops.revoke_artifact(envelope.urn, "recalled"), nonce + 1)
    raw_register = register.sign(world.author.key, world.ledger.chain_id).encode()
    raw_revoke = revoke.sign(world.author.key, world.ledger.chain_id).encode()
    with pytest.raises(NonceGap):
        world.ledger.submit(raw_revoke, NOW)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-UNREGISTERED"
    world.ledger.submit(raw_register, NOW)
    verifier(world).verify(envelope.to_bytes())
    world.ledger.submit(raw_revoke, NOW)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-REVOKED"


# -- 14-15: time and rollback ---------------------------------------------------------------------------


def test_expiry(world, module):
    data = world.package(module, expires_at=NOW + 3600).to_bytes()
    verifier(world, now=NOW + 3599).verify(data)
    assert code_of(world, data, now=NOW + 3600) == "AXON-VERIFY-EXPIRED"


def test_created_in_the_future(world, module):
    data = world.package(module, created_at=NOW + 301).to_bytes()
    assert code_of(world, data) == "AXON-VERIFY-NOT-YET-VALID"
    verifier(world, now=NOW + 1).verify(data)  # within the 300 s clock skew


def test_rollback(world, module):
    data = world.package(module).to_bytes()  # 1.2.0
    newer = InstalledVersions({"boiler-guard": "1.10.0"})
    assert code_of(world, data, installed=newer) == "AXON-VERIFY-ROLLBACK"
    for installed in ({"boiler-guard": "1.2.0"}, {"boiler-guard": "1.1.9"}, {"tank-overfill": "9.0.0"}, {}):
        verifier(world).verify(data, InstalledVersions(installed))


# -- 16: decryption -----------------------------------------------------------------------------------


def test_group_members_decrypt_in_memory(world, module):
    envelope = world.package(module, encrypt_for=[GROUP])
    assert envelope.doc["encryption"]["recipient_context"] == GROUP
    assert module not in envelope.to_bytes() and base64.b64encode(module) not in envelope.to_bytes()
    for node in (world.node, world.node2):
        result = verifier(world, node).verify(envelope.to_bytes())
        assert result.module == module and result.encrypted


def test_public_key_recipients(world, module):
    outsider_key = world.outsider.key.public_key.hex()
    envelope = world.package(module, encrypt_for=[outsider_key, world.node.did])
    assert envelope.doc["encryption"]["recipient_context"] == [outsider_key, world.node.did]
    assert verifier(world, world.outsider).verify(envelope.to_bytes()).module == module
    assert verifier(world, world.node).verify(envelope.to_bytes()).module == module


def test_decryption_errors(world, module):
    data = world.package(module, encrypt_for=[GROUP]).to_bytes()
    assert code_of(world, data) == "AXON-VERIFY-DECRYPT-NO-KEY"
    assert code_of(world, data, world.outsider) == "AXON-VERIFY-DECRYPT-RECIPIENT"
    impostor = identity("impostor", name="node-1")  # claims node-1's DID with another key
    assert impostor.did == world.node.did
    assert code_of(world, data, impostor) == "AXON-VERIFY-DECRYPT"


def test_a_revoked_group_member_gets_no_wrapped_key(world, module):
    world.ledger.sign_and_submit(world.root, ops.revoke_key(world.node2.did), NOW)
    data = world.package(module, encrypt_for=[GROUP]).to_bytes()
    assert code_of(world, data, world.node2) == "AXON-VERIFY-DECRYPT-RECIPIENT"
    verifier(world, world.node).verify(data)


@pytest.mark.parametrize("edit", ["meta", "header", "blob", "wrapped_key", "iv"])
def test_encryption_binds_header_meta_and_blob(world, module, edit):
    """Edits made by the signer itself (re-signed and registered) still do not decrypt: GCM's tag covers
    the blob and its associated data is the header and meta."""
    doc = json.loads(world.package(module, encrypt_for=[GROUP]).to_bytes())
    if edit == "meta":
        doc["meta"]["created_at"] -= 1
    elif edit == "header":  # the root may sign under the author's policy name (check 11)
        doc["header"]["kid"] = world.root.did
    elif edit == "blob":
        blob = bytearray(base64.b64decode(doc["payload"]["blob"]))
        blob[0] ^= 1
        digest = env_mod.sha256_hex(bytes(blob))
        doc["payload"] = {"integrity": "sha256:" + digest, "blob": base64.b64encode(bytes(blob)).decode()}
        doc["meta"]["urn"] = "urn:sopcos:artifact:sha256:" + digest
    elif edit == "wrapped_key":
        for item in doc["encryption"]["recipients"]:
            item["wrapped_key"] = flip_b64(item["wrapped_key"])
    else:
        doc["encryption"]["iv"] = flip_b64(doc["encryption"]["iv"])
    signer = world.root if edit == "header" else world.author
    envelope = env_mod.sign(ArtifactEnvelope.parse(doc), signer)
    if edit == "blob":
        world.register(envelope, by=signer)
    assert code_of(world, envelope.to_bytes(), world.node) == "AXON-VERIFY-DECRYPT"


def test_recipient_entry_renamed_to_another_node(world, module):
    doc = json.loads(world.package(module, encrypt_for=[world.node.did]).to_bytes())
    doc["encryption"]["recipients"][0]["kid"] = world.outsider.did
    data = resign(world, doc)
    assert code_of(world, data, world.node) == "AXON-VERIFY-DECRYPT-RECIPIENT"
    assert code_of(world, data, world.outsider) == "AXON-VERIFY-DECRYPT"


# -- 17: the module ---------------------------------------------------------------------------------


MEMORY = '(memory (export "memory") 1 1)'
EVALUATE = '(func (export "evaluate") (param i64) (result i32) (i32.const 1))'


@pytest.mark.parametrize("wat", [
    pytest.param('(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))'
                 + MEMORY + EVALUATE, id="wasi-import"),
    pytest.param('(import "sopcos" "get_telemetry" (func (param i32) (result i32)))' + MEMORY + EVALUATE,
                 id="host-signature"),
    pytest.param(MEMORY + EVALUATE + '(func (export "run") (result i32) (i32.const 1))', id="extra-export"),
    pytest.param(MEMORY.replace("1 1", "1 4") + EVALUATE, id="growable-memory"),
    pytest.param(MEMORY + EVALUATE.replace("param i64", "param i32"), id="evaluate-signature"),
    pytest.param(MEMORY, id="no-evaluate"),
])
def test_modules_outside_the_abi_are_refused_even_when_signed_and_registered(world, wat):
    envelope = world.package(wat_module(wat))
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-MODULE"


def test_invalid_wasm_is_refused(world, module):
    broken = module[:20] + b"\xff" + module[21:]
    doc = json.loads(world.package(module).to_bytes())
    digest = env_mod.sha256_hex(broken)
    doc["payload"] = {"integrity": "sha256:" + digest, "blob": base64.b64encode(broken).decode()}
    doc["meta"]["urn"] = "urn:sopcos:artifact:sha256:" + digest
    envelope = env_mod.sign(ArtifactEnvelope.parse(doc), world.author)
    world.register(envelope)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-MODULE"


@pytest.mark.parametrize("field,value", [("version", "1.2.1"), ("gas_max", 1),
                                         ("source_hash", "sha256:" + "0" * 64),
                                         ("compiler_version", "scc-0.0.9")])
def test_envelope_meta_must_match_the_modules_own(world, module, field, value):
    doc = json.loads(world.package(module, register=False).to_bytes())
    doc["meta"][field] = value
    envelope = env_mod.sign(ArtifactEnvelope.parse(doc), world.author)
    world.register(envelope)
    assert code_of(world, envelope.to_bytes()) == "AXON-VERIFY-MODULE-META"


def test_error_messages_carry_no_key_material(world, module):
    data = world.package(module, encrypt_for=[GROUP]).to_bytes()
    for node in (world.outsider, identity("impostor", name="node-1")):
        with pytest.raises(VerifyError) as info:
            verifier(world, node).verify(data)
        text = json.dumps(info.value.to_dict())
        assert node.key.secret_bytes().hex() not in text and node.key.public_key.hex() not in text


def test_signature_is_over_the_rfc8785_form_of_the_envelope_without_signature(world, module):
    """Recomputed independently here with rfc8785 and coincurve-backed PublicKey.verify."""
    doc = json.loads(world.package(module).to_bytes())
    body = {k: v for k, v in doc.items() if k != "signature"}
    digest = env_mod.hashlib.sha256(rfc8785.dumps(body)).digest()
    assert world.author.key.public_key.verify(base64.b64decode(doc["signature"]), digest)
