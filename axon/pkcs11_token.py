"""Keys in a PKCS#11 token (a hardware security module, a smart card, SoftHSM2): docs/keys.md.

`TokenKey` is the token's side of `axon.keys.Signer`: it signs (CKM_ECDSA over the digest, then
made low-S and recoverable exactly like an in-memory key's signature) and does ECDH for opening
SIP-017 messages and encrypted artifacts (CKM_ECDH1_DERIVE), while the private key stays in the
token. `load_token_identity` opens the key an RFC 7512 URI names; `generate_token_key` creates one in
the token, not extractable and sensitive.

Only the commands that name a `pkcs11:` URI import this module (and python-pkcs11 with it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import coincurve
import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass, TokenFlag
from pkcs11.exceptions import (
    DeviceRemoved,
    MultipleObjectsReturned,
    NoSuchKey,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    TokenNotPresent,
    UserAlreadyLoggedIn,
)
from pkcs11.util.ec import encode_named_curve_parameters

from axon.keys import DID_RE, Identity, InvalidKey, KeyMaterialError, PublicKey, SignerBase, did_for, low_s
from axon.pkcs11_uri import Pkcs11Uri, Pkcs11UriError, parse

MODULE_ENV = "SOPCOS_PKCS11_MODULE"
# The DER-encoded OID of secp256k1, as CKA_EC_PARAMS holds it.
SECP256K1_PARAMS = encode_named_curve_parameters("secp256k1")
# A key's DID lives beside it in the token: a CKO_DATA object with the key's label and this application.
DID_APPLICATION = "sopcos-did"
T = TypeVar("T")


class TokenError(KeyMaterialError):
    code = "AXON-KEY-TOKEN"


# One pkcs11.lib per module file for the whole process: python-pkcs11 calls C_Finalize when a lib
# object is collected, which would end every session on that module, including other keys' sessions.
_modules: dict[str, pkcs11.lib] = {}
_modules_lock = threading.Lock()
# (module, token serial) -> SHA-256 of the PIN this process logged in with (see _open_session).
_logins: dict[tuple[str, bytes], bytes] = {}


def open_module(path: str) -> pkcs11.lib:
    """The PKCS#11 module at `path`, loaded and initialised once per process."""
    with _modules_lock:
        if path not in _modules:
            if not Path(path).is_file():
                raise TokenError(f"PKCS#11 module {path} not found (module-path in the URI, "
                                 f"or ${MODULE_ENV})")
            try:
                _modules[path] = pkcs11.lib(path)
            except PKCS11Error as exc:
                # SoftHSM2 fails C_Initialize (GeneralError) when its config file is missing.
                raise TokenError(f"cannot load PKCS#11 module {path}: {str(exc) or type(exc).__name__}"
                                 " (SoftHSM2: is SOFTHSM2_CONF right?)") from None
        module = _modules[path]
    try:
        module.initialize()  # a no-op unless someone finalised the module (tests/softhsm.py does)
    except PKCS11Error as exc:
        raise TokenError(f"cannot initialise PKCS#11 module {path}: {str(exc) or type(exc).__name__}"
                         " (SoftHSM2: is SOFTHSM2_CONF right?)") from None
    return module


def module_path(uri: Pkcs11Uri, environ: Mapping[str, str]) -> str:
    """module-path (a file, or a directory holding module-name), else $SOPCOS_PKCS11_MODULE."""
    path, name = uri.query.get("module-path"), uri.query.get("module-name")
    if path is None:
        if name is not None:
            raise TokenError("module-name needs module-path (the directory that holds the module)")
        from_env = environ.get(MODULE_ENV)
        if not from_env:
            raise TokenError(f"no PKCS#11 module: add module-path=FILE to the URI or set ${MODULE_ENV}")
        return from_env
    if name is None:
        return path
    for candidate in (Path(path) / name, Path(path) / f"{name}.so", Path(path) / f"lib{name}.so"):
        if candidate.is_file():
            return str(candidate)
    raise TokenError(f"PKCS#11 module {name!r} not found in {path}")


