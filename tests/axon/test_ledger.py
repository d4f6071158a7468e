"""The embedded ledger: appends, rejections, authority rules, tamper detection, eth-account interop."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import rfc8785
from eth_account import Account
from eth_utils import to_checksum_address

from axon import ethtx, strictjson
from axon.keys import Identity, SigningKey
from axon.ledger import (
    REGISTRY_ADDRESS,
    AuthorityDenied,
    AuthorityLevel,
    BadSignature,
    ChainBroken,
    InvalidOperation,
    Ledger,
    LedgerStorageError,
    MalformedOperation,
    NonceGap,
    Op,
    ReplayedTransaction,
    RevokedSender,
    UnknownSender,
    WrongChain,
    authority,
    operation_transaction,
    ops,
)
from axon.ledger.records import ArtifactRecord
from axon.ledger.state import LedgerState

CHAIN = 4242
T0 = 1_700_000_000


def ident(name: str, fragment: str = "key-1") -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#{fragment}")


def urn(tag: str) -> str:
    return "urn:sopcos:artifact:sha256:" + hashlib.sha256(tag.encode()).hexdigest()


ROOT, ADMIN, ADMIN2, AUTHOR, AUTHOR2, OPERATOR, STRANGER = (
    ident(n) for n in ("root", "admin", "admin2", "author", "author2", "operator", "stranger")
)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.db"


@pytest.fixture
def ledger(path: Path):
    """root LVL_5 → admin, admin2 LVL_4 → author, author2 LVL_3 → operator LVL_2."""
    led = Ledger.init(path, ROOT, CHAIN, now=T0)
    led.sign_and_submit(ROOT, ops.register_key(ADMIN.did, ADMIN.key.public_key, 4), now=T0 + 1)
    led.sign_and_submit(ROOT, ops.register_key(ADMIN2.did, ADMIN2.key.public_key, 4), now=T0 + 2)
    led.sign_and_submit(ADMIN, ops.register_key(AUTHOR.did, AUTHOR.key.public_key, "LVL_3"), now=T0 + 3)
    led.sign_and_submit(ADMIN, ops.register_key(AUTHOR2.did, AUTHOR2.key.public_key, 3), now=T0 + 4)
    led.sign_and_submit(AUTHOR, ops.register_key(OPERATOR.did, OPERATOR.key.public_key, 2), now=T0 + 5)
    yield led
    led.close()


def signed(identity: Identity, op: dict, nonce: int, chain_id: int | None = CHAIN) -> bytes:
    return operation_transaction(op, nonce).sign(identity.key, chain_id).encode()


def eth_signed(
    identity: Identity,
    data: bytes,
    nonce: int,
    chain_id: int = CHAIN,
    to: bytes = REGISTRY_ADDRESS,
    gas: int = 100_000,
) -> bytes:
    tx = {
        "nonce": nonce,
        "gasPrice": 0,
        "gas": gas,
        "to": to_checksum_address(to),
        "value": 0,
        "data": data,
        "chainId": chain_id,
    }
    return bytes(Account.sign_transaction(tx, identity.key.secret_bytes()).raw_transaction)


# --- happy paths ----------------------------------------------------------------------------------------


def test_genesis_registers_root_at_level_5(path: Path) -> None:
    with Ledger.init(path, ROOT, CHAIN, now=T0) as led:
        root = led.key(ROOT.did)
        assert root is not None and root.level == AuthorityLevel.LVL_5 and not root.revoked
        assert root.registered_by == ROOT.did and led.root_did == ROOT.did
        assert led.key_by_address(ROOT.key.address.upper().replace("0X", "0x")) == root
        assert led.head_seq == 1 and led.chain_id == CHAIN
        assert led.nonce_of(ROOT.key.address) == 1 and led.nonce_of(STRANGER.key.address) == 0
        (genesis,) = led.entries()
        assert genesis.op == ops.register_key(
            ROOT.did, ROOT.key.public_key, 5
        ) and genesis.prev_hash == bytes(32)


def test_init_refuses_existing_file_and_open_refuses_non_ledgers(path: Path, tmp_path: Path) -> None:
    Ledger.init(path, ROOT, CHAIN, now=T0).close()
    with pytest.raises(LedgerStorageError, match="already exists"):
        Ledger.init(path, ROOT, CHAIN, now=T0)
    with pytest.raises(LedgerStorageError, match="does not exist"):
        Ledger.open(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_text("not sqlite at all, just text " * 100)
    with pytest.raises(LedgerStorageError):
        Ledger.open(junk)


@pytest.mark.parametrize("chain_id", [0, -1, 2**53, True])
def test_init_refuses_bad_chain_ids(path: Path, chain_id: int) -> None:
    from axon.ledger import LedgerError

    with pytest.raises(LedgerError, match="chain id"):
        Ledger.init(path, ROOT, chain_id, now=T0)
    assert not path.exists()


def test_keys_groups_artifacts_and_messages(ledger: Ledger, path: Path) -> None:
    operator = ledger.key(OPERATOR.did)
    assert operator is not None and operator.level == 2 and operator.registered_by == AUTHOR.did
    assert operator.address == OPERATOR.key.address and operator.public_key == OPERATOR.key.public_key

    ledger.sign_and_submit(
        ADMIN, ops.define_group("did:sopcos:group:line-1", [AUTHOR.did, OPERATOR.did]), T0 + 10
    )
    assert [k.did for k in ledger.group_members("did:sopcos:group:line-1")] == [AUTHOR.did, OPERATOR.did]
    assert ledger.group_members("did:sopcos:group:unknown") == []

    a1, a2 = urn("a1"), urn("a2")
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(a1, "boiler-guard", "1.0.0", "LVL_3"), T0 + 11)
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(a2, "boiler-guard", "1.1.0", 3), T0 + 12)
    ledger.sign_and_submit(AUTHOR, ops.supersede_artifact(a1, a2), T0 + 13)
    rec = ledger.artifact(a1)
    assert rec is not None and rec.superseded_by == a2 and not rec.revoked and rec.registered_by == AUTHOR.did
    assert rec.authority_level == 3 and rec.policy == "boiler-guard" and rec.version == "1.0.0"
    ledger.sign_and_submit(ADMIN, ops.revoke_artifact(a2, "CVE in the compiler"), T0 + 14)
    rec2 = ledger.artifact(a2)
    assert rec2 is not None and rec2.revoked and rec2.revoke_reason == "CVE in the compiler"
    assert ledger.artifact(urn("never")) is None

    env = {"ephem_pub": "04" + "11" * 64, "iv": "00" * 12, "blob": "ab"}
    m1 = ledger.sign_and_submit(OPERATOR, ops.message(AUTHOR.did, env), T0 + 15)
    m2 = ledger.sign_and_submit(
        AUTHOR, ops.message(OPERATOR.key.address.upper().replace("0X", "0x"), env), T0 + 16
    )
    m3 = ledger.sign_and_submit(ADMIN, ops.message(AUTHOR.did, {"n": 2}), T0 + 17)
    assert [e.seq for e in ledger.messages(AUTHOR.did)] == [m1.seq, m3.seq]
    assert [e.seq for e in ledger.messages(AUTHOR.did, after_seq=m1.seq)] == [m3.seq]
    assert [e.op["envelope"] for e in ledger.messages(OPERATOR.key.address)] == [env]
    assert ledger.messages(OPERATOR.key.address)[0].sender == AUTHOR.key.address == m2.sender

    # A second process's view: reopening replays everything to the same state.
    with Ledger.open(path) as again:
        assert again.head_seq == ledger.head_seq == m3.seq
        assert again.artifact(a1) == ledger.artifact(a1) and again.key(OPERATOR.did) == operator
        report = again.verify_chain()
        assert report.entries == m3.seq and report.head_hash == ledger.head_hash


def test_a_second_handle_sees_appends_made_through_the_first(ledger: Ledger, path: Path) -> None:
    with Ledger.open(path) as other:
        seq = other.sign_and_submit(
            ADMIN, ops.register_artifact(urn("x"), "tank-overfill", "2.0.0", 4), T0 + 9
        ).seq
        assert ledger.artifact(urn("x")) is not None and ledger.head_seq == seq
        # The first handle must use the next nonce after the other handle's append.
        assert ledger.sign_and_submit(ADMIN, ops.revoke_artifact(urn("x"), "test"), T0 + 10).nonce == 3


# --- transaction-level rejections ----------------------------------------------------------------------


def test_replayed_transaction_is_rejected(ledger: Ledger) -> None:
    raw = signed(ADMIN, ops.register_artifact(urn("r"), "p", "1.0.0", 3), ledger.nonce_of(ADMIN.key.address))
    ledger.submit(raw, T0 + 20)
    head = ledger.head_seq
    with pytest.raises(ReplayedTransaction, match="already used"):
        ledger.submit(raw, T0 + 21)
    assert ledger.head_seq == head


def test_out_of_order_nonce_is_rejected_then_accepted_in_order(ledger: Ledger) -> None:
    n = ledger.nonce_of(AUTHOR.key.address)
    first = signed(AUTHOR, ops.register_artifact(urn("o1"), "p", "1.0.0", 3), n)
    second = signed(AUTHOR, ops.register_artifact(urn("o2"), "p", "1.0.1", 3), n + 1)
    with pytest.raises(NonceGap) as exc:
        ledger.submit(second, T0 + 20)
    assert exc.value.code == "AXON-LEDGER-NONCE-GAP"
    ledger.submit(first, T0 + 21)
    ledger.submit(second, T0 + 22)
    assert ledger.nonce_of(AUTHOR.key.address) == n + 2


@pytest.mark.parametrize("chain_id", [CHAIN + 1, 1, None])
def test_wrong_chain_id_or_no_replay_protection_is_rejected(ledger: Ledger, chain_id: int | None) -> None:
    raw = signed(
        ADMIN,
        ops.register_artifact(urn("c"), "p", "1.0.0", 3),
        ledger.nonce_of(ADMIN.key.address),
        chain_id=chain_id,
    )
    with pytest.raises(WrongChain) as exc:
        ledger.submit(raw, T0 + 20)
    assert exc.value.code == "AXON-LEDGER-CHAIN-ID"


def test_unsigned_garbage_and_altered_transactions_are_rejected(ledger: Ledger) -> None:
    op = ops.register_artifact(urn("g"), "p", "1.0.0", 3)
    unsigned = operation_transaction(op, ledger.nonce_of(ADMIN.key.address))
    with pytest.raises(BadSignature):
        ledger.submit(unsigned.encode(), T0)
    for garbage in (b"", b"\x00", b"\xc0", b"\xf8\x74" + b"\x00" * 10, bytes(range(256))):
        with pytest.raises(MalformedOperation):
            ledger.submit(garbage, T0)
    good = unsigned.sign(ADMIN.key, CHAIN)
    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    high_s = replace(good, s=n - good.s, v=good.v ^ 1)  # the malleable twin: same signer, high S
    with pytest.raises(BadSignature, match="high-S"):
        ledger.submit(high_s.encode(), T0)
    # Changing the data changes what was signed: it recovers to some other, unregistered key.
    forged = replace(good, data=good.data.replace(b'"p"', b'"q"'))
    with pytest.raises(UnknownSender):
        ledger.submit(forged.encode(), T0)
    not_registry = replace(unsigned, to=b"\x11" * 20).sign(ADMIN.key, CHAIN)
    with pytest.raises(MalformedOperation, match="registry address"):
        ledger.submit(not_registry.encode(), T0)
    with_value = replace(unsigned, value=1).sign(ADMIN.key, CHAIN)
    with pytest.raises(MalformedOperation, match="no value"):
        ledger.submit(with_value.encode(), T0)
    assert ledger.head_seq == 6


def test_unregistered_sender_is_rejected(ledger: Ledger) -> None:
    raw = signed(STRANGER, ops.message(ROOT.did, {"hello": "world"}), 0)
    with pytest.raises(UnknownSender, match=STRANGER.key.address):
        ledger.submit(raw, T0)


def test_revoked_key_can_no_longer_act(ledger: Ledger) -> None:
    ledger.sign_and_submit(ADMIN, ops.revoke_key(AUTHOR.did), T0 + 20)
    record = ledger.key(AUTHOR.did)
    assert record is not None and record.revoked and record.revoked_by == ADMIN.did
    for op in (
        ops.register_artifact(urn("late"), "p", "1.0.0", 1),
        ops.message(ROOT.did, {}),
        ops.revoke_key(AUTHOR.did),
    ):
        with pytest.raises(RevokedSender):
            ledger.sign_and_submit(AUTHOR, op, T0 + 21)
    # Keys it registered stay (revocation does not cascade; docs/ledger.md), the group cannot include it.
    assert not ledger.key(OPERATOR.did).revoked
    with pytest.raises(InvalidOperation, match="already revoked"):
        ledger.sign_and_submit(ADMIN, ops.define_group("did:sopcos:group:g", [AUTHOR.did]), T0 + 22)
    # A revoked DID or public key can never be registered again, under any name.
    with pytest.raises(InvalidOperation) as exc:
        ledger.sign_and_submit(
            ADMIN, ops.register_key("did:sopcos:author-again#key-1", AUTHOR.key.public_key, 3), T0 + 23
        )
    assert exc.value.code == "AXON-LEDGER-KEY-EXISTS"


def test_self_revocation_including_the_root(ledger: Ledger) -> None:
    ledger.sign_and_submit(OPERATOR, ops.revoke_key(OPERATOR.did), T0 + 20)
    assert ledger.key(OPERATOR.did).revoked
    ledger.sign_and_submit(ROOT, ops.revoke_key(ROOT.did), T0 + 21)
    assert ledger.key(ROOT.did).revoked
    with pytest.raises(RevokedSender):
        ledger.sign_and_submit(
            ROOT, ops.register_key("did:sopcos:new-root#key-1", STRANGER.key.public_key, 4), T0 + 22
        )


# --- authority escalation attempts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "level"),
    [
        (ADMIN, 4),
        (ADMIN, 5),
        (AUTHOR, 3),
        (AUTHOR, 4),
        (OPERATOR, 2),
        (ROOT, 5),
    ],
)
def test_no_key_registers_a_key_at_or_above_its_own_level(
    ledger: Ledger, actor: Identity, level: int
) -> None:
    with pytest.raises(AuthorityDenied, match="below its own level"):
        ledger.sign_and_submit(actor, ops.register_key(STRANGER.did, STRANGER.key.public_key, level), T0 + 20)
    assert ledger.key(STRANGER.did) is None


@pytest.mark.parametrize(
    ("actor", "target"),
    [
        (AUTHOR, ADMIN),
        (AUTHOR, AUTHOR2),
        (ADMIN, ADMIN2),
        (ADMIN, ROOT),
        (OPERATOR, AUTHOR),
    ],
)
def test_revoking_a_key_needs_a_strictly_higher_level(
    ledger: Ledger, actor: Identity, target: Identity
) -> None:
    with pytest.raises(AuthorityDenied, match="higher level"):
        ledger.sign_and_submit(actor, ops.revoke_key(target.did), T0 + 20)
    assert not ledger.key(target.did).revoked


def test_higher_keys_revoke_lower_ones(ledger: Ledger) -> None:
    ledger.sign_and_submit(ROOT, ops.revoke_key(ADMIN2.did), T0 + 20)
    ledger.sign_and_submit(ADMIN, ops.revoke_key(OPERATOR.did), T0 + 21)
    assert ledger.key(ADMIN2.did).revoked and ledger.key(OPERATOR.did).revoked
    with pytest.raises(InvalidOperation, match="already revoked"):
        ledger.sign_and_submit(ROOT, ops.revoke_key(ADMIN2.did), T0 + 22)
    with pytest.raises(InvalidOperation, match="not a registered key"):
        ledger.sign_and_submit(ROOT, ops.revoke_key(STRANGER.did), T0 + 23)


def test_artifact_above_own_level_is_rejected(ledger: Ledger) -> None:
    with pytest.raises(AuthorityDenied, match="LVL_4"):
        ledger.sign_and_submit(AUTHOR, ops.register_artifact(urn("hi"), "p", "1.0.0", "LVL_4"), T0 + 20)
    with pytest.raises(AuthorityDenied):
        ledger.sign_and_submit(OPERATOR, ops.register_artifact(urn("hi"), "p", "1.0.0", 3), T0 + 21)
    ledger.sign_and_submit(OPERATOR, ops.register_artifact(urn("hi"), "p", "1.0.0", 2), T0 + 22)
    with pytest.raises(InvalidOperation, match="already registered"):
        ledger.sign_and_submit(ADMIN, ops.register_artifact(urn("hi"), "p", "1.0.0", 2), T0 + 23)


def test_groups_need_level_4_and_redefinition_needs_the_definer_level(ledger: Ledger) -> None:
    group = "did:sopcos:group:plant"
    with pytest.raises(AuthorityDenied, match="may not define groups"):
        ledger.sign_and_submit(AUTHOR, ops.define_group(group, [OPERATOR.did]), T0 + 20)
    ledger.sign_and_submit(ROOT, ops.define_group(group, [ADMIN.did]), T0 + 21)
    with pytest.raises(AuthorityDenied, match="may not redefine"):
        ledger.sign_and_submit(ADMIN, ops.define_group(group, [ADMIN.did, ADMIN2.did]), T0 + 22)
    ledger.sign_and_submit(ROOT, ops.define_group(group, [ADMIN2.did]), T0 + 23)
    assert [k.did for k in ledger.group_members(group)] == [ADMIN2.did]
    with pytest.raises(InvalidOperation, match="not a registered key"):
        ledger.sign_and_submit(ROOT, ops.define_group(group, [STRANGER.did]), T0 + 24)
    with pytest.raises(InvalidOperation, match="key's DID"):
        ledger.sign_and_submit(ROOT, ops.define_group(AUTHOR.did, [ADMIN.did]), T0 + 25)


def test_retiring_artifacts_needs_the_registrant_or_an_administrator_at_its_level(ledger: Ledger) -> None:
    mine, roots = urn("author's"), urn("root's")
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(mine, "p", "1.0.0", 3), T0 + 20)
    ledger.sign_and_submit(ROOT, ops.register_artifact(roots, "p", "1.0.0", 5), T0 + 21)
    with pytest.raises(AuthorityDenied, match="registrant"):
        ledger.sign_and_submit(
            AUTHOR2, ops.revoke_artifact(mine, "not mine"), T0 + 22
        )  # same level, not owner
    with pytest.raises(AuthorityDenied, match="registrant"):
        ledger.sign_and_submit(ADMIN, ops.revoke_artifact(roots, "overrule root"), T0 + 23)
    with pytest.raises(AuthorityDenied, match="registrant"):
        ledger.sign_and_submit(ADMIN, ops.supersede_artifact(roots, mine), T0 + 24)
    ledger.sign_and_submit(ADMIN, ops.revoke_artifact(mine, "recalled"), T0 + 25)  # LVL_4 ≥ LVL_3 registrant
    with pytest.raises(InvalidOperation, match="is revoked"):
        ledger.sign_and_submit(AUTHOR, ops.revoke_artifact(mine, "again"), T0 + 26)
    with pytest.raises(InvalidOperation, match="not a registered artifact"):
        ledger.sign_and_submit(ROOT, ops.revoke_artifact(urn("nothing"), "x"), T0 + 27)


def test_supersede_rules(ledger: Ledger) -> None:
    v1, v2, v3, other = urn("v1"), urn("v2"), urn("v3"), urn("other")
    for i, (u, policy) in enumerate(((v1, "boiler"), (v2, "boiler"), (v3, "boiler"), (other, "tank"))):
        ledger.sign_and_submit(AUTHOR, ops.register_artifact(u, policy, f"1.{i}.0", 3), T0 + 20 + i)

    def supersede(old: str, new: str, code: str) -> None:
        with pytest.raises(InvalidOperation) as exc:
            ledger.sign_and_submit(AUTHOR, ops.supersede_artifact(old, new), T0 + 30)
        assert exc.value.code == code, exc.value

    supersede(v1, urn("unregistered"), "AXON-LEDGER-ARTIFACT-UNKNOWN")
    supersede(v1, other, "AXON-LEDGER-SUPERSEDE-POLICY")
    supersede(v1, v1, "AXON-LEDGER-SUPERSEDE-CYCLE")
    ledger.sign_and_submit(AUTHOR, ops.supersede_artifact(v1, v2), T0 + 31)
    supersede(v1, v3, "AXON-LEDGER-ARTIFACT-SUPERSEDED")  # v1 already has a successor
    supersede(v2, v1, "AXON-LEDGER-ARTIFACT-SUPERSEDED")  # would close the loop v1 → v2 → v1
    ledger.sign_and_submit(AUTHOR, ops.revoke_artifact(v3, "bad build"), T0 + 32)
    supersede(v2, v3, "AXON-LEDGER-ARTIFACT-REVOKED")  # a revoked successor
    assert ledger.artifact(v2).superseded_by is None


def _policy_name_refused(ledger: Ledger, actor: Identity, op: dict) -> str:
    head = ledger.head_seq
    with pytest.raises(AuthorityDenied) as exc:
        ledger.sign_and_submit(actor, op, T0 + 40)
    assert exc.value.code == "AXON-LEDGER-POLICY-NAME" and ledger.head_seq == head
    return str(exc.value)


def test_a_policy_name_belongs_to_the_authority_that_first_registered_it(ledger: Ledger, path: Path) -> None:
    """Rule 12, the attack of issue 10: a LVL_2 key publishing a higher version of a LVL_4 key's policy,
    declared LVL_1 (what it may sign), to take over the name on every node that serves the newest."""
    ledger.sign_and_submit(ADMIN, ops.register_artifact(urn("bg-1"), "boiler-guard", "1.0.0", 4), T0 + 30)
    bound = ledger.policy("boiler-guard")
    assert (bound.owner, bound.owner_level, bound.level) == (ADMIN.did, 4, 4)
    message = _policy_name_refused(
        ledger, OPERATOR, ops.register_artifact(urn("bg-evil"), "boiler-guard", "9.0.0", 1))
    assert ADMIN.did in message and "only its owner" in message
    assert ledger.artifact(urn("bg-evil")) is None
    # Nor any other key below the owner's level, whatever it declares.
    _policy_name_refused(ledger, AUTHOR, ops.register_artifact(urn("bg-a"), "boiler-guard", "9.0.0", 3))
    # An administrator at or above the owner's level speaks for it (rule 8's test), at the name's level.
    ledger.sign_and_submit(ADMIN2, ops.register_artifact(urn("bg-2"), "boiler-guard", "1.1.0", 4), T0 + 31)
    message = _policy_name_refused(
        ledger, ADMIN2, ops.register_artifact(urn("bg-low"), "boiler-guard", "1.2.0", 3))
    assert "lowering a name's level needs a key above LVL_4" in message
    assert ledger.policy("boiler-guard") == bound  # nothing refused changed the binding
    # Only a key above the name's level lowers it; the owner stays the owner.
    lower = ops.register_artifact(urn("bg-3"), "boiler-guard", "1.3.0", 2)
    entry = ledger.sign_and_submit(ROOT, lower, T0 + 32)
    assert ledger.policy("boiler-guard") == replace(bound, level=2, level_seq=entry.seq)
    _policy_name_refused(ledger, OPERATOR, ops.register_artifact(urn("bg-evil"), "boiler-guard", "9.0.0", 2))
    # Another name is another binding; an unknown name has none.
    ledger.sign_and_submit(OPERATOR, ops.register_artifact(urn("own"), "operator-own", "1.0.0", 1), T0 + 33)
    assert ledger.policy("operator-own").owner == OPERATOR.did and ledger.policy("nothing") is None
    with Ledger.open(path) as again:  # replay derives the same bindings
        assert again.policy("boiler-guard") == ledger.policy("boiler-guard")


def test_the_owner_cannot_lower_its_own_names_level(ledger: Ledger) -> None:
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(urn("t1"), "tank", "1.0.0", 3), T0 + 30)
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(urn("t2"), "tank", "1.1.0", 3), T0 + 31)
    _policy_name_refused(ledger, AUTHOR, ops.register_artifact(urn("t3"), "tank", "1.2.0", 2))
    ledger.sign_and_submit(ADMIN, ops.register_artifact(urn("t3"), "tank", "1.2.0", 2), T0 + 32)
    ledger.sign_and_submit(AUTHOR, ops.register_artifact(urn("t4"), "tank", "1.3.0", 2), T0 + 33)
    assert ledger.policy("tank").level == 2 and ledger.policy("tank").owner == AUTHOR.did


def test_a_ledger_holding_a_policy_name_hijack_does_not_open(
    ledger: Ledger, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hijack written without rule 12 (an older Axon, or an edited file) is a broken chain on replay."""
    ledger.sign_and_submit(ADMIN, ops.register_artifact(urn("bg-1"), "boiler-guard", "1.0.0", 4), T0 + 30)
    with monkeypatch.context() as patched:
        patched.setattr(authority, "may_publish_policy", lambda *args: None)
        hijack = ledger.sign_and_submit(
            OPERATOR, ops.register_artifact(urn("bg-evil"), "boiler-guard", "9.0.0", 1), T0 + 31)
    with pytest.raises(ChainBroken) as exc:
        Ledger.open(path)
    assert exc.value.seq == hijack.seq and "AXON-LEDGER-POLICY-NAME" in exc.value.reason
    with pytest.raises(ChainBroken):
        ledger.verify_chain()


