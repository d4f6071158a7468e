"""Keys in a PKCS#11 token (issue 12 item 6): a real SoftHSM2 token per test (tests/softhsm.py).

The token key signs artifacts Axon verifies and ledger transactions the ledger admits, its signatures
are low-S and recover to its public key like an in-memory key's, it opens SIP-017 messages by ECDH in
the token, and its private half cannot be read out. Errors name what is wrong and never the PIN.
"""

from __future__ import annotations

import hashlib

import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.exceptions import AttributeSensitive

from axon import envelope as env_mod
from axon import pkcs11_uri
from axon.artifact_crypto import RecipientKey, Recipients
from axon.cli import main as axon_main
from axon.errors import AxonError
from axon.keys import _N, Identity, KeyMaterialError, PublicKey, SigningKey, did_for, load_identity, recover
from axon.ledger import Ledger, ops
from axon.messaging import envelope as message_envelope
from axon.messaging.inner import Message
from axon.pkcs11_token import SECP256K1_PARAMS, TokenError, generate_token_key, open_module
from axon.verify import Verifier, VerifyConfig
from tests.artifact_fixtures import NOW, identity, wat_module
from tests.softhsm import USER_PIN, SoftHSM


@pytest.fixture
def hsm(tmp_path):
    with SoftHSM(tmp_path) as token:
        yield token


@pytest.fixture
def token_key(hsm) -> Identity:
    return generate_token_key(hsm.uri("signer"), "plant-signer")


def test_the_private_key_is_created_in_the_token_and_cannot_be_read_out(hsm, token_key):
    # The process's one handle on the module (a second pkcs11.lib would finalise it when collected);
    # token_key's session has logged the process in.
    with open_module(hsm.module).get_token(token_label=hsm.label).open() as session:
        private = session.get_key(ObjectClass.PRIVATE_KEY, label="signer")
        assert private[Attribute.EXTRACTABLE] is False and private[Attribute.SENSITIVE] is True
        assert private[Attribute.NEVER_EXTRACTABLE] is True and private[Attribute.TOKEN] is True
        with pytest.raises(AttributeSensitive):
            private[Attribute.VALUE]
        # The pair is named by the key's address, and its DID lives beside it.
        assert private[Attribute.ID] == bytes.fromhex(token_key.key.address[2:])
    loaded = load_identity(hsm.uri("signer"))
    assert (loaded.did, loaded.key.public_key) == ("did:sopcos:plant-signer#key-1", token_key.key.public_key)


def test_token_signatures_are_low_s_and_recover_to_the_key_like_in_memory_ones(token_key):
    public = token_key.key.public_key
    # About half of the token's raw CKM_ECDSA signatures are high-S: without normalising, 40 all low-S
    # would be a 2**-40 chance.
    for i in range(40):
        digest = hashlib.sha256(b"reading %d" % i).digest()
        sig65 = token_key.key.sign_recoverable(digest)
        assert len(sig65) == 65 and sig65[64] in (0, 1)
        assert int.from_bytes(sig65[32:64], "big") <= _N // 2
        assert recover(sig65, digest) == public
        assert public.verify(token_key.key.sign(digest), digest)
        assert not public.verify(token_key.key.sign(digest), hashlib.sha256(b"other").digest())


def test_an_artifact_signed_in_the_token_verifies_with_axon(tmp_path, hsm, token_key):
    root = identity("root")
    ledger = Ledger.init(tmp_path / "ledger.db", root, now=NOW)
    ledger.sign_and_submit(root, ops.register_key(token_key.did, token_key.key.public_key, "LVL_3"), NOW)
    spec = env_mod.PackageSpec("LVL_3", NOW, None, "file:///a/", None)
    envelope = env_mod.build(wat_module(), token_key, spec)
    # The token key also signs the ledger transaction (recoverable form) that registers the artifact: the
    # ledger admits it only if the signature recovers to the registered key; Axon needs the registration.
    ledger.sign_and_submit(token_key, ops.register_artifact(envelope.urn, envelope.policy, envelope.version,
                                                            "LVL_3"), NOW)
    result = Verifier(ledger, VerifyConfig(), now=lambda: NOW).verify(envelope.to_bytes())
    assert (result.kid, result.urn) == (token_key.did, envelope.urn)


