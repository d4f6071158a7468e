"""Proven claims recorded in the signed artifact (issue 13 item 6): `scc package --claims` proves the
test file's claims and writes them, with the solver, into the envelope's meta; `scc inspect` and
`axon verify --json` show them; a claim not proven means no artifact; the record is under the signature."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from axon import strictjson
from axon.cli import main as axon
from axon.commands.loaders import load_key
from axon.ledger import ops
from scc.cli import main as scc
from tests.artifact_fixtures import NOW, make_world

POLICIES = Path(__file__).resolve().parents[2] / "policies"


def _signed_artifact(tmp_path: Path, capsys) -> tuple[Path, Path]:
    world = make_world(tmp_path)
    key_file = tmp_path / "alice.key"
    assert scc(["keygen", "-o", str(key_file), "--name", "alice"]) == 0
    alice = load_key(str(key_file))
    world.ledger.sign_and_submit(world.root, ops.register_key(alice.did, alice.key.public_key, "LVL_3"), NOW)
    sop = tmp_path / "boiler.sop"
    assert scc(["package", str(POLICIES / "boiler-guard.json"), "--key", str(key_file), "--claims",
                "-o", str(sop)]) == 0
    assert "3 claim(s) proven" in capsys.readouterr().err
    envelope = strictjson.loads(sop.read_bytes())
    op = ops.register_artifact(envelope["meta"]["urn"], "boiler-guard", "1.2.0", "LVL_3")
    world.ledger.sign_and_submit(alice, op, NOW)
    world.ledger.close()
    return sop, tmp_path / "ledger.db"


def test_package_records_proven_claims_and_inspect_and_verify_show_them(tmp_path, capsys):
    sop, ledger = _signed_artifact(tmp_path, capsys)
    stated = json.loads((POLICIES / "boiler-guard.test.json").read_text())["claims"]
    assert scc(["inspect", str(sop), "--json"]) == 0
    claims = json.loads(capsys.readouterr().out)["envelope"]["meta"]["claims"]
    assert claims["solver"].startswith("z3 ")
    assert [c["name"] for c in claims["proven"]] == [c["name"] for c in stated]
    assert claims["proven"][0]["when"] == stated[0]["when"]
    assert scc(["inspect", str(sop)]) == 0
    assert "claims        3 proven by z3" in capsys.readouterr().out
    assert axon(["verify", str(sop), "--ledger", str(ledger), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["artifact"]["claims"] == claims


def test_the_claims_are_signed_a_changed_record_fails_verification(tmp_path, capsys):
    sop, ledger = _signed_artifact(tmp_path, capsys)
    envelope = strictjson.loads(sop.read_bytes())
    envelope["meta"]["claims"]["proven"][0]["verdict"] = ["ALLOW"]
    sop.write_text(json.dumps(envelope))
    assert axon(["verify", str(sop), "--ledger", str(ledger), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_a_claim_not_proven_means_no_artifact(tmp_path, capsys):
    for name in ("boiler-guard.json", "boiler-guard.test.json"):
        shutil.copy(POLICIES / name, tmp_path / name)
    tests = json.loads((tmp_path / "boiler-guard.test.json").read_text())
    tests["claims"].append({"name": "manual always allows", "when": {"eq": [{"context": "mode"}, "MANUAL"]},
                            "verdict": ["ALLOW"]})
    (tmp_path / "boiler-guard.test.json").write_text(json.dumps(tests))
    assert scc(["keygen", "-o", str(tmp_path / "k.key"), "--name", "alice"]) == 0
    out = tmp_path / "boiler.sop"
    assert scc(["package", str(tmp_path / "boiler-guard.json"), "--key", str(tmp_path / "k.key"), "--claims",
                "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "claim 'manual always allows' is refuted" in err and "not packaged: 1 claim(s) not proven" in err
    assert not out.exists()