def test_successor_chain_cycle_check_is_independent_of_the_other_rules() -> None:
    """Rule 9's loop walk: even a successor whose own chain leads back is refused."""

    def art(u: str) -> ArtifactRecord:
        return ArtifactRecord(
            urn=u, policy="p", version="1.0.0", authority_level=3, registered_by="d", registered_seq=1
        )

    chain = {"urn:sopcos:b": "urn:sopcos:c", "urn:sopcos:c": "urn:sopcos:a"}
    with pytest.raises(InvalidOperation) as exc:
        authority.valid_successor(art("urn:sopcos:a"), art("urn:sopcos:b"), chain.get)
    assert exc.value.code == "AXON-LEDGER-SUPERSEDE-CYCLE"
    authority.valid_successor(art("urn:sopcos:a"), art("urn:sopcos:b"), {"urn:sopcos:b": None}.get)


def test_genesis_must_be_a_self_signed_level_5_key_registration() -> None:
    state = LedgerState(CHAIN)
    with pytest.raises(MalformedOperation, match="register its root"):
        state.admit(signed(ROOT, ops.message(ROOT.did, {}), 0), T0)
    with pytest.raises(AuthorityDenied, match="LVL_5"):
        state.admit(signed(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 4), 0), T0)
    with pytest.raises(AuthorityDenied, match="signed by the root key"):
        state.admit(signed(STRANGER, ops.register_key(ROOT.did, ROOT.key.public_key, 5), 0), T0)
    with pytest.raises(NonceGap):
        state.admit(signed(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), 1), T0)
    assert state.admit(signed(ROOT, ops.register_key(ROOT.did, ROOT.key.public_key, 5), 0), T0).seq == 1


