"""The service's parts on their own: configuration, tokens and signed requests, the rate limiter, the
artifact store, and the ledger facts kept for offline verification."""

from __future__ import annotations

import os
import re

import pytest

from axon.keys import load_identity
from axon.ledger import Ledger, ops
from synapse.cli import main as synapse_main
from synapse.service.auth import (
    Authenticator,
    hash_token,
    new_token,
    request_digest,
    sign_request,
)
from synapse.service.config import AuthConfig, ServiceConfig, TokenConfig, is_loopback_host, load_config
from synapse.service.errors import AuthRequired, ConfigError, DecisionLogError, Forbidden, RateLimited
from synapse.service.ledger_link import LedgerLink, LedgerUnreachable, RecordingLedger, SnapshotLedger
from synapse.service.node_state import NodeState, NodeStateError
from synapse.service.ratelimit import RateLimiter
from synapse.service.service import PolicyService
from synapse.service.store import ArtifactStore, StoredArtifact, StoreError
from tests.service_support import AUTO, NORMAL, Plant, identity

# -- configuration ---------------------------------------------------------------------------------


def test_config_file_values_and_relative_paths(tmp_path):
    (tmp_path / "svc.toml").write_text(
        '[server]\nport = 9000\n[ledger]\npath = "ledger.db"\nfollow_interval = 2\n'
        '[limits]\nrate = 10\n[decision_log]\nmask = ["telemetry.badge"]\n')
    cfg = load_config(tmp_path / "svc.toml").validate()
    assert cfg.server.port == 9000 and cfg.server.host == "127.0.0.1"
    assert cfg.ledger.path == tmp_path / "ledger.db" and cfg.ledger.follow_interval == 2.0
    assert cfg.limits.rate == 10.0 and cfg.decision_log.mask == ["telemetry.badge"]


@pytest.mark.parametrize("text, message, names_file", [
    ("[servr]\nport = 1\n", "unknown section [servr]", True),
    ("[server]\nprot = 1\n", "unknown key 'prot'", True),
    ('[server]\nport = "80"\n', "port: expected an integer", True),
    ("[limits]\nrate = true\n", "rate: expected a number", True),
    ('[[auth.tokens]]\nname = "x"\nscopes = ["admin"]\n', "missing sha256", True),
    ("not toml =", "not valid TOML", True),
    ("[server]\nport = 99999\n", "server.port must be 0..65535", False),
    ('[decision_log]\nmask = ["badge"]\n', "'telemetry.NAME' or 'context.NAME'", False),
    ('[[auth.tokens]]\nname = "x"\nsha256 = "abc"\nscopes = ["admin"]\n', "64 lowercase hex", False),
    (f'[[auth.tokens]]\nname = "x"\nsha256 = "{"a" * 64}"\nscopes = ["root"]\n', "scopes must be", False),
    ('[server]\nhost = "0.0.0.0"\n', "refusing to bind 0.0.0.0", False),
    ('[server]\nhost = "0.0.0.0"\n[ledger]\npath = "l.db"\n', "evaluation open to the network", False),
])
def test_config_errors_say_what_and_where(tmp_path, text, message, names_file):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path).validate()
    assert (str(path) in str(info.value)) == names_file


def test_non_loopback_needs_authentication(tmp_path):
    path = tmp_path / "svc.toml"
    path.write_text(f'[server]\nhost = "0.0.0.0"\n[[auth.tokens]]\nname = "a"\nsha256 = "{"a" * 64}"\n'
                    'scopes = ["admin"]\n')
    assert load_config(path).validate().is_loopback is False
    assert is_loopback_host("::1") and is_loopback_host("localhost") and not is_loopback_host("10.0.0.1")