def test_an_encrypted_artifact_and_a_sip017_message_open_by_ecdh_in_the_token(tmp_path, hsm, token_key):
    for _ in range(16):  # the token gives S's x only; each peer's S has the even or the odd y
        peer = SigningKey.generate()
        assert token_key.key.ecdh_point(peer.public_key) == peer.ecdh_point(token_key.key.public_key)
    sender = SigningKey.generate()
    message = Message.new("CMD", {"action": "reload"}, NOW)
    sealed = message_envelope.seal(token_key.key.public_key, message)
    assert message_envelope.open(token_key.key, sealed.to_dict()) == message
    with pytest.raises(AxonError):  # a message sealed for another key does not open
        message_envelope.open(token_key.key, message_envelope.seal(sender.public_key, message).to_dict())
    # An artifact encrypted for the node: Axon decrypts its content key by ECDH in the token.
    root = identity("root")
    ledger = Ledger.init(tmp_path / "ledger.db", root, now=NOW)
    author = identity("author")
    for who, level in ((author, "LVL_3"), (token_key, "LVL_1")):
        ledger.sign_and_submit(root, ops.register_key(who.did, who.key.public_key, level), NOW)
    node = RecipientKey(token_key.key.public_key, token_key.did)
    recipients = Recipients("did:sopcos:group:plant", (node,))
    spec = env_mod.PackageSpec("LVL_3", NOW, None, "file:///a/", recipients)
    module = wat_module()
    envelope = env_mod.build(module, author, spec)
    ledger.sign_and_submit(author, ops.register_artifact(envelope.urn, envelope.policy, envelope.version,
                                                         "LVL_3"), NOW)
    verified = Verifier(ledger, VerifyConfig(), node_identity=token_key, now=lambda: NOW).verify(
        envelope.to_bytes())
    assert verified.encrypted and bytes(verified.module) == module


def test_a_key_the_token_may_not_derive_with_still_signs_and_says_why_it_cannot_open(hsm, token_key):
    with open_module(hsm.module).get_token(token_label=hsm.label).open(rw=True) as session:
        params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_PARAMS},
                                                  local=True)
        params.generate_keypair(store=True, label="sign-only", id=b"\x07", private_template={
            Attribute.DERIVE: False, Attribute.SIGN: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False})
    sign_only = load_identity(hsm.uri("sign-only"))
    digest = hashlib.sha256(b"seal").digest()
    assert recover(sign_only.key.sign_recoverable(digest), digest) == sign_only.key.public_key
    assert sign_only.did == did_for(sign_only.key.public_key)  # no DID stored beside it: the address
    with pytest.raises(TokenError, match="the token does not allow ECDH"):
        sign_only.key.ecdh_point(SigningKey.generate().public_key)


def test_an_invalid_did_name_is_refused_before_anything_is_created(hsm):
    with pytest.raises(KeyMaterialError, match="not a valid did:sopcos identifier"):
        generate_token_key(hsm.uri("k"), "bad name")
    with pytest.raises(TokenError, match="no EC private key"):
        load_identity(hsm.uri("k"))


def test_wrong_pin_is_a_precise_error_without_the_pin(hsm, token_key):
    with pytest.raises(TokenError, match=r"token 'sopcos' rejected the PIN \(wrong PIN\)") as info:
        load_identity(hsm.uri("signer", pin="98765"))
    assert "98765" not in str(info.value) and USER_PIN not in str(info.value)


def test_wrong_pin_fails_even_while_the_token_is_logged_in_for_another_key(hsm, token_key):
    # token_key's session logged the process in; the token itself no longer checks PINs then.
    with pytest.raises(TokenError, match="wrong PIN"):
        load_identity(hsm.uri("signer", pin="98765"))
    assert load_identity(hsm.uri("signer")).key.public_key == token_key.key.public_key


@pytest.mark.parametrize(("change", "says"), [
    (lambda uri: uri.replace("token=sopcos", "token=elsewhere"),
     "no token matches token='elsewhere' (tokens present: 'sopcos')"),
    (lambda uri: uri.replace("object=signer", "object=nobody"),
     "token 'sopcos' object 'nobody': no EC private key with that label on the token"),
    (lambda uri: uri.replace("libsofthsm2.so", "libmissing.so"),
     "PKCS#11 module /usr/lib/softhsm/libmissing.so not found"),
    (lambda uri: uri.replace("object=signer", "objekt=signer"), "unknown path attribute 'objekt'"),
    (lambda uri: uri.split("&")[0], "token 'sopcos' needs its user PIN: add pin-source=FILE"),
])
def test_missing_token_object_module_and_pin_are_named(hsm, token_key, change, says):
    with pytest.raises(KeyMaterialError) as info:
        load_identity(change(hsm.uri("signer", pin=USER_PIN)))
    assert says in str(info.value)
    assert USER_PIN not in str(info.value)


def test_the_uri_may_come_from_sopcos_key_like_a_key_file(hsm, token_key):
    loaded = load_identity(environ={"SOPCOS_KEY": hsm.uri("signer") + "\n"})
    assert loaded.key.public_key == token_key.key.public_key