class TokenKey(SignerBase):
    """A secp256k1 key pair in a token: `axon.keys.Signer`. Holds one logged-in session; PKCS#11
    sessions are not for concurrent use, so every operation takes the key's lock."""

    __slots__ = ("_session", "_private", "public_key", "_lock", "_where", "can_derive")

    def __init__(self, session: pkcs11.Session, private: pkcs11.PrivateKey, public_key: PublicKey,
                 where: str, can_derive: bool) -> None:
        self._session = session  # kept open (and logged in) for as long as the key is used
        self._private = private
        self.public_key = public_key
        self._lock = threading.Lock()
        self._where = where
        self.can_derive = can_derive

    def sign_recoverable(self, digest: bytes) -> bytes:
        """65 bytes r ‖ s ‖ recovery id, s made low: what SigningKey gives. The recovery id is the one
        whose recovered key is this key's, which also checks the token's signature before it leaves."""
        if len(digest) != 32:
            raise ValueError("digest must be 32 bytes")
        with self._lock:
            raw = self._call(lambda: self._private.sign(digest, mechanism=Mechanism.ECDSA))
        if len(raw) != 64:
            raise TokenError(f"{self._where}: CKM_ECDSA gave {len(raw)} bytes, not r ‖ s of 64")
        rs = low_s(raw)
        for recovery_id in (0, 1):
            candidate = rs + bytes([recovery_id])
            try:
                recovered = coincurve.PublicKey.from_signature_and_message(candidate, digest, hasher=None)
            except ValueError:
                continue
            if recovered.format(compressed=False) == self.public_key.raw:
                return candidate
        raise TokenError(f"{self._where}: the token's signature does not verify against its public key")

    def ecdh_point(self, public_key: PublicKey) -> bytes:
        """The whole shared point S = public × secret, uncompressed, as SigningKey.ecdh_point gives.

        CKM_ECDH1_DERIVE (no KDF) yields only S's x; the y of the two candidates is told apart by a
        second derivation with public + G, whose x is that of S + (this public key)."""
        if not self.can_derive:
            raise TokenError(f"{self._where}: the token does not allow ECDH (CKM_ECDH1_DERIVE) with this key")
        x = self._derive_x(public_key.raw)
        generator = coincurve.PublicKey.from_secret((1).to_bytes(32, "big"))
        try:
            shifted = coincurve.PublicKey.combine_keys([coincurve.PublicKey(public_key.raw), generator])
        except ValueError:
            raise TokenError("ECDH peer key is the negated generator") from None
        x_shifted = self._derive_x(shifted.format(compressed=False))
        mine = coincurve.PublicKey(self.public_key.raw)
        for prefix in (b"\x02", b"\x03"):
            candidate = coincurve.PublicKey(prefix + x)
            try:
                total = coincurve.PublicKey.combine_keys([candidate, mine])
            except ValueError:  # candidate is minus this key: the sum is the point at infinity
                continue
            if total.format(compressed=True)[1:] == x_shifted:
                return candidate.format(compressed=False)
        raise TokenError(f"{self._where}: the token's ECDH result is not consistent with its public key")

    def _derive_x(self, peer_point: bytes) -> bytes:
        with self._lock:
            def derive() -> bytes:
                secret = self._private.derive_key(
                    KeyType.GENERIC_SECRET, 256, mechanism=Mechanism.ECDH1_DERIVE,
                    mechanism_param=(pkcs11.KDF.NULL, None, peer_point),
                    template={Attribute.TOKEN: False, Attribute.SENSITIVE: False,
                              Attribute.EXTRACTABLE: True})
                try:
                    return bytes(secret[Attribute.VALUE])
                finally:
                    secret.destroy()
            x = self._call(derive)
        if len(x) != 32:
            raise TokenError(f"{self._where}: CKM_ECDH1_DERIVE gave {len(x)} bytes, not x of 32")
        return x

    def _call(self, operation: Callable[[], T]) -> T:
        try:
            return operation()
        except (TokenNotPresent, DeviceRemoved, SessionClosed, SessionHandleInvalid) as exc:
            raise TokenError(f"{self._where}: the token is no longer available "
                             f"({type(exc).__name__})") from None
        except PKCS11Error as exc:
            raise TokenError(f"{self._where}: the token refused the operation "
                             f"({type(exc).__name__})") from None

    def __repr__(self) -> str:
        return f"TokenKey({self._where}, address={self.address})"

    __str__ = __repr__


def load_token_identity(uri_text: str, environ: Mapping[str, str] | None = None) -> Identity:
    """The key pair (and the DID stored beside it) that `uri_text` names, in a logged-in session."""
    uri = parse(uri_text)
    session, where = _open_session(uri, os.environ if environ is None else environ, rw=False)
    private = _find_private(session, uri, where)
    public = _public_key(session, private, where)
    did = _stored_did(session, private.label) or did_for(public)
    return Identity(_token_key(session, private, public, where), did)


