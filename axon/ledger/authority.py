"""The ledger's authority rules (docs/ledger.md §Authority), one small pure function per rule.

Each function either returns normally or raises: AuthorityDenied when the acting key's level or role
does not allow the operation, InvalidOperation when the operation contradicts the ledger's state,
UnknownSender/RevokedSender when the acting key may not act at all. No function does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from axon.ledger.errors import AuthorityDenied, InvalidOperation, RevokedSender, UnknownSender
from axon.ledger.ops import AuthorityLevel
from axon.ledger.records import ArtifactRecord, GroupRecord, KeyRecord, PolicyRecord

ROOT_LEVEL = AuthorityLevel.LVL_5
GROUP_DEFINE_MIN_LEVEL = AuthorityLevel.LVL_4
ARTIFACT_ADMIN_MIN_LEVEL = AuthorityLevel.LVL_4
POLICY_NAME_CODE = "AXON-LEDGER-POLICY-NAME"


def lvl(level: int) -> str:
    return f"LVL_{int(level)}"


# Rule 1: only registered keys act, and a revoked key never acts again.
def active_actor(actor: KeyRecord | None, address: str) -> KeyRecord:
    if actor is None:
        raise UnknownSender(f"sender {address} is not a registered key")
    if actor.revoked:
        raise RevokedSender(f"sender {actor.did} was revoked at entry {actor.revoked_seq}")
    return actor


# Rule 2: the first entry registers the root: a LVL_5 key registering itself.
def genesis(sender_address: str, new_key_address: str, level: int) -> None:
    if level != ROOT_LEVEL:
        raise AuthorityDenied(f"the genesis entry must register the root at {lvl(ROOT_LEVEL)}, "
                              f"not {lvl(level)}")
    if sender_address != new_key_address:
        raise AuthorityDenied("the genesis entry must be signed by the root key it registers")


# Rule 3: a key registers only keys of a strictly lower level (so nobody but genesis makes a LVL_5).
def may_register_key(actor: KeyRecord, level: int) -> None:
    if not level < actor.level:
        raise AuthorityDenied(
            f"{actor.did} ({lvl(actor.level)}) may register only keys below its own level, not {lvl(level)}"
        )


# Rule 4: a DID and a public key are bound once, forever: no re-registration, even after revocation.
def key_is_new(did: str, address: str, by_did: Mapping[str, KeyRecord],
               did_of_address: Mapping[str, str], group_dids: Mapping[str, object]) -> None:
    if did in by_did:
        raise InvalidOperation(f"{did} is already registered", code="AXON-LEDGER-KEY-EXISTS")
    if did in group_dids:
        raise InvalidOperation(f"{did} names a group", code="AXON-LEDGER-KEY-EXISTS")
    if address in did_of_address:
        raise InvalidOperation(f"this public key is already registered as {did_of_address[address]}",
                               code="AXON-LEDGER-KEY-EXISTS")


# Rule 5: a key is revoked by itself, or by a key of strictly higher level.
def may_revoke_key(actor: KeyRecord, target: KeyRecord) -> None:
    if actor.did != target.did and not actor.level > target.level:
        raise AuthorityDenied(
            f"{actor.did} ({lvl(actor.level)}) may not revoke {target.did} ({lvl(target.level)}): "
            "only the key itself or a higher level may"
        )


def existing_key(did: str, by_did: Mapping[str, KeyRecord]) -> KeyRecord:
    record = by_did.get(did)
    if record is None:
        raise InvalidOperation(f"{did} is not a registered key", code="AXON-LEDGER-KEY-UNKNOWN")
    return record


def not_revoked_key(target: KeyRecord) -> None:
    if target.revoked:
        raise InvalidOperation(f"{target.did} is already revoked", code="AXON-LEDGER-KEY-REVOKED")


# Rule 6: groups are defined by LVL_4+; a group is redefined only by its definer or a key at least as high.
def may_define_group(actor: KeyRecord, existing: GroupRecord | None, definer: KeyRecord | None) -> None:
    if actor.level < GROUP_DEFINE_MIN_LEVEL:
        raise AuthorityDenied(
            f"{actor.did} ({lvl(actor.level)}) may not define groups: {lvl(GROUP_DEFINE_MIN_LEVEL)}+ only"
        )
    if existing is None or definer is None:
        return
    if actor.did != definer.did and actor.level < definer.level:
        raise AuthorityDenied(
            f"{existing.group} was defined by {definer.did} ({lvl(definer.level)}); "
            f"{actor.did} ({lvl(actor.level)}) may not redefine it"
        )


def group_members_valid(group: str, members: list[str], by_did: Mapping[str, KeyRecord]) -> None:
    if group in by_did:
        raise InvalidOperation(f"{group} is a key's DID, not a group", code="AXON-LEDGER-GROUP-INVALID")
    for did in members:
        not_revoked_key(existing_key(did, by_did))


# Rule 7: an artifact is registered only by a key whose level is at least its declared authority level.
def may_register_artifact(actor: KeyRecord, authority_level: int) -> None:
    if actor.level < authority_level:
        raise AuthorityDenied(
            f"{actor.did} ({lvl(actor.level)}) may not register an artifact declaring {lvl(authority_level)}"
        )


def artifact_is_new(urn: str, artifacts: Mapping[str, ArtifactRecord]) -> None:
    if urn in artifacts:
        raise InvalidOperation(f"{urn} is already registered", code="AXON-LEDGER-ARTIFACT-EXISTS")


def existing_artifact(urn: str, artifacts: Mapping[str, ArtifactRecord]) -> ArtifactRecord:
    record = artifacts.get(urn)
    if record is None:
        raise InvalidOperation(f"{urn} is not a registered artifact", code="AXON-LEDGER-ARTIFACT-UNKNOWN")
    return record


def not_revoked_artifact(record: ArtifactRecord) -> None:
    if record.revoked:
        raise InvalidOperation(f"{record.urn} is revoked", code="AXON-LEDGER-ARTIFACT-REVOKED")


def live_artifact(record: ArtifactRecord) -> None:
    """Neither revoked nor superseded: the only state in which an artifact may be superseded or succeed."""
    not_revoked_artifact(record)
    if record.superseded_by is not None:
        raise InvalidOperation(f"{record.urn} is already superseded by {record.superseded_by}",
                               code="AXON-LEDGER-ARTIFACT-SUPERSEDED")


# Rule 8: an artifact is revoked or superseded by its registrant, or by a LVL_4+ key whose level is at
# least the registrant's (so a LVL_4 administrator cannot overrule the root's artifacts).
def may_retire_artifact(actor: KeyRecord, artifact: ArtifactRecord, registrant: KeyRecord) -> None:
    if not _speaks_for(actor, registrant.did, registrant.level):
        raise AuthorityDenied(
            f"{actor.did} ({lvl(actor.level)}) may not revoke or supersede {artifact.urn}: only its "
            f"registrant {registrant.did} or a {lvl(ARTIFACT_ADMIN_MIN_LEVEL)}+ key at or above "
            f"{lvl(registrant.level)} may"
        )


def _speaks_for(actor: KeyRecord, owner_did: str, owner_level: int) -> bool:
    """The owner itself, or an administrator (LVL_4+) at or above the owner's level."""
    return actor.did == owner_did or (actor.level >= ARTIFACT_ADMIN_MIN_LEVEL and actor.level >= owner_level)