def test_axon_keys_generate_creates_a_key_once_and_show_prints_it(hsm, capsys):
    uri = hsm.uri("node-7")
    assert axon_main(["keys", "generate", "--token", uri, "--name", "node-7"]) == 0
    created = capsys.readouterr().out
    assert "did:        did:sopcos:node-7#key-1" in created
    public = PublicKey.from_hex(created.split("public_key: ")[1].split()[0])
    assert load_identity(uri).key.public_key == public
    assert axon_main(["keys", "generate", "--token", uri]) == 2
    assert "already holds an object with that label; refusing to replace a key" in capsys.readouterr().err
    assert axon_main(["keys", "show", uri]) == 0
    assert public.hex() in capsys.readouterr().out
    assert axon_main(["keys", "show", hsm.uri("node-7", pin="000000")]) == 2
    err = capsys.readouterr().err
    assert "wrong PIN" in err and "000000" not in err


# -- the URI (RFC 7512) ------------------------------------------------------------------------------


def test_a_uri_is_parsed_strictly_with_percent_decoding():
    uri = pkcs11_uri.parse("pkcs11:token=Plant%20HSM;object=node;id=%01%ff;type=private"
                           "?module-path=/usr/lib/x.so&pin-source=file:///etc/sopcos/pin")
    assert uri.path == {"token": "Plant HSM", "object": "node", "id": b"\x01\xff", "type": "private"}
    assert uri.query == {"module-path": "/usr/lib/x.so", "pin-source": "file:///etc/sopcos/pin"}
    assert pkcs11_uri.parse("PKCS11:object=a").object == "a"  # the scheme is case-insensitive
    assert pkcs11_uri.parse("pkcs11:").path == {}


def test_the_pin_comes_from_pin_value_or_the_first_line_of_pin_source(tmp_path):
    (tmp_path / "pin").write_text("s3cret\nignored\n")
    assert pkcs11_uri.parse("pkcs11:object=a?pin-value=12%2634").pin() == "12&34"
    assert pkcs11_uri.parse(f"pkcs11:object=a?pin-source={tmp_path}/pin").pin() == "s3cret"
    assert pkcs11_uri.parse(f"pkcs11:object=a?pin-source=file://localhost{tmp_path}/pin").pin() == "s3cret"
    assert pkcs11_uri.parse("pkcs11:object=a").pin() is None
    with pytest.raises(pkcs11_uri.Pkcs11UriError, match="cannot read the PIN file .*/absent"):
        pkcs11_uri.parse(f"pkcs11:object=a?pin-source={tmp_path}/absent").pin()
    with pytest.raises(pkcs11_uri.Pkcs11UriError, match="only a file path or a file: URI"):
        pkcs11_uri.parse("pkcs11:object=a?pin-source=https://example.com/pin").pin()


@pytest.mark.parametrize(("text", "says"), [
    ("pkcs11-x:object=a", "starts with 'pkcs11:'"),
    ("pkcs11:object=a;object=b", "path attribute 'object' given twice"),
    ("pkcs11:colour=red", "unknown path attribute 'colour'"),
    ("pkcs11:object=a?colour=red", "unknown query attribute 'colour'"),
    ("pkcs11:object", "path attribute 'object' is not NAME=VALUE"),
    ("pkcs11:object=a b", "path attribute 'object': a character that must be percent-encoded"),
    ("pkcs11:object=a/b", "path attribute 'object': a character that must be percent-encoded"),
    ("pkcs11:object=%4", "(or a bad %-escape)"),
    ("pkcs11:object=%ff", "attribute 'object' is not UTF-8 once percent-decoded"),
    ("pkcs11:object=a#x", "no fragment"),
    ("pkcs11:slot-id=one", "slot-id must be a decimal number"),
    ("pkcs11:type=secret", "type must be one of"),
    ("pkcs11:library-version=1.x", "library-version must be MAJOR[.MINOR]"),
    ("pkcs11:object=a?pin-value=1&pin-source=/p", "pin-value and pin-source both given"),
])
def test_a_bad_uri_is_refused_naming_the_attribute(text, says):
    with pytest.raises(pkcs11_uri.Pkcs11UriError) as info:
        pkcs11_uri.parse(text)
    assert says in str(info.value)
    assert info.value.code == "AXON-KEY-PKCS11-URI"


def test_errors_and_the_redacted_form_never_show_the_pin():
    with pytest.raises(pkcs11_uri.Pkcs11UriError) as info:
        pkcs11_uri.parse("pkcs11:object=a?pin-value=se cret")
    assert "se cret" not in str(info.value) and "secret" not in str(info.value)
    uri = pkcs11_uri.parse("pkcs11:token=t;object=a%20b?module-path=/m.so&pin-value=hunter2")
    assert uri.redacted() == "pkcs11:token=t;object=a%20b?module-path=/m.so"
    assert pkcs11_uri.parse(uri.redacted()).path == uri.path