# --- operation schema -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "where"),
    [
        (
            {
                "op": "KEY_REGISTER",
                "opcode": 1,
                "did": "did:sopcos:x#k",
                "public_key": "04" + "ab" * 64,
                "level": 3,
            },
            "/level",
        ),
        (
            {
                "op": "KEY_REGISTER",
                "opcode": 2,
                "did": "did:sopcos:x#k",
                "public_key": "04" + "ab" * 64,
                "level": "LVL_3",
            },
            "/opcode",
        ),
        ({"op": "KEY_REVOKE", "opcode": 2, "did": "did:web:example.com"}, "/did"),
        ({"op": "KEY_REVOKE", "opcode": 2, "did": "did:sopcos:x#k\n"}, "/did"),
        ({"op": "KEY_REVOKE", "opcode": 2}, "/: 'did' is a required property"),
        ({"op": "KEY_REVOKE", "opcode": 2, "did": "did:sopcos:x#k", "extra": 1}, "Additional properties"),
        ({"op": "GROUP_DEFINE", "opcode": 3, "group": "did:sopcos:group:g", "members": []}, "/members"),
        (
            {
                "op": "ARTIFACT_REGISTER",
                "opcode": 4,
                "urn": "urn:x:y",
                "policy": "p",
                "version": "1.0.0",
                "authority_level": "LVL_1",
            },
            "/urn",
        ),
        (
            {
                "op": "ARTIFACT_REGISTER",
                "opcode": 4,
                "urn": "urn:sopcos:a",
                "policy": "p",
                "version": "1.0",
                "authority_level": "LVL_1",
            },
            "/version",
        ),
        ({"op": "MESSAGE", "opcode": 9, "to": "did:sopcos:a", "envelope": "not an object"}, "/envelope"),
        ({"op": "TRANSFER", "opcode": 7}, "unknown operation"),
    ],
)
def test_malformed_operations_name_the_field(op: dict, where: str) -> None:
    with pytest.raises(MalformedOperation, match="unknown operation" if "unknown" in where else None) as exc:
        ops.validate(op)
    assert where in str(exc.value)