# Rule 9: a successor is a different, registered, live artifact of the same policy, and the chain of
# successors never loops back.
def valid_successor(old: ArtifactRecord, new: ArtifactRecord,
                    successor_of: Callable[[str], str | None]) -> None:
    if new.urn == old.urn:
        raise InvalidOperation(f"{old.urn} cannot supersede itself", code="AXON-LEDGER-SUPERSEDE-CYCLE")
    if new.policy != old.policy:
        raise InvalidOperation(
            f"{new.urn} is policy {new.policy!r}, not {old.policy!r}: a successor implements the same policy",
            code="AXON-LEDGER-SUPERSEDE-POLICY",
        )
    live_artifact(new)
    seen, urn = {old.urn}, new.urn
    while urn is not None:
        if urn in seen:
            raise InvalidOperation(f"superseding {old.urn} by {new.urn} would make a cycle",
                                   code="AXON-LEDGER-SUPERSEDE-CYCLE")
        seen.add(urn)
        urn = successor_of(urn)


# Rule 10: any active key may post a MESSAGE (rule 1 is the whole check).


# Rule 11: a node anchors only its own decision log (the anchor names the signer's DID).
def anchors_own_log(actor: KeyRecord, node: str) -> None:
    if node != actor.did:
        raise AuthorityDenied(f"{actor.did} may anchor only its own decision log, not {node}'s")


# Rule 12: a policy name belongs to an authority. Its first ARTIFACT_REGISTER binds it to the registrant
# (its owner) and to the declared level; later artifacts of the name are registered by the owner or by a
# LVL_4+ key at or above the owner's level (rule 8's test), and declare at least the name's level unless
# the key is above that level (then the name's level drops to the new one). Axon applies the same test to
# the artifact's signer (AXON-VERIFY-POLICY-NAME), so a hijack that reaches a ledger still does not run.
def may_publish_policy(actor: KeyRecord, policy: PolicyRecord | None, authority_level: int) -> None:
    if policy is None:  # a new name: the registration binds it
        return
    if not _speaks_for(actor, policy.owner, policy.owner_level):
        raise AuthorityDenied(
            f"policy {policy.policy!r} belongs to {policy.owner} ({lvl(policy.owner_level)}); {actor.did} "
            f"({lvl(actor.level)}) may not publish under it: only its owner or a "
            f"{lvl(ARTIFACT_ADMIN_MIN_LEVEL)}+ key at or above {lvl(policy.owner_level)} may",
            code=POLICY_NAME_CODE,
        )
    if authority_level < policy.level and not actor.level > policy.level:
        raise AuthorityDenied(
            f"policy {policy.policy!r} is bound to {lvl(policy.level)}; {actor.did} ({lvl(actor.level)}) may "
            f"not publish a version declaring {lvl(authority_level)}: lowering a name's level needs a key "
            f"above {lvl(policy.level)}",
            code=POLICY_NAME_CODE,
        )
