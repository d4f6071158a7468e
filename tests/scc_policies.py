"""Small policy sources for scc's tests."""

from __future__ import annotations

import copy
import json
from typing import Any

# SIP-001 §1, verbatim; tests/scc/test_reference.py works its decisions out by hand. Copy before changing it.
SPEC_EXAMPLE: dict[str, Any] = {
    "sip": "001",
    "policy": "boiler-guard",
    "version": "1.2.0",
    "description": "Keeps boiler B1 inside its pressure envelope",
    "authority_level": "LVL_3",
    "inputs": {
        "telemetry": {
            "pressure_bar": {"type": "number", "min": 0, "max": 250, "unit": "bar"},
            "temp_c": {"type": "number", "default": 20},
            "valve_open": {"type": "bool"},
        },
        "context": {"mode": {"type": "enum", "values": ["AUTO", "MANUAL", "MAINTENANCE"]}},
    },
    "let": {"overpressure": {"gt": [{"telemetry": "pressure_bar"}, 95]}},
    "combine": "first-match",
    "rules": [
        {"id": "halt-overpressure", "when": {"ref": "overpressure"}, "then": "HALT",
         "log": {"level": "error", "message": "pressure above 95 bar"}},
        {"id": "maintenance", "when": {"eq": [{"context": "mode"}, "MAINTENANCE"]}, "then": "DENY"},
        {"id": "high-open", "when": {"all": [{"gt": [{"telemetry": "pressure_bar"}, 80]},
                                             {"telemetry": "valve_open"}]}, "then": "WARN"},
        {"id": "normal", "when": {"le": [{"telemetry": "pressure_bar"}, 80]}, "then": "ALLOW"},
    ],
    "default": "DENY",
}

P = {"telemetry": "p"}  # number input, [0, 250]
V = {"telemetry": "v"}  # bool input
MODE = {"context": "mode"}  # enum input AUTO / MANUAL


def base() -> dict[str, Any]:
    return {
        "sip": "001",
        "policy": "t",
        "version": "1.0.0",
        "inputs": {
            "telemetry": {"p": {"type": "number", "min": 0, "max": 250}, "v": {"type": "bool"}},
            "context": {"mode": {"type": "enum", "values": ["AUTO", "MANUAL"]}},
        },
        "rules": [{"id": "r", "when": {"gt": [P, 1]}, "then": "DENY"}],
    }


def policy(*rules: dict[str, Any], let: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    """The base policy with these rules (ids r0, r1, ... unless given) and top-level changes."""
    doc = base()
    if rules:
        doc["rules"] = [{"id": f"r{i}", **copy.deepcopy(r)} for i, r in enumerate(rules)]
    if let is not None:
        doc["let"] = let
    doc.update(top)
    return doc


def rule(when: Any, then: str = "DENY", **extra: Any) -> dict[str, Any]:
    return {"when": when, "then": then, **extra}


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, indent=1).encode()
