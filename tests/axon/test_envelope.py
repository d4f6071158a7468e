"""The .sop envelope (issue 3 item 2): SIP-009 v1.1 field for field, canonical signing bytes, building."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re

import jsonschema
import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from axon import envelope as env_mod
from axon.artifact_crypto import content_aad
from axon.envelope import ArtifactEnvelope, EnvelopeFormatError, PackageSpec, build, canonical_json
from tests.artifact_fixtures import GROUP, NOW, POLICIES, compiled, identity, make_world, wat_module

N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
AUTHOR = identity("author")

# SIP-009 §4, v1.1: every object and field of the published schema.
SIP009 = {"header": {"magic", "version", "type", "kid"},
          "meta": {"source_hash", "compiler_version", "authority_level", "urn"},
          "encryption": {"enabled", "algo", "iv", "recipient_context"},
          "distribution": {"storage_hint"},
          "payload": {"integrity", "blob"}}


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path)


def test_the_shipped_schema_is_a_valid_json_schema():
    jsonschema.Draft202012Validator.check_schema(env_mod.schema())


def test_a_built_envelope_has_every_sip009_field_and_meets_the_schema(world):
    envelope = world.package(compiled(), encrypt_for=[GROUP], expires_at=NOW + 86400)
    doc = json.loads(envelope.to_bytes())
    assert set(doc) == set(SIP009) | {"signature"}
    for name, fields in SIP009.items():
        assert fields <= set(doc[name]), name
    assert doc["header"] == {"magic": "SOPC", "version": "1.1", "type": "WASM_POLICY", "kid": AUTHOR.did}
    jsonschema.validate(doc, env_mod.schema())
    plain = json.loads(world.package(compiled("tank-overfill")).to_bytes())
    assert plain["encryption"] == {"enabled": False}
    jsonschema.validate(plain, env_mod.schema())


def test_meta_hashes_and_urn(world):
    source = (POLICIES / "boiler-guard.json").read_bytes()
    module = compiled()
    doc = json.loads(world.package(module).to_bytes())
    digest = hashlib.sha256(module).hexdigest()
    assert doc["payload"]["integrity"] == "sha256:" + digest
    assert doc["meta"]["urn"] == "urn:sopcos:artifact:sha256:" + digest
    assert base64.b64decode(doc["payload"]["blob"]) == module
    canonical_source = rfc8785.dumps(json.loads(source))
    assert doc["meta"]["source_hash"] == "sha256:" + hashlib.sha256(canonical_source).hexdigest()
    assert doc["meta"]["compiler_version"].startswith("scc-")
    assert (doc["meta"]["policy"], doc["meta"]["version"]) == ("boiler-guard", "1.2.0")
    assert doc["meta"]["gas_max"] > 0 and doc["meta"]["abi"] == 1 and doc["meta"]["created_at"] == NOW


def test_encrypted_blob_hashes_are_of_the_ciphertext(world):
    envelope = world.package(compiled(), encrypt_for=[GROUP])
    digest = hashlib.sha256(envelope.blob).hexdigest()
    assert envelope.integrity == "sha256:" + digest and envelope.urn.endswith(digest)
    assert envelope.blob != compiled() and len(envelope.blob) == len(compiled()) + 16


def test_signature_is_low_s_over_the_canonical_envelope_without_signature(world):
    doc = json.loads(world.package(compiled()).to_bytes())
    signature = base64.b64decode(doc["signature"])
    assert len(signature) == 64 and int.from_bytes(signature[32:], "big") <= N // 2
    body = {k: v for k, v in doc.items() if k != "signature"}
    assert AUTHOR.key.public_key.verify(signature, hashlib.sha256(rfc8785.dumps(body)).digest())


def test_the_file_is_canonical_json(world):
    envelope = world.package(compiled(), encrypt_for=[GROUP])
    data = envelope.to_bytes()
    assert rfc8785.dumps(json.loads(data)) == data
    body = rfc8785.dumps({k: v for k, v in json.loads(data).items() if k != "signature"})
    assert envelope.signing_bytes() == body and envelope.digest() == hashlib.sha256(body).digest()


def test_packaging_is_reproducible(world):
    """Same module, key and spec: the same bytes (RFC 6979 signatures, no hidden clock)."""
    spec = PackageSpec("LVL_3", NOW, NOW + 60, "s3://vault/a/")
    assert build(compiled(), AUTHOR, spec).to_bytes() == build(compiled(), AUTHOR, spec).to_bytes()


def test_build_records_the_spec(world):
    spec = PackageSpec("LVL_2", NOW, NOW + 60, "s3://vault/a/")
    envelope = build(compiled(), AUTHOR, spec)
    recorded = (envelope.meta["authority_level"], envelope.created_at, envelope.expires_at,
                envelope.storage_hint)
    assert recorded == ("LVL_2", NOW, NOW + 60, "s3://vault/a/")
    assert "expires_at" not in build(compiled(), AUTHOR, PackageSpec("LVL_2", NOW)).meta
    with pytest.raises(ValueError):
        build(compiled(), AUTHOR, PackageSpec("LVL_6", NOW))


def test_associated_data_is_header_and_meta_without_urn(world):
    envelope = world.package(compiled(), encrypt_for=[GROUP])
    meta = {k: v for k, v in envelope.meta.items() if k != "urn"}
    expected = rfc8785.dumps({"header": envelope.header, "meta": meta})
    assert content_aad(envelope.header, envelope.meta) == expected


# -- canonical form ------------------------------------------------------------------------------


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(blob=st.binary(max_size=300), hint=_text, kid_name=st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True),
       extra=st.dictionaries(_text, st.integers(-2**53 + 1, 2**53 - 1) | _text, max_size=3))
def test_fast_canonical_form_equals_rfc8785(blob, hint, kid_name, extra):
    doc = {"payload": {"blob": base64.b64encode(blob).decode(), "integrity": "sha256:" + "0" * 64},
           "distribution": {"storage_hint": hint}, "header": {"kid": f"did:sopcos:{kid_name}"},
           "meta": extra, "signature": "x"}
    assert canonical_json(doc, blob_is_base64=True) == rfc8785.dumps(doc)


def test_marker_in_another_field_falls_back_to_rfc8785():
    doc = {"payload": {"blob": "AAAA"}, "distribution": {"storage_hint": "\x00sopc-blob\x00"}}
    assert canonical_json(doc, blob_is_base64=True) == rfc8785.dumps(doc)


# -- parsing errors name where -------------------------------------------------------------------------


@pytest.mark.parametrize("edit,pointer", [
    (lambda d: d["meta"].pop("urn"), "/meta"),
    (lambda d: d["header"].update(kid="alice"), "/header/kid"),
    (lambda d: d["encryption"]["recipients"][0].update(iv="short"), "/encryption/recipients/0/iv"),
    (lambda d: d["payload"].update(blob="@@@@"), "/payload/blob"),
    (lambda d: d.update(signature=base64.b64encode(bytes(64)).decode()[:-3] + "B=="), "/signature"),
])
def test_format_errors_carry_a_json_pointer(world, edit, pointer):
    doc = json.loads(world.package(wat_module(), encrypt_for=[GROUP]).to_bytes())
    edit(doc)
    with pytest.raises(EnvelopeFormatError) as info:
        ArtifactEnvelope.parse(doc)
    assert info.value.pointer == pointer and str(info.value).startswith(pointer)


# -- strict base64, whichever decoder is installed ----------------------------------------------------

# Strict base64 as a regular expression, independent of any decoder: whole quads, then at most one
# final quad with one or two `=`.
_STRICT_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_B64_EDGES = ["", "AAAA", "AA==", "AAA=", "AB==", "AAAA=", "AAAA==", "AAAA====", "AAA=AAAA", "AA=A", "=AAA",
              "====", "A===", "AAA", "AAAAA", "AAAA\n", " AAAA", "AA-_", "AAAA\x00", "AAé=", "QUJD+/9="]


@pytest.fixture(params=sorted(env_mod.BASE64_DECODERS))
def decoder(request, monkeypatch):
    monkeypatch.setattr(env_mod, "_decode_base64", env_mod.BASE64_DECODERS[request.param])
    return request.param


def _agrees_with_the_regex(text: str) -> None:
    decoded = env_mod.strict_b64decode(text)
    if re.fullmatch(_STRICT_B64, text, re.ASCII):
        assert decoded == base64.b64decode(text), text
    else:
        assert decoded is None, text


@pytest.mark.parametrize("text", _B64_EDGES)
def test_strict_base64_edge_cases(decoder, text):
    _agrees_with_the_regex(text)


@settings(max_examples=300, deadline=None,  # the fixture only picks the decoder: same for every input
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text("AQw/+=-_ \n\x00é", max_size=16))
def test_strict_base64_is_the_regex(decoder, text):
    _agrees_with_the_regex(text)


def test_the_fastest_installed_decoder_is_the_one_parse_uses():
    preferred = "pybase64" if "pybase64" in env_mod.BASE64_DECODERS else "binascii"
    assert preferred == env_mod.BASE64_DECODER
    assert env_mod._decode_base64 is env_mod.BASE64_DECODERS[preferred]


# -- the compiled schema validator agrees with jsonschema -------------------------------------------

@pytest.fixture(scope="module")
def envelopes(tmp_path_factory) -> list[dict]:
    """A plain envelope, one encrypted for a group and one for a list of recipients (a DID and a key)."""
    world = make_world(tmp_path_factory.mktemp("schema"))
    listed = [world.node.did, world.node2.key.public_key.hex()]
    built = [world.package(wat_module(), register=False),
             world.package(wat_module(), encrypt_for=[GROUP], expires_at=NOW + 60, register=False),
             world.package(wat_module(), encrypt_for=listed, register=False)]
    return [json.loads(envelope.to_bytes()) for envelope in built]


def _reference_valid(doc) -> bool:
    return env_mod._validator().is_valid(doc)


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    yield path, node


def _at(doc, path):
    for step in path:
        doc = doc[step]
    return doc


def _replaced(doc, path, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    _at(doc, path[:-1])[path[-1]] = value
    return doc


def _near(value) -> list:
    """Values just inside and just outside whatever the schema says about a field holding `value`."""
    if isinstance(value, bool):
        return [not value, int(value), None, str(value).lower()]
    if isinstance(value, int):
        return [-1, 0, 1, 65535, 65536, 253402300799, 253402300800, 2**53 - 1, 2**53, 2**64, -(2**70),
                True, str(value), None]
    if isinstance(value, str):
        return [value + "\n", value + " ", value[:-1], value + value[-1:], value.upper(), "", "\n" + value,
                value.replace("=", "A"), value[:-2] + "==", value + "é", 12, None, [value]]
    if isinstance(value, list):
        return [[], value + value, value[:1], {}, "x"]
    return [{}, {**value, "extra": 1}, [value], None]


def test_the_compiled_validator_is_used_for_valid_envelopes(envelopes, monkeypatch):
    for doc in envelopes:
        assert env_mod._known_valid(doc)
    monkeypatch.setattr(env_mod, "_validator", None)  # parse must not need jsonschema for a valid envelope
    ArtifactEnvelope.parse(envelopes[1])


def test_the_compiled_validator_agrees_near_every_field(envelopes):
    edits = []
    for doc in envelopes:
        for path, value in _leaves(doc):
            edits += [(path, _replaced(doc, path, other)) for other in _near(value)]
            parent = _at(doc, path[:-1]) if path else None
            if isinstance(parent, dict):  # the field left out
                without = {k: v for k, v in parent.items() if k != path[-1]}
                edits.append((path, _replaced(doc, path[:-1], without)))
    for path, edited in edits:
        assert env_mod._known_valid(edited) == _reference_valid(edited), path
    assert len(edits) > 500 and sum(map(_reference_valid, (e for _, e in edits))) > 20  # both answers seen


_json = st.recursive(st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=8),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=3),
                     max_leaves=5)
_chars = "aA0:/+=#._-\n é\x00"


@pytest.mark.slow
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_compiled_validator_agrees_on_random_edits(envelopes, data):
    doc = data.draw(st.sampled_from(envelopes))
    for _ in range(data.draw(st.integers(1, 3))):
        path, value = data.draw(st.sampled_from(list(_leaves(doc))))
        if isinstance(value, str) and value and data.draw(st.booleans()):
            at = data.draw(st.integers(0, len(value)))
            cut = data.draw(st.integers(0, 1))
            value = value[:at] + data.draw(st.text(_chars, max_size=2)) + value[at + cut:]
        elif isinstance(value, dict) and data.draw(st.booleans()):
            value = {**value, data.draw(st.text(_chars, max_size=6)): data.draw(_json)}
        else:
            value = data.draw(_json)
        doc = _replaced(doc, path, value)
    assert env_mod._known_valid(doc) == _reference_valid(doc)
