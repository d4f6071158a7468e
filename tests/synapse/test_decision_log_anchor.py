"""Decision-log anchors on the ledger: the LOG_ANCHOR operation, and verification against it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from axon.cli import main as axon_main
from axon.keys import Identity, PublicKey, SigningKey, load_identity
from axon.ledger import AuthorityDenied, Ledger, MalformedOperation, UnknownSender, ops
from synapse.cli import main as synapse_main
from synapse.service.config import ServiceConfig
from synapse.service.decision_log import AnchorSchedule, DecisionLog, StreamReport, verify_log
from synapse.service.service import PolicyService
from tests.service_support import Plant

T0 = 1_700_000_000
HEAD = "sha256:" + "ab" * 32


def ident(name: str) -> Identity:
    return Identity(SigningKey(hashlib.sha256(name.encode()).digest()), f"did:sopcos:{name}#key-1")


ROOT, NODE, OTHER, STRANGER = (ident(n) for n in ("root", "node-a", "node-b", "stranger"))


@pytest.fixture
def ledger(tmp_path: Path):
    """root LVL_5 registers two nodes at LVL_1 (a node needs no authority to anchor its own log)."""
    led = Ledger.init(tmp_path / "ledger.db", ROOT, 4242, now=T0)
    led.sign_and_submit(ROOT, ops.register_key(NODE.did, NODE.key.public_key, 1), now=T0 + 1)
    led.sign_and_submit(ROOT, ops.register_key(OTHER.did, OTHER.key.public_key, 1), now=T0 + 2)
    yield led
    led.close()


def test_a_registered_node_anchors_its_own_log_and_the_anchors_survive_replay(ledger, tmp_path):
    first = ledger.sign_and_submit(NODE, ops.log_anchor(NODE.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    ledger.sign_and_submit(OTHER, ops.log_anchor(OTHER.did, "0123456789ab", 9, HEAD), now=T0 + 11)
    second = ledger.sign_and_submit(NODE, ops.log_anchor(NODE.did, "ba9876543210", 7, HEAD), now=T0 + 12)
    assert [e.seq for e in ledger.log_anchors(NODE.did)] == [first.seq, second.seq]
    assert ledger.log_anchors(NODE.did)[1].op == {"op": "LOG_ANCHOR", "opcode": 10, "node": NODE.did,
                                                  "stream_id": "ba9876543210", "seq": 7, "head": HEAD}
    assert ledger.log_anchors(STRANGER.did) == []
    with Ledger.open(ledger.path) as reopened:  # state rebuilt by replaying every entry's checks
        assert [e.seq for e in reopened.log_anchors(NODE.did)] == [first.seq, second.seq]
        assert reopened.verify_chain().head_seq == second.seq


def test_axon_ledger_show_lists_anchors(ledger, capsys):
    ledger.sign_and_submit(NODE, ops.log_anchor(NODE.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    capsys.readouterr()
    assert axon_main(["ledger", "show", "--ledger", str(ledger.path), "--after", "3"]) == 0
    assert f"LOG_ANCHOR         {NODE.did} stream 0123456789ab seq 3 {HEAD}" in capsys.readouterr().out


def test_a_node_cannot_anchor_another_nodes_log(ledger):
    with pytest.raises(AuthorityDenied, match="only its own decision log"):
        ledger.sign_and_submit(OTHER, ops.log_anchor(NODE.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    with pytest.raises(UnknownSender):
        ledger.sign_and_submit(STRANGER, ops.log_anchor(STRANGER.did, "0123456789ab", 3, HEAD), now=T0 + 10)
    assert ledger.log_anchors(NODE.did) == [] and ledger.log_anchors(STRANGER.did) == []


@pytest.mark.parametrize("field, value, says", [
    ("stream_id", "w0", "stream id"),
    ("stream_id", "0123456789AB", "stream id"),
    ("seq", 0, "minimum"),
    ("seq", 2**53, "maximum"),
    ("seq", "3", "integer"),
    ("head", "ab" * 32, "record hash"),
    ("node", "node-a", "DID"),
])
def test_malformed_anchors_are_refused_naming_the_field(field, value, says):
    op = {"op": "LOG_ANCHOR", "opcode": 10, "node": NODE.did, "stream_id": "0123456789ab", "seq": 3,
          "head": HEAD, field: value}
    with pytest.raises(MalformedOperation, match=f"/{field}") as err:
        ops.validate(op)
    assert says in str(err.value)


# -- the service posts anchors; verification holds the log to them ---------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = float(T0)

    def __call__(self) -> float:
        return self.now


def _service(plant: Plant, tmp_path: Path, clock: Clock) -> PolicyService:
    config = ServiceConfig()
    config.ledger.path, config.store.path = plant.ledger_path, tmp_path / "store"
    config.decision_log.path = tmp_path / "log"
    config.decision_log.anchor_every, config.decision_log.anchor_interval = 5, 100.0
    return PolicyService(config, load_identity(plant.node_key), clock=clock)


def _anchors(plant: Plant) -> list[dict]:
    with Ledger.open(plant.ledger_path) as ledger:
        return [entry.op for entry in ledger.log_anchors(plant.node.did)]


def _records(directory: Path) -> list[dict]:
    segments = sorted(directory.glob("w0-*.jsonl"))
    return [json.loads(line) for seg in segments for line in seg.read_bytes().splitlines()]


def _verify_all(plant: Plant, directory: Path, pinned: PublicKey | None = None) -> list[StreamReport]:
    with Ledger.open(plant.ledger_path) as ledger:
        return verify_log(directory, pinned, ledger=ledger)


def _verify(plant: Plant, directory: Path) -> StreamReport:
    (report,) = _verify_all(plant, directory)
    return report


@pytest.fixture
def anchored_log(tmp_path) -> tuple[Plant, Path]:
    """A service that ran with anchoring on: anchors at start, by count, by time and at shutdown."""
    plant, clock = Plant(tmp_path), Clock()
    service = _service(plant, tmp_path, clock)
    service.start()
    try:
        service.follow()  # the first step anchors at once: the stream is on the ledger from its start
        assert len(_anchors(plant)) == 1
        for _ in range(2):
            service.record_event("probe")
        service.follow()  # 2 records, no time passed: not due
        assert len(_anchors(plant)) == 1
        for _ in range(5):
            service.record_event("probe")
        service.follow()  # anchor_every = 5 records
        assert len(_anchors(plant)) == 2
        service.record_event("probe")
        clock.now += 100
        service.follow()  # anchor_interval = 100 s
        assert len(_anchors(plant)) == 3
        service.record_event("probe")
    finally:
        service.stop()  # the final seal is anchored too
    return plant, tmp_path / "log"


def test_the_service_anchors_sealed_heads_on_schedule_and_at_shutdown(anchored_log):
    plant, directory = anchored_log
    anchors, records = _anchors(plant), _records(directory)
    by_seq = {r["seq"]: r for r in records}
    assert len(anchors) == 4 and anchors[-1]["seq"] == records[-1]["seq"]
    for anchor in anchors:  # each names a seal of this stream, with the hash written in the log
        record = by_seq[anchor["seq"]]
        assert record["kind"] == "seal" and anchor["head"] == record["hash"]
        assert anchor["node"] == plant.node.did and anchor["stream_id"] == records[0]["stream_id"]
    report = _verify(plant, directory)
    assert report.ok and report.anchors == 4 and report.signer == plant.node.did


def test_truncation_at_a_seal_below_the_last_anchor_fails_with_the_ledger(anchored_log, capsys):
    plant, directory = anchored_log
    seg = directory / "w0-000001.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    kinds = [json.loads(line)["kind"] for line in lines]
    cut = max(i for i, kind in enumerate(kinds[:-1]) if kind == "seal") + 1  # end at the previous seal
    seg.write_bytes(b"".join(lines[:cut]))
    # From the log alone this is a stream that ends at a seal: it cannot be told from a crash there.
    (alone,) = verify_log(directory, plant.node.key.public_key)
    assert alone.ok
    report = _verify(plant, directory)
    assert not report.ok and (report.first_bad.line, report.first_bad.seq) == (cut, cut)
    assert f"ends at seq {cut} but the ledger anchors seq {len(lines)}" in report.first_bad.reason
    assert synapse_main(["decisions", "verify", str(directory), "--ledger", str(plant.ledger_path)]) == 1
    assert "cut off its end" in capsys.readouterr().out


def test_a_log_rewritten_with_the_node_key_or_deleted_fails_with_the_ledger(anchored_log):
    plant, directory = anchored_log
    node = load_identity(plant.node_key)
    stream_id = _records(directory)[0]["stream_id"]
    for seg in directory.glob("w0-*.jsonl"):
        seg.unlink()
    # The whole log deleted: every anchored stream is missing.
    (report,) = _verify_all(plant, directory, node.key.public_key)
    assert not report.ok and report.stream_id == stream_id
    assert "none of its segments" in report.first_bad.reason
    # Rewritten from scratch by someone holding the node key, under the same stream id: the records
    # the ledger anchored are not the ones in the log.
    log = DecisionLog(directory, node, randbytes=lambda n: bytes.fromhex(stream_id)).open(background=False)
    for _ in range(12):
        log.append_event("probe", rewritten=True)
    log.close()
    report = _verify(plant, directory)
    assert not report.ok and "anchors a different record at seq 3" in report.first_bad.reason
    # ... under a new stream id: the anchored stream is missing.
    for seg in directory.glob("w0-*.jsonl"):
        seg.unlink()
    _write_fresh(directory, node)
    reports = _verify_all(plant, directory)
    assert [r.ok for r in reports] == [True, False] and reports[1].stream_id == stream_id


def _write_fresh(directory: Path, who: Identity) -> None:
    log = DecisionLog(directory, who).open(background=False)
    log.append_event("probe")
    log.close()


def test_the_ledger_holds_the_log_to_the_key_registered_for_its_node(tmp_path, capsys):
    plant = Plant(tmp_path)
    # The node's DID with a key the ledger does not register for it; a DID the ledger does not know.
    impostor = Identity(SigningKey.generate(), plant.node.did)
    cases = ((impostor, "different key for " + plant.node.did), (STRANGER, "not a registered key"))
    for who, reason in cases:
        directory = tmp_path / who.key.address
        _write_fresh(directory, who)
        (alone,) = verify_log(directory)
        assert alone.ok
        report = _verify(plant, directory)
        assert not report.ok and reason in report.first_bad.reason and report.first_bad.line == 1
    good = str(tmp_path / "good")
    _write_fresh(tmp_path / "good", load_identity(plant.node_key))
    assert synapse_main(["decisions", "verify", good, "--ledger", str(plant.ledger_path)]) == 0
    assert synapse_main(["decisions", "verify", good, "--ledger", str(tmp_path / "no.db")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_the_schedule_waits_after_a_failure_and_never_goes_backwards():
    schedule = AnchorSchedule(every=10, interval=60.0)
    assert schedule.due(3, 0.0)  # the first time at once
    schedule.attempted(0.0, None)  # failed (say the node key is not registered yet)
    assert not schedule.due(500, 30.0)  # enough records, but a failure waits out the interval
    assert schedule.due(500, 60.0)
    schedule.attempted(60.0, 500)
    assert not schedule.due(500, 1000.0)  # nothing new to anchor
    assert not schedule.due(509, 61.0) and schedule.due(510, 61.0) and schedule.due(501, 120.0)