def generate_token_key(uri_text: str, name: str | None = None,
                       environ: Mapping[str, str] | None = None) -> Identity:
    """Create a secp256k1 key pair in the token, labelled object= (id= if given, else the key's address),
    its private half sensitive and not extractable, and store its DID beside it. Refuses to create a
    second object under a label or id already in use."""
    uri = parse(uri_text)
    label = uri.object
    if not label:
        raise Pkcs11UriError("to create a key, the URI names it with object=LABEL")
    if name is not None and not DID_RE.match(f"did:sopcos:{name}#key-1"):  # before the token is touched
        raise InvalidKey(f"did:sopcos:{name}#key-1 is not a valid did:sopcos identifier")
    session, where = _open_session(uri, os.environ if environ is None else environ, rw=True)
    clashes = [{Attribute.LABEL: label}] + ([{Attribute.ID: uri.id}] if uri.id else [])
    for template in clashes:
        if next(iter(session.get_objects(template)), None) is not None:
            raise TokenError(f"{where}: the token already holds an object with that "
                             f"{'label' if Attribute.LABEL in template else 'id'}; refusing to replace a key")
    try:
        params = session.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: SECP256K1_PARAMS},
                                                  local=True)
        public_obj, private = params.generate_keypair(
            store=True, label=label, id=uri.id,
            public_template={Attribute.VERIFY: True},
            private_template={Attribute.SIGN: True, Attribute.DERIVE: True, Attribute.SENSITIVE: True,
                              Attribute.EXTRACTABLE: False, Attribute.PRIVATE: True})
    except PKCS11Error as exc:
        raise TokenError(f"{where}: the token did not create a secp256k1 key pair "
                         f"({type(exc).__name__})") from None
    public = _point(public_obj, where)
    if not uri.id:  # name the pair by its address too, so tools that list ids show which key it is
        key_id = bytes.fromhex(public.address[2:])
        public_obj[Attribute.ID] = key_id
        private[Attribute.ID] = key_id
    did = did_for(public, name)
    session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: False,
                           Attribute.LABEL: label, Attribute.APPLICATION: DID_APPLICATION,
                           Attribute.VALUE: did.encode()})
    return Identity(_token_key(session, private, public, where), did)


def _token_key(session: pkcs11.Session, private: pkcs11.PrivateKey, public: PublicKey,
               where: str) -> TokenKey:
    can_derive = (Mechanism.ECDH1_DERIVE in session.token.slot.get_mechanisms()
                  and bool(_attribute(private, Attribute.DERIVE)))
    return TokenKey(session, private, public, where, can_derive)


def _open_session(uri: Pkcs11Uri, environ: Mapping[str, str], rw: bool) -> tuple[pkcs11.Session, str]:
    module = open_module(module_path(uri, environ))
    token = _find_token(module, uri)
    where = f"token {token.label!r}" + (f" object {uri.object!r}" if uri.object else "")
    pin = uri.pin()
    if pin is None and TokenFlag.LOGIN_REQUIRED in token.flags:
        raise TokenError(f"token {token.label!r} needs its user PIN: add pin-source=FILE (or pin-value=) "
                         "to the URI")
    login = (module.so, token.serial)
    try:
        try:
            session = token.open(rw=rw, user_pin=pin)
        except UserAlreadyLoggedIn:
            # Login is per process and token, and the token does not check a PIN once logged in: compare
            # with the PIN of the login made here, so a wrong PIN fails however many keys are open.
            if pin is not None and login in _logins and not hmac.compare_digest(_logins[login], _digest(pin)):
                raise PinIncorrect() from None
            session = token.open(rw=rw)
    except PinIncorrect:
        raise TokenError(f"token {token.label!r} rejected the PIN (wrong PIN)") from None
    except PinLocked:
        raise TokenError(f"token {token.label!r}: the user PIN is locked (too many wrong PINs)") from None
    except (PinExpired, PinInvalid, PinLenRange) as exc:
        raise TokenError(f"token {token.label!r} did not accept the PIN ({type(exc).__name__})") from None
    except PKCS11Error as exc:
        raise TokenError(f"token {token.label!r}: cannot open a session ({type(exc).__name__})") from None
    if pin is not None:
        _logins.setdefault(login, _digest(pin))
    return session, where


def _digest(pin: str) -> bytes:
    return hashlib.sha256(pin.encode()).digest()


