"""Helpers for the analysis tests: tests/reference.py as a replay oracle beside the compiled module."""

from __future__ import annotations

import json
from typing import Any

from axon.abi import FAULT_TEXT, Fault
from scc.analysis.checks import Analysis, analyze
from scc.analysis.replay import CompiledModule, Observed, Reading, Replayer
from scc.analysis.source import AnalysedPolicy, load
from tests.reference import evaluate as reference

_FAULTS = {"division-by-zero": FAULT_TEXT[Fault.DIVISION_BY_ZERO], "nan": FAULT_TEXT[Fault.NAN]}


class ReferenceInterpreter:
    """tests/reference.py (written from the spec alone) as an Oracle; its fault reasons are worded
    as the runtime words them ("fault: TEXT at POINTER"), so a site can be checked in both."""

    name = "reference interpreter"

    def decide(self, document: dict[str, Any], reading: Reading) -> Observed:
        decision = reference(document, reading["telemetry"], reading["context"])
        fault = decision.fault
        reason = None if fault is None else f"fault: {_FAULTS.get(fault.kind, fault.kind)} at {fault.where}"
        return Observed(decision.verdict, decision.rule, fault is not None, reason)


def oracles() -> list:
    return [CompiledModule(), ReferenceInterpreter()]


def loaded(document: dict[str, Any], name: str = "policy.json") -> AnalysedPolicy:
    return load(name, json.dumps(document).encode())


def analysis_of(document: dict[str, Any], timeout: float = 10.0) -> Analysis:
    """`scc analyze`'s analysis, every example replayed through the module and the reference."""
    policy = loaded(document).policy
    return analyze(policy, Replayer(policy.document, oracles()), timeout)


def policy(rules: list[dict[str, Any]], *, inputs: dict[str, Any] | None = None, combine: str = "first-match",
           default: str = "DENY", lets: dict[str, Any] | None = None) -> dict[str, Any]:
    """A small policy over x in [0, 10], y in [-5, 5], flag (bool), mode (AUTO/MANUAL)."""
    doc: dict[str, Any] = {
        "sip": "001", "policy": "analysed", "version": "1.0.0",
        "inputs": inputs or {"telemetry": {"x": {"type": "number", "min": 0, "max": 10},
                                           "y": {"type": "number", "min": -5, "max": 5},
                                           "flag": {"type": "bool"}},
                             "context": {"mode": {"type": "enum", "values": ["AUTO", "MANUAL"]}}},
        "combine": combine, "rules": rules, "default": default,
    }
    if lets:
        doc["let"] = lets
    return doc


X, Y, FLAG, MODE = {"telemetry": "x"}, {"telemetry": "y"}, {"telemetry": "flag"}, {"context": "mode"}