def test_operation_encoding_is_canonical_and_only_canonical_is_accepted(ledger: Ledger) -> None:
    op = ops.register_artifact(urn("canon"), "p", "1.0.0", 3)
    assert ops.encode(op) == rfc8785.dumps(op) and ops.decode(ops.encode(op)) == op
    pretty = json.dumps(op, indent=1).encode()
    with pytest.raises(MalformedOperation, match="canonical"):
        ops.decode(pretty)
    dup = ops.encode(op).replace(b'"op":', b'"op":"KEY_REVOKE","op":')
    with pytest.raises(MalformedOperation):
        ops.decode(dup)
    raw = eth_signed(ADMIN, pretty, ledger.nonce_of(ADMIN.key.address))
    with pytest.raises(MalformedOperation, match="canonical"):
        ledger.submit(raw, T0 + 20)
    with pytest.raises(MalformedOperation, match="JSON"):
        ledger.submit(eth_signed(ADMIN, b"\xff\xfe", ledger.nonce_of(ADMIN.key.address)), T0 + 21)
    assert [op.value for op in Op] == [1, 2, 3, 4, 5, 6, 9, 10]


def test_deeply_nested_operation_json_is_refused_before_parsing(ledger: Ledger) -> None:
    assert strictjson.depth('{"a": "[[[[\\"{{"}', 32) == 1  # brackets in strings do not count
    deep = b'{"envelope":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(MalformedOperation, match="deeper than 32"):
        ops.decode(deep)
    nested: dict = {}
    for _ in range(40):
        nested = {"n": nested}
    with pytest.raises(MalformedOperation, match="deeper than 32"):
        ledger.submit(eth_signed(ADMIN, rfc8785.dumps(ops.message(ROOT.did, nested)), 2), T0)


