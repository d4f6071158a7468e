"""Claims in NAME.test.json (issue 13 item 2): `scc test` proves or refutes each, prints a counterexample
the compiled module and the reference interpreter confirm, and reports claims in JUnit."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from scc.analysis.claims import ClaimStatus, prove
from scc.analysis.replay import Replayer
from scc.cli import main as scc
from tests.analysis_support import FLAG, MODE, X, loaded, oracles, policy

POLICIES = Path(__file__).resolve().parents[2] / "policies"
RULES = [{"id": "halt-high", "when": {"gt": [X, 8]}, "then": "HALT"},
         {"id": "manual", "when": {"eq": [MODE, "MANUAL"]}, "then": "DENY"},
         {"id": "rate", "when": {"gt": [{"div": [10, X]}, 4]}, "then": "WARN"},
         {"id": "ok", "when": FLAG, "then": "ALLOW"}]


def results(claims: list[dict], rules: list[dict] = RULES) -> dict[str, object]:
    analysed = loaded(policy(rules)).policy
    return {r.name: r for r in prove(analysed, claims, Replayer(analysed.document, oracles()))}


def test_true_claims_are_proven_and_false_ones_refuted_with_a_confirmed_counterexample():
    got = results([
        {"name": "high halts", "when": {"gt": [X, 8]}, "verdict": ["HALT"], "rule": ["halt-high"]},
        {"name": "manual never allows", "when": {"eq": [MODE, "MANUAL"]}, "verdict": ["HALT", "DENY"]},
        {"name": "flag allows", "when": FLAG, "verdict": ["ALLOW"]},
    ])
    assert got["high halts"].status is ClaimStatus.PROVEN
    assert got["manual never allows"].status is ClaimStatus.PROVEN
    refuted = got["flag allows"]
    assert refuted.status is ClaimStatus.REFUTED and refuted.counterexample["telemetry"]["flag"] is True
    assert refuted.got[0] != "ALLOW"


def test_a_reachable_fault_refutes_a_claim_that_leaves_out_deny():
    # Below 1, 10/x > 4 holds (WARN), except at 0, where the division faults: DENY by no rule.
    got = results([{"name": "low x is never denied", "when": {"lt": [X, 1]},
                    "verdict": ["HALT", "WARN", "ALLOW"]},
                   {"name": "x = 0 is a fault", "when": {"eq": [X, 0]}, "verdict": ["DENY"], "rule": [None]}],
                  rules=[RULES[2], RULES[3]])
    refuted = got["low x is never denied"]
    assert refuted.status is ClaimStatus.REFUTED and refuted.got == ("DENY", None)
    assert refuted.counterexample["telemetry"]["x"] == 0
    assert got["x = 0 is a fault"].status is ClaimStatus.PROVEN


def test_claims_that_do_not_fit_the_policy_are_invalid_with_a_location():
    got = results([{"name": "typo", "when": {"gt": [{"telemetry": "pressure"}, 1]}, "verdict": ["HALT"]},
                   {"name": "no such rule", "when": FLAG, "verdict": ["ALLOW"], "rule": ["missing"]}])
    assert got["typo"].status is ClaimStatus.INVALID and got["typo"].detail.startswith("/claims/0/when/gt/0")
    assert got["no such rule"].status is ClaimStatus.INVALID and "missing" in got["no such rule"].detail


def test_every_bundled_policy_states_at_least_two_claims():
    for path in sorted(POLICIES.glob("*.test.json")):
        claims = json.loads(path.read_text()).get("claims", [])
        assert len(claims) >= 2, path.name
        assert all("when" in c and c["verdict"] for c in claims)


def test_scc_test_reports_claims_on_the_console_and_in_junit(capsys, tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(policy(RULES)))
    (tmp_path / "p.test.json").write_text(json.dumps({
        "policy": "p.json",
        "cases": [{"name": "high", "telemetry": {"x": 9, "y": 0, "flag": False}, "context": {"mode": "AUTO"},
                   "expect": "HALT"}],
        "claims": [{"name": "high halts", "when": {"gt": [X, 8]}, "verdict": ["HALT"]},
                   {"name": "manual allows", "when": {"eq": [MODE, "MANUAL"]}, "verdict": ["ALLOW"]}],
    }))
    junit = tmp_path / "junit.xml"
    assert scc(["test", str(tmp_path), "--junit", str(junit)]) == 1
    out = capsys.readouterr().out
    assert "FAIL analysed (p.test.json): claim manual allows" in out and "refuted: counterexample" in out
    assert '"mode": "MANUAL"' in out and "2 passed, 1 failed" in out
    cases = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
    assert cases["claim: high halts"].find("failure") is None
    assert cases["claim: manual allows"].find("failure").get("message") == "claim refuted"