def test_cli_token_and_usage_errors(capsys, tmp_path):
    assert synapse_main(["serve", "--new-token", "ci", "--scope", "admin"]) == 0
    out = capsys.readouterr().out
    token = next(w for w in out.split() if w.startswith("sopcos_"))
    assert f'sha256 = "{hash_token(token)}"' in out and 'scopes = ["admin"]' in out
    assert synapse_main(["serve", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    assert synapse_main(["run"]) == 2  # the sidecar needs a config


# -- authentication --------------------------------------------------------------------------------


class FakeLedger:
    def __init__(self, *records):
        self.records = {r.did: r for r in records}

    def key(self, did):
        return self.records.get(did)


class Rec:
    def __init__(self, ident, level, revoked=False):
        self.did, self.public_key, self.level, self.revoked = ident.did, ident.key.public_key, level, revoked


NODE = "did:sopcos:node-a#key-1"


def authenticator(state: NodeState, *records, tokens=(), clock=lambda: 1_000_000.0, node=NODE,
                  **kw) -> Authenticator:
    config = AuthConfig(tokens=list(tokens), **kw)
    return Authenticator(config, node, FakeLedger(*records).key, state, clock)


@pytest.fixture
def state(tmp_path) -> NodeState:
    node_state = NodeState(tmp_path / "store" / "node-state.sqlite")
    yield node_state
    node_state.close()


def test_tokens_are_matched_by_hash_with_their_scopes(state):
    admin, viewer = new_token(), new_token()
    assert admin.startswith("sopcos_") and len(admin) == 50 and admin != viewer
    auth = authenticator(state, tokens=[TokenConfig(name="ops", sha256=hash_token(admin), scopes=["admin"]),
                                 TokenConfig(name="scada", sha256=hash_token(viewer), scopes=["evaluate"])])
    p = auth.authenticate({"authorization": f"Bearer {admin}"}, "GET", "/")
    assert p.name == "ops" and p.can("admin") and p.can("evaluate")
    v = auth.authenticate({"authorization": f"bearer {viewer}"}, "GET", "/")
    assert v.can("evaluate") and not v.can("admin")
    with pytest.raises(Forbidden):
        auth.require(v, "admin")
    for bad in ("Bearer nope", "Bearer", f"Token {admin}", ""):
        with pytest.raises(AuthRequired) as info:
            auth.authenticate({"authorization": bad}, "GET", "/")
        assert admin not in str(info.value)
    anonymous = auth.authenticate({}, "GET", "/")
    with pytest.raises(AuthRequired):
        auth.require(anonymous, "evaluate")  # tokens are configured: evaluation is not open


def test_without_tokens_evaluation_is_open_but_administration_is_not(state):
    auth = authenticator(state)
    anonymous = auth.authenticate({}, "POST", "/v1/evaluate")
    auth.require(anonymous, "evaluate")
    with pytest.raises(AuthRequired):
        auth.require(anonymous, "admin")


def signed_headers(ident, method="PUT", target="/v1/artifacts", body=b"sop", now=1_000_000, node=NODE):
    return {k.lower(): v for k, v in sign_request(ident, node, method, target, body, now=now).items()}


def test_signed_requests(state):
    admin, operator, revoked = identity("admin"), identity("operator"), identity("gone")
    auth = authenticator(state, Rec(admin, 4), Rec(operator, 2), Rec(revoked, 5, revoked=True))
    p = auth.authenticate(signed_headers(admin), "PUT", "/v1/artifacts", b"sop")
    assert p.name == admin.did and p.can("admin") and p.via == "signature"
    with pytest.raises(AuthRequired, match="replay"):
        auth.authenticate(signed_headers(admin), "PUT", "/v1/artifacts", b"sop")
    cases = [
        (signed_headers(admin, now=999_000), "PUT", "/v1/artifacts", b"sop", AuthRequired, "clock"),
        (signed_headers(admin, now=999_999), "PUT", "/v1/artifacts", b"other", AuthRequired, "not verify"),
        (signed_headers(admin, now=999_998), "POST", "/v1/artifacts", b"sop", AuthRequired, "not verify"),
        (signed_headers(admin, now=999_997), "PUT", "/v1/artifactz", b"sop", AuthRequired, "does not verify"),
        (signed_headers(operator), "PUT", "/v1/artifacts", b"sop", Forbidden, "level 2"),
        (signed_headers(revoked), "PUT", "/v1/artifacts", b"sop", AuthRequired, "unrevoked"),
        (signed_headers(identity("stranger")), "PUT", "/v1/artifacts", b"sop", AuthRequired, "registered"),
        ({"x-sopcos-signer": admin.did}, "PUT", "/v1/artifacts", b"sop", AuthRequired, "needs all"),
        ({**signed_headers(admin, now=999_996), "x-sopcos-timestamp": "soon"}, "PUT", "/v1/artifacts",
         b"sop", AuthRequired, "integer"),
        (signed_headers(admin, now=999_995, node="did:sopcos:node-b#key-1"), "PUT", "/v1/artifacts", b"sop",
         AuthRequired, "for node did:sopcos:node-b#key-1; this node is did:sopcos:node-a#key-1"),
        # Naming this node in the header does not help a request signed for another one.
        ({**signed_headers(admin, now=999_994, node="did:sopcos:node-b#key-1"), "x-sopcos-node": NODE},
         "PUT", "/v1/artifacts", b"sop", AuthRequired, "does not verify"),
    ]
    for headers, method, target, body, error, message in cases:
        with pytest.raises(error, match=message):
            auth.authenticate(headers, method, target, body)
    assert request_digest("GET", "/", "1", admin.did, NODE, b"") != request_digest("GET", "/", "1", admin.did,
                                                                                  "did:sopcos:x", b"")


def test_a_signed_request_is_accepted_once_across_authenticators_sharing_the_node_state(state, tmp_path):
    """Two workers (two Authenticators, two connections to one node state) and a restart (a fresh
    NodeState on the same file): the request is accepted by the first only."""
    admin = identity("admin")
    headers = signed_headers(admin)
    worker0 = authenticator(state, Rec(admin, 4))
    other = NodeState(state.path)
    worker1 = authenticator(other, Rec(admin, 4))
    assert worker0.authenticate(headers, "PUT", "/v1/artifacts", b"sop").name == admin.did
    with pytest.raises(AuthRequired, match="already accepted once"):
        worker1.authenticate(headers, "PUT", "/v1/artifacts", b"sop")
    other.close()
    state.close()
    restarted = authenticator(NodeState(state.path), Rec(admin, 4))
    with pytest.raises(AuthRequired, match="already accepted once"):
        restarted.authenticate(headers, "PUT", "/v1/artifacts", b"sop")
    # Another node's state never saw it; but the request names node A, so node B refuses it anyway.
    node_b = authenticator(NodeState(tmp_path / "b" / "node-state.sqlite"), Rec(admin, 4),
                           node="did:sopcos:node-b#key-1")
    with pytest.raises(AuthRequired, match="for node did:sopcos:node-a"):
        node_b.authenticate(headers, "PUT", "/v1/artifacts", b"sop")


def test_accepted_requests_expire_with_the_window_and_are_bounded(state):
    assert state.accept_once(b"a" * 32, expires_at=100.0, now=0.0, limit=2)
    assert not state.accept_once(b"a" * 32, expires_at=100.0, now=50.0, limit=2)
    assert state.accept_once(b"b" * 32, expires_at=100.0, now=50.0, limit=2)
    with pytest.raises(NodeStateError, match="2 signed requests"):
        state.accept_once(b"c" * 32, expires_at=200.0, now=60.0, limit=2)
    # Past their expiry the entries are pruned (their timestamps are outside the window by then).
    assert state.accept_once(b"c" * 32, expires_at=300.0, now=101.0, limit=2)


def test_signed_requests_can_be_switched_off_and_fail_closed_without_a_ledger(state):
    admin = identity("admin")
    off = authenticator(state, Rec(admin, 5), signed_requests=False)
    with pytest.raises(AuthRequired, match="not enabled"):
        off.authenticate(signed_headers(admin), "PUT", "/v1/artifacts", b"sop")

    def unreachable(did):
        raise LedgerUnreachable("no ledger")

    auth = Authenticator(AuthConfig(), NODE, unreachable, state, lambda: 1_000_000.0)
    with pytest.raises(AuthRequired, match="ledger cannot be read"):
        auth.authenticate(signed_headers(admin), "PUT", "/v1/artifacts", b"sop")


# -- rate limiting ---------------------------------------------------------------------------------


def test_token_bucket():
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
    with pytest.raises(RateLimited) as info:
        limiter.check("a")
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.check("b")  # clients have their own buckets
    now[0] = 0.5
    limiter.check("a")  # refilled one token
    with pytest.raises(RateLimited):
        limiter.check("a")
    RateLimiter(rate=0, burst=1).check("anyone")  # off


# -- the store ---------------------------------------------------------------------------------------


def entry(urn: str) -> StoredArtifact:
    return StoredArtifact(urn=urn, policy="p", version="1.0.0", file="", sha256="", added_at=1.0,
                          kid="did:sopcos:a#key-1", authority_level=3, encrypted=False)


def test_store_round_trip_generation_and_tamper_check(tmp_path):
    store = ArtifactStore(tmp_path / "store").open()
    assert store.generation() == 0
    with store.update() as index:
        store.put(index, entry("urn:sopcos:artifact:sha256:" + "a" * 64), b"sop bytes")
    assert store.generation() == 1
    (stored,) = store.index().artifacts.values()
    assert store.read(stored) == b"sop bytes"
    (tmp_path / "store" / "artifacts" / stored.file).write_bytes(b"evil bytes")
    with pytest.raises(StoreError, match="changed on disk"):
        store.read(stored)
    (tmp_path / "store" / "index.json").write_text("{not json")
    with pytest.raises(StoreError, match="damaged"):
        store.index()


# -- ledger facts for offline verification -----------------------------------------------------------


def test_recorded_facts_answer_the_same_questions_offline(tmp_path):
    plant = Plant(tmp_path)
    _, urn = plant.artifact("1.0.0")
    with Ledger.open(plant.ledger_path) as ledger:
        recording = RecordingLedger(ledger)
        live = (recording.key(plant.author.did), recording.artifact(urn),
                recording.key("did:sopcos:nobody#k"))
        assert recording.chain_id == ledger.chain_id
    offline = SnapshotLedger(recording.facts)
    assert (offline.key(plant.author.did), offline.artifact(urn), offline.key("did:sopcos:nobody#k")) == live
    with pytest.raises(LedgerUnreachable):
        offline.key(plant.admin.did)  # never asked while online: cannot be answered offline


def test_ledger_link_reports_and_recovers(tmp_path):
    plant = Plant(tmp_path)
    link = LedgerLink(plant.ledger_path)
    assert link.check() >= 1 and link.reachable
    moved = tmp_path / "elsewhere.db"
    plant.ledger_path.rename(moved)
    with pytest.raises(LedgerUnreachable):
        link.check()
    assert not link.reachable and "does not exist" in link.error
    moved.rename(plant.ledger_path)
    assert link.check() >= 1 and link.reachable and link.error is None
    late = identity("late")
    plant.submit(plant.root, ops.register_key(late.did, late.key.public_key, "LVL_1"))
    assert link.check() == link.head_seq


# -- the service core in-process -----------------------------------------------------------------------


def test_service_bounds_evaluation_time_and_never_returns_an_unlogged_decision(tmp_path):
    plant = Plant(tmp_path)
    sop, urn = plant.artifact("1.0.0")
    config = ServiceConfig()
    config.ledger.path, config.store.path = plant.ledger_path, tmp_path / "store"
    config.decision_log.path, config.limits.eval_timeout_ms = tmp_path / "log", 7.5
    service = PolicyService(config, load_identity(plant.node_key))
    service.start()
    try:
        service.upload(sop)
        served = service._registry.resolve("boiler-guard")
        assert served.urn == urn and served.evaluator.limits.deadline_ms == 7.5
        assert service.evaluate("boiler-guard", NORMAL, AUTO).name == "ALLOW"
        os.close(service._log._fd)  # the disk goes away under the log
        with pytest.raises(DecisionLogError) as info:
            service.evaluate("boiler-guard", NORMAL, AUTO)
        assert info.value.status == 503
        service._log._fd = -1
    finally:
        service._link.close()