# --- tamper detection ----------------------------------------------------------------------------------


def _tamper(path: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(sql, params)
    conn.close()


@pytest.mark.parametrize(
    ("sql", "params", "bad_seq"),
    [
        ("UPDATE entries SET op = replace(op, 'LVL_3', 'LVL_4') WHERE seq = 4", (), 4),
        ("UPDATE entries SET tx = ? WHERE seq = 3", (b"\xc0",), 3),
        ("UPDATE entries SET timestamp = timestamp + 1 WHERE seq = 5", (), 5),
        ("UPDATE entries SET sender = ? WHERE seq = 2", ("0x" + "00" * 20,), 2),
        ("UPDATE entries SET entry_hash = ? WHERE seq = 2", (b"\x00" * 32,), 2),
        ("DELETE FROM entries WHERE seq = 3", (), 3),
        ("DELETE FROM entries WHERE seq = 6", (), 6),
        ("DELETE FROM entries WHERE seq = 1", (), 1),
    ],
)
def test_tampering_with_the_file_is_pinpointed(
    ledger: Ledger, path: Path, sql: str, params: tuple, bad_seq: int
) -> None:
    assert ledger.verify_chain().entries == 6
    _tamper(path, sql, *params)
    with pytest.raises(ChainBroken) as exc:
        ledger.verify_chain()
    assert exc.value.seq == bad_seq and exc.value.code == "AXON-LEDGER-CHAIN-BROKEN"
    with pytest.raises(ChainBroken) as again:
        Ledger.open(path)  # state is never built from a broken chain
    assert again.value.seq == bad_seq


def test_swapping_a_stored_transaction_for_another_valid_one_is_detected(ledger: Ledger, path: Path) -> None:
    """Re-signing a different operation with a real key still breaks the hash links."""
    forged = signed(ADMIN, ops.register_key(AUTHOR.did, AUTHOR.key.public_key, 2), 0)
    _tamper(
        path,
        "UPDATE entries SET tx = ?, tx_hash = ?, op = ? WHERE seq = 4",
        forged,
        ethtx.decode(forged).hash,
        ops.encode(ops.register_key(AUTHOR.did, AUTHOR.key.public_key, 2)).decode(),
    )
    with pytest.raises(ChainBroken) as exc:
        ledger.verify_chain()
    assert exc.value.seq == 4 and "entry hash" in exc.value.reason


def test_appended_rows_outside_the_ledger_are_detected(ledger: Ledger, path: Path) -> None:
    _tamper(
        path,
        "INSERT INTO entries SELECT seq + 100, timestamp, tx, tx_hash, sender, nonce, op, prev_hash, "
        "entry_hash FROM entries WHERE seq = 6",
    )
    with pytest.raises(ChainBroken) as exc:
        Ledger.open(path)
    assert exc.value.seq == 7


# --- eth-account interoperability ----------------------------------------------------------------------


def test_every_stored_transaction_recovers_to_its_sender_with_eth_account(ledger: Ledger) -> None:
    ledger.sign_and_submit(AUTHOR, ops.message(ROOT.did, {"k": "v"}), T0 + 30)
    for entry in ledger.entries():
        assert Account.recover_transaction(entry.tx).lower() == entry.sender
        assert ethtx.decode(entry.tx).chain_id == CHAIN


def test_eth_account_signed_operations_are_accepted_byte_for_byte(ledger: Ledger) -> None:
    op = ops.register_artifact(urn("eth"), "compressor-surge", "3.1.4", 4)
    nonce = ledger.nonce_of(ADMIN.key.address)
    ours = signed(ADMIN, op, nonce)
    unsigned = operation_transaction(op, nonce)
    theirs = eth_signed(ADMIN, ops.encode(op), nonce, gas=unsigned.gas_limit)
    assert theirs == ours  # RFC 6979 on both sides: identical bytes for identical fields
    entry = ledger.submit(theirs, T0 + 30)
    assert entry.sender == ADMIN.key.address and ledger.artifact(urn("eth")).authority_level == 4
    # Other gas limits are fine: the ledger does not meter, it only checks what the transaction says.
    msg = eth_signed(ADMIN, ops.encode(ops.message(ROOT.did, {"a": 1})), nonce + 1, gas=1_000_000)
    assert ledger.submit(msg, T0 + 31).op["op"] == "MESSAGE"


def test_now_must_be_unix_seconds(ledger: Ledger) -> None:
    from axon.ledger import LedgerError

    for bad in (-1, 1.5, True, "1700000000", 2**63):
        with pytest.raises(LedgerError, match="now must be"):
            ledger.sign_and_submit(ADMIN, ops.message(ROOT.did, {}), bad)  # type: ignore[arg-type]


# --- the `axon ledger` command line ---------------------------------------------------------------------


def _keyfile(tmp_path: Path, who: Identity) -> str:
    from axon.keys import write_key_file

    path = tmp_path / f"{who.did.split(':')[2].split('#')[0]}.key"
    write_key_file(path, who.key, who.did)
    return str(path)


def test_cli_init_register_show_verify_and_tamper(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from axon.cli import main

    db = str(tmp_path / "cli.db")
    root_key, admin_key = _keyfile(tmp_path, ROOT), _keyfile(tmp_path, ADMIN)
    assert main(["ledger", "init", "--ledger", db, "--root-key", root_key, "--chain-id", "77"]) == 0
    assert main(["ledger", "init", "--ledger", db, "--root-key", root_key]) == 2  # never over a file
    assert main(["ledger", "register-key", "--ledger", db, "--key", root_key, "--did", ADMIN.did,
                 "--public-key", ADMIN.key.public_key.compressed.hex(), "--level", "LVL_4"]) == 0
    capsys.readouterr()
    # Refused by the ledger → 1, with the rule's code; bad arguments → 2.
    assert main(["ledger", "register-key", "--ledger", db, "--key", admin_key, "--did", AUTHOR.did,
                 "--public-key", AUTHOR.key.public_key.hex(), "--level", "LVL_4"]) == 1
    assert "AXON-LEDGER-AUTHORITY" in capsys.readouterr().err
    assert main(["ledger", "register-key", "--ledger", db, "--key", admin_key, "--did", "alice",
                 "--public-key", AUTHOR.key.public_key.hex(), "--level", "LVL_2"]) == 2
    assert "not a DID" in capsys.readouterr().err

    sop = tmp_path / "a.sop"
    sop.write_text(json.dumps({"meta": {"urn": urn("cli"), "policy": "tank-overfill", "version": "1.2.0",
                                        "authority_level": "LVL_4"}}))
    monkeypatch.setenv("SOPCOS_LEDGER", db)
    monkeypatch.setenv("SOPCOS_KEY", ADMIN.key.secret_bytes().hex())  # key from the environment, as in CI
    assert main(["ledger", "register-artifact", "--sop", str(sop), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["op"]["urn"] == urn("cli")
    sop.write_text(json.dumps({"meta": {"urn": urn("cli2")}}))
    assert main(["ledger", "register-artifact", "--sop", str(sop)]) == 2
    assert "meta.policy" in capsys.readouterr().err
    assert main(["ledger", "supersede", "--urn", urn("cli"), "--by", urn("nope")]) == 1
    assert main(["ledger", "revoke-artifact", "--urn", urn("cli"), "--reason", "recall"]) == 0
    assert main(["ledger", "group", "--group", "did:sopcos:group:g", "--member", ADMIN.did]) == 0

    capsys.readouterr()
    assert main(["ledger", "show", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [e["op"]["op"] for e in shown] == ["KEY_REGISTER", "KEY_REGISTER", "ARTIFACT_REGISTER",
                                              "ARTIFACT_REVOKE", "GROUP_DEFINE"]
    assert main(["ledger", "verify", "--json"]) == 0
    head = json.loads(capsys.readouterr().out)["head_hash"]
    assert main(["ledger", "verify", "--expect-head", head]) == 0
    assert main(["ledger", "verify", "--expect-head", "00" * 32]) == 1

    _tamper(Path(db), "UPDATE entries SET op = replace(op, 'recall', 'fine') WHERE seq = 4")
    capsys.readouterr()
    assert main(["ledger", "verify"]) == 1
    assert "ledger entry 4:" in capsys.readouterr().err
    assert main(["ledger", "show"]) == 1
    monkeypatch.delenv("SOPCOS_LEDGER")
    assert main(["ledger", "verify"]) == 2
    assert "SOPCOS_LEDGER" in capsys.readouterr().err