_TOKEN_FIELDS = {  # URI path attribute -> how to read it from (module, slot, token)
    "token": lambda m, s, t: t.label,
    "manufacturer": lambda m, s, t: t.manufacturer_id,
    "serial": lambda m, s, t: t.serial.decode("utf-8", "replace"),
    "model": lambda m, s, t: t.model,
    "slot-id": lambda m, s, t: str(s.slot_id),
    "slot-description": lambda m, s, t: s.slot_description,
    "slot-manufacturer": lambda m, s, t: s.manufacturer_id,
    "library-manufacturer": lambda m, s, t: m.manufacturer_id,
    "library-description": lambda m, s, t: m.library_description,
    "library-version": lambda m, s, t: "{}.{}".format(*m.library_version),
}


def _find_token(module: pkcs11.lib, uri: Pkcs11Uri) -> pkcs11.Token:
    wanted = {name: value for name, value in uri.path.items() if name in _TOKEN_FIELDS}
    if "library-version" in wanted and "." not in wanted["library-version"]:
        wanted["library-version"] += ".0"
    try:
        present = [(slot, token) for slot in module.get_slots(token_present=True)
                   if TokenFlag.TOKEN_INITIALIZED in (token := slot.get_token()).flags]
    except PKCS11Error as exc:
        raise TokenError(f"cannot list the module's tokens ({type(exc).__name__})") from None
    matches = [token for slot, token in present
               if all(_TOKEN_FIELDS[name](module, slot, token) == value for name, value in wanted.items())]
    described = ", ".join(f"{name}={value!r}" for name, value in wanted.items()) or "any"
    if not matches:
        labels = ", ".join(repr(token.label) for _, token in present) or "none"
        raise TokenError(f"no token matches {described} (tokens present: {labels})")
    if len(matches) > 1:
        raise TokenError(f"{len(matches)} tokens match {described}: add token=, serial= or slot-id= "
                         "to the URI")
    return matches[0]


def _find_private(session: pkcs11.Session, uri: Pkcs11Uri, where: str) -> pkcs11.PrivateKey:
    if uri.path.get("type") not in (None, "private"):
        raise Pkcs11UriError(f"type={uri.path['type']} names no private key: use type=private "
                             "or leave it out")
    if uri.object is None and uri.id is None:
        raise Pkcs11UriError("the URI names no key: add object=LABEL or id=%XX...")
    template = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC}
    if uri.object is not None:
        template[Attribute.LABEL] = uri.object
    if uri.id is not None:
        template[Attribute.ID] = uri.id
    found = list(session.get_objects(template))
    if not found:
        raise TokenError(f"{where}: no EC private key with that {'label' if uri.object else 'id'} "
                         "on the token")
    if len(found) > 1:
        raise TokenError(f"{where}: {len(found)} EC private keys match; add id= to the URI")
    return found[0]


def _public_key(session: pkcs11.Session, private: pkcs11.PrivateKey, where: str) -> PublicKey:
    key_id = _attribute(private, Attribute.ID)
    same = {"id": key_id} if key_id else {"label": private.label}
    try:
        public = session.get_key(ObjectClass.PUBLIC_KEY, KeyType.EC, **same)
    except NoSuchKey:
        raise TokenError(f"{where}: no public key object beside the private key (same id or label)") from None
    except MultipleObjectsReturned:
        raise TokenError(f"{where}: several public key objects have the private key's "
                         f"{next(iter(same))}") from None
    return _point(public, where)


def _point(public: pkcs11.PublicKey, where: str) -> PublicKey:
    if _attribute(public, Attribute.EC_PARAMS) != SECP256K1_PARAMS:
        raise TokenError(f"{where}: the key is not on secp256k1")
    point = bytes(_attribute(public, Attribute.EC_POINT) or b"")
    if len(point) == 67 and point[:2] == b"\x04\x41":  # DER OCTET STRING around the point, as PKCS#11 says
        point = point[2:]
    try:
        return PublicKey.from_bytes(point)
    except KeyMaterialError:
        raise TokenError(f"{where}: the public key object's CKA_EC_POINT is not a secp256k1 point") from None


def _stored_did(session: pkcs11.Session, label: str) -> str | None:
    for data in session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label,
                                     Attribute.APPLICATION: DID_APPLICATION}):
        did = bytes(data[Attribute.VALUE]).decode("utf-8", "replace")
        if not DID_RE.match(did):
            raise TokenError(f"the DID stored in the token beside key {label!r} is not a did:sopcos "
                             "identifier")
        return did
    return None


def _attribute(obj: pkcs11.Object, attribute: Attribute) -> object:
    try:
        return obj[attribute]
    except PKCS11Error:
        return None
