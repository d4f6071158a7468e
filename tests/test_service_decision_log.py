"""The decision log: hash chain, seals, masking, rotation, restart, and `synapse decisions verify`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from axon.keys import Identity, SigningKey, did_for
from synapse.cli import main as synapse_main
from synapse.service.decision_log import (
    GENESIS,
    DecisionLog,
    Masker,
    RecordCanonicalizer,
    load_mask_key,
    record_hash,
    verify_log,
)

DECISION = {"verdict": "ALLOW", "code": 1, "rule": "normal", "logs": [], "reason": None, "gas_used": 7}


def _rng(seed: int = 1):
    state = [seed]

    def randbytes(n: int) -> bytes:
        state[0] += 1
        return (state[0].to_bytes(4, "big") * (n // 4 + 1))[:n]

    return randbytes


@pytest.fixture
def node() -> Identity:
    key = SigningKey.generate()
    return Identity(key, did_for(key.public_key, "node-a"))


def _write(directory: Path, node: Identity, n: int, **kw) -> DecisionLog:
    log = DecisionLog(directory, node, **kw).open(background=False)
    for i in range(n):
        log.append_decision(DECISION, {"pressure_bar": 40 + i, "badge": "1234"}, {"mode": "AUTO"},
                            policy="boiler-guard", urn="urn:sopcos:artifact:sha256:" + "a" * 64,
                            version="1.0.0")
    log.close()
    return log


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _rewrite(path: Path, records: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def test_records_chain_from_genesis_and_verify(tmp_path, node):
    _write(tmp_path, node, 5)
    records = _lines(tmp_path / "w0-000001.jsonl")
    assert records[0]["kind"] == "segment" and records[0]["prev"] == GENESIS
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    for before, after in zip(records, records[1:], strict=False):
        assert after["prev"] == before["hash"]
    assert all(r["hash"] == record_hash(r) for r in records)
    assert [r["kind"] for r in records][-2:] == ["stop", "seal"]
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert report.ok and report.decisions == 5 and report.seals == 1 and report.after_last_seal == 0


def test_decision_ids_are_unique_and_name_the_record(tmp_path, node):
    log = DecisionLog(tmp_path, node).open(background=False)
    ids = [log.append_decision(DECISION, {}, {}, policy="p") for _ in range(3)]
    log.close()
    assert len(set(ids)) == 3
    by_id = {r.get("decision_id"): r for r in _lines(tmp_path / "w0-000001.jsonl")}
    assert all(by_id[i]["kind"] == "decision" and i.endswith(f"-{by_id[i]['seq']}") for i in ids)


@pytest.mark.parametrize("edit, reason", [
    (lambda rs: rs[3].__setitem__("verdict", "DENY"), "hash mismatch"),
    (lambda rs: rs.pop(3), "seq jumps"),
    (lambda rs: rs.insert(3, rs.pop(4)), "seq jumps"),
])
def test_edits_and_deletions_point_at_the_first_bad_record(tmp_path, node, edit, reason):
    _write(tmp_path, node, 6)
    seg = tmp_path / "w0-000001.jsonl"
    records = _lines(seg)
    edit(records)
    _rewrite(seg, records)
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert not report.ok
    assert reason in report.first_bad.reason
    assert report.first_bad.line == 4 and report.first_bad.file == seg.name


def test_rehashing_an_edit_is_caught_by_the_seal(tmp_path, node):
    _write(tmp_path, node, 4)
    seg = tmp_path / "w0-000001.jsonl"
    records = _lines(seg)
    records[2]["verdict"] = "HALT"
    prev = records[1]["hash"]
    for r in records[2:]:  # an attacker without the node key recomputes every later hash
        r["prev"] = prev
        r["hash"] = record_hash(r)
        prev = r["hash"]
    _rewrite(seg, records)
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert not report.ok and "seal signature does not verify" in report.first_bad.reason
    assert report.first_bad.seq == records[-1]["seq"]


def test_resigning_with_another_key_is_caught_when_the_key_is_pinned(tmp_path, node):
    other_key = SigningKey.generate()
    other = Identity(other_key, did_for(other_key.public_key, "mallory"))
    _write(tmp_path, other, 2)
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert not report.ok and "different node key" in report.first_bad.reason
    (unpinned,) = verify_log(tmp_path)
    assert unpinned.ok and unpinned.signer == other.did


def test_rotation_chains_segments_and_a_missing_segment_is_found(tmp_path, node):
    _write(tmp_path, node, 60, rotate_bytes=4096)
    segments = sorted(tmp_path.glob("w0-*.jsonl"))
    assert len(segments) >= 3
    first_of_second = _lines(segments[1])[0]
    assert first_of_second["kind"] == "segment" and first_of_second["prev"] == _lines(segments[0])[-1]["hash"]
    assert _lines(segments[0])[-1]["kind"] == "seal"  # every rotated segment ends sealed
    assert verify_log(tmp_path, node.key.public_key)[0].ok
    segments[1].unlink()
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert not report.ok and "segment 000002 is missing" in report.first_bad.reason
    segments[0].unlink()
    assert "segments 1..2" in verify_log(tmp_path, node.key.public_key)[0].first_bad.reason


def test_restart_continues_the_chain(tmp_path, node):
    _write(tmp_path, node, 3)
    _write(tmp_path, node, 3)
    records = _lines(tmp_path / "w0-000001.jsonl")
    assert [r["kind"] for r in records].count("start") == 2
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert report.ok and report.decisions == 6


def test_interrupted_write_starts_a_new_segment_and_verify_names_it(tmp_path, node):
    _write(tmp_path, node, 3)
    seg = tmp_path / "w0-000001.jsonl"
    with seg.open("ab") as fh:
        fh.write(b'{"seq": 99, "kind": "decis')  # a write cut short by a power loss
    log = _write(tmp_path, node, 2)
    assert log.head[0] > 3
    second = _lines(tmp_path / "w0-000002.jsonl")
    assert second[1]["kind"] == "start" and "not a complete record" in second[1]["damaged_tail"]
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert not report.ok and "incomplete" in report.first_bad.reason
    assert report.first_bad.file == seg.name


def test_unsealed_tail_is_reported(tmp_path, node):
    log = DecisionLog(tmp_path, node, seal_every=1000).open(background=False)
    for _ in range(3):
        log.append_decision(DECISION, {}, {}, policy="p")
    log.sync()  # the process dies here: no stop record, no final seal
    (report,) = verify_log(tmp_path, node.key.public_key)
    assert report.ok and report.seals == 0 and report.after_last_seal == 5
    assert any("after the last seal" in n for n in report.notes)


def test_seal_every_n_records(tmp_path, node):
    _write(tmp_path, node, 10, seal_every=3)
    kinds = [r["kind"] for r in _lines(tmp_path / "w0-000001.jsonl")]
    assert kinds.count("seal") >= 4
    assert verify_log(tmp_path, node.key.public_key)[0].ok


def test_masking_writes_a_keyed_digest_not_the_value(tmp_path, node):
    key = load_mask_key(tmp_path / "mask.key", randbytes=_rng())
    assert (tmp_path / "mask.key").stat().st_mode & 0o777 == 0o600
    assert load_mask_key(tmp_path / "mask.key") == key
    masker = Masker(key, ["telemetry.badge", "context.operator"])
    log = DecisionLog(tmp_path / "log", node, masker=masker).open(background=False)
    log.append_decision(DECISION, {"badge": "1234", "pressure_bar": 50},
                        {"operator": "j.doe", "mode": "AUTO"}, policy="p")
    log.close()
    text = (tmp_path / "log" / "w0-000001.jsonl").read_text()
    assert "1234" not in text and "j.doe" not in text
    (record,) = [r for r in _lines(tmp_path / "log" / "w0-000001.jsonl") if r["kind"] == "decision"]
    assert record["telemetry"]["pressure_bar"] == 50 and record["context"]["mode"] == "AUTO"
    assert record["telemetry"]["badge"] == {"hmac-sha256": masker.digest("1234")}
    # The digest is keyed: without the key, hashing candidate badge numbers does not find it.
    assert Masker(b"\x00" * 32, ["telemetry.badge"]).digest("1234") != masker.digest("1234")


def test_huge_integers_are_logged_as_doubles(tmp_path, node):
    log = DecisionLog(tmp_path, node).open(background=False)
    log.append_decision(DECISION, {"x": 10**30}, {}, policy="p")
    log.close()
    assert verify_log(tmp_path, node.key.public_key)[0].ok


def test_cli_verify_exit_codes(tmp_path, node, capsys):
    _write(tmp_path, node, 4)
    pub = node.key.public_key.hex()
    assert synapse_main(["decisions", "verify", str(tmp_path), "--public-key", pub]) == 0
    assert "OK" in capsys.readouterr().out
    seg = tmp_path / "w0-000001.jsonl"
    records = _lines(seg)
    records[2]["gas_used"] = 0
    _rewrite(seg, records)
    assert synapse_main(["decisions", "verify", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["streams"][0]["first_bad"]["line"] == 3
    assert synapse_main(["decisions", "verify", str(tmp_path / "missing")]) == 2
    assert synapse_main(["decisions", "verify", str(tmp_path), "--public-key", "zz"]) == 2


_scalars = (st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20)
            | st.floats(allow_nan=False, allow_infinity=False))
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=8), inner, max_size=4), max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(record=st.dictionaries(st.text(max_size=12), _json, max_size=12), repeats=st.integers(1, 3))
def test_fast_canonical_form_is_rfc8785(record, repeats):
    canon = RecordCanonicalizer()
    for _ in range(repeats):  # the second time round, cached members are used
        assert canon.dumps(record) == rfc8785.dumps(record)
