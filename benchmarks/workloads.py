"""The benchmark workloads: generated SIP-001 policies, their Cedar translations, and inputs.

Both policies use `most-severe` with default DENY, so every rule is evaluated on every decision (no
early exit flatters the figures) and the Cedar translation is exact: HALT/DENY rules become
`forbid`, WARN/ALLOW rules `permit`; Cedar reports the policies that determined its answer, and the
most severe of those (looked up by `@id`) is the SIP-001 verdict. Inputs are integers so that Cedar's
`Long` arithmetic and comparisons mean the same as SIP-001's doubles.
"""

from __future__ import annotations

import json
import random
from typing import Any

MODES = ["AUTO", "MANUAL", "MAINTENANCE"]
INPUTS = {
    "telemetry": {
        "pressure_bar": {"type": "number", "min": 0, "max": 250, "unit": "bar"},
        "temp_c": {"type": "number", "min": -40, "max": 600, "unit": "degC"},
        "flow_m3h": {"type": "number", "min": 0, "max": 5000, "unit": "m3/h"},
        "estop": {"type": "bool"},
    },
    "context": {"mode": {"type": "enum", "values": MODES}},
}
P, T, F, E, M = ({"telemetry": "pressure_bar"}, {"telemetry": "temp_c"}, {"telemetry": "flow_m3h"},
                 {"telemetry": "estop"}, {"context": "mode"})


def _policy(name: str, rules: list[dict]) -> dict:
    return {"sip": "001", "policy": name, "version": "1.0.0", "inputs": INPUTS,
            "combine": "most-severe", "rules": rules, "default": "DENY"}


def ten_rule_policy() -> dict:
    """Boiler permissive: 10 rules over 5 inputs (4 telemetry, 1 context)."""
    def rule(rid, when, then):
        return {"id": rid, "when": when, "then": then}
    return _policy("bench-boiler-10", [
        rule("halt-estop", E, "HALT"),
        rule("halt-overpressure", {"gt": [P, 95]}, "HALT"),
        rule("halt-overtemperature", {"gt": [T, 540]}, "HALT"),
        rule("deny-maintenance", {"eq": [M, "MAINTENANCE"]}, "DENY"),
        rule("deny-hot-without-flow", {"all": [{"lt": [F, 50]}, {"gt": [T, 300]}]}, "DENY"),
        rule("warn-high-pressure", {"between": [P, 80, 95]}, "WARN"),
        rule("warn-manual-high", {"all": [{"eq": [M, "MANUAL"]}, {"gt": [P, 70]}]}, "WARN"),
        rule("warn-thermal-load", {"gt": [{"add": [F, {"mul": [P, 10]}]}, 4500]}, "WARN"),
        rule("allow-auto-normal", {"all": [{"eq": [M, "AUTO"]}, {"le": [P, 80]}, {"le": [T, 540]}]}, "ALLOW"),
        rule("allow-manual-low", {"all": [{"eq": [M, "MANUAL"]}, {"le": [P, 70]}, {"not": E}]}, "ALLOW"),
    ])


def many_rule_policy(n: int = 1000, seed: int = 1) -> dict:
    """`n` rules drawn from six plant-like templates with varied thresholds (deterministic)."""
    rng = random.Random(seed)
    verdicts = ["ALLOW"] * 5 + ["WARN"] * 3 + ["DENY"] + ["HALT"]
    templates = [
        lambda: {"gt": [P, rng.randint(60, 240)]},
        lambda: {"all": [{"lt": [T, rng.randint(-40, 300)]}, {"gt": [F, rng.randint(0, 5000)]}]},
        lambda: {"any": [{"eq": [M, rng.choice(MODES)]}, {"gt": [P, rng.randint(150, 250)]}]},
        lambda: {"between": [T, rng.randint(-40, 200), rng.randint(200, 600)]},
        lambda: {"all": [E, {"gt": [F, rng.randint(0, 5000)]}]},
        lambda: {"gt": [{"add": [F, {"mul": [P, rng.randint(1, 20)]}]}, rng.randint(1000, 8000)]},
        lambda: {"all": [{"in": [M, rng.sample(MODES, 2)]}, {"not": {"le": [P, rng.randint(0, 250)]}}]},
    ]
    rules = []
    for i in range(n):
        when, then = rng.choice(templates)(), rng.choice(verdicts)
        if then in ("HALT", "DENY"):  # trips are rare: they also need a pressure excursion
            when = {"all": [when, {"gt": [P, rng.randint(104, 250)]}]}
        rules.append({"id": f"r{i:04d}", "when": when, "then": then})
    return _policy(f"bench-plant-{n}", rules)


def inputs(count: int, seed: int = 2) -> list[tuple[dict, dict]]:
    """Plausible integer readings, mostly in the normal band; e-stop pressed 1 time in 50."""
    rng = random.Random(seed)
    return [
        ({"pressure_bar": rng.randint(0, 110), "temp_c": rng.randint(20, 560),
          "flow_m3h": rng.randint(0, 4800), "estop": rng.random() < 0.02},
         {"mode": rng.choices(MODES, weights=(8, 3, 1))[0]})
        for _ in range(count)
    ]


# --------------------------------------------------------------------------- Cedar translation

_CMP = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "==", "ne": "!="}
_ARITH = {"add": "+", "mul": "*", "sub": "-"}


def to_cedar_expr(expr: Any) -> str:
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, int):
        return str(expr)
    if isinstance(expr, str):
        return '"' + expr + '"'
    ((op, arg),) = expr.items()
    if op in ("telemetry", "context"):
        return f"context.{arg}"
    if op in _CMP:
        return f"({to_cedar_expr(arg[0])} {_CMP[op]} {to_cedar_expr(arg[1])})"
    if op in _ARITH:
        return "(" + f" {_ARITH[op]} ".join(to_cedar_expr(a) for a in arg) + ")"
    if op == "between":
        x, lo, hi = (to_cedar_expr(a) for a in arg)
        return f"({lo} <= {x} && {x} <= {hi})"
    if op == "in":
        return "[" + ", ".join(to_cedar_expr(v) for v in arg[1]) + f"].contains({to_cedar_expr(arg[0])})"
    if op == "all":
        return "(" + " && ".join(to_cedar_expr(a) for a in arg) + ")"
    if op == "any":
        return "(" + " || ".join(to_cedar_expr(a) for a in arg) + ")"
    if op == "not":
        return f"!{to_cedar_expr(arg)}"
    raise ValueError(f"no Cedar translation for {op!r}")


def to_cedar(policy: dict) -> str:
    """One Cedar policy per rule; HALT/DENY forbid, WARN/ALLOW permit; `@id` is the rule id."""
    assert policy["combine"] == "most-severe" and policy.get("default", "DENY") == "DENY"
    out = []
    for rule in policy["rules"]:
        effect = "forbid" if rule["then"] in ("HALT", "DENY") else "permit"
        condition = to_cedar_expr(rule["when"])
        out.append(f'@id("{rule["id"]}")\n{effect}(principal, action, resource) when {{ {condition} }};')
    return "\n".join(out)


SEVERITY = {"ALLOW": 0, "WARN": 1, "DENY": 2, "HALT": 3}


def cedar_verdict(policy: dict, result: Any) -> str:
    """Map a Cedar answer back to the SIP-001 verdict (see the module docstring)."""
    reasons = result.diagnostics.reasons
    if not reasons:
        return "DENY"
    ids = result.diagnostics.id_annotations_by_reason
    then = {r["id"]: r["then"] for r in policy["rules"]}
    return max((then[ids[r]] for r in reasons), key=SEVERITY.__getitem__)


# --------------------------------------------------------------------------- Rego translation
# For regorus and OPA's Go engine. Rego has no `||`: each rule's condition is put in disjunctive normal
# form and each conjunction becomes one `held contains ID if {...}` rule; like Cedar's answer, the set of
# rules that held is mapped to the most severe verdict in Python (`rego_verdict`).

_NEGATED = {"gt": "le", "ge": "lt", "lt": "ge", "le": "gt", "eq": "ne", "ne": "eq"}


def _rego_term(expr: Any) -> str:
    if isinstance(expr, bool):
        return "true" if expr else "false"
    if isinstance(expr, int | str):
        return json.dumps(expr)
    ((op, arg),) = expr.items()
    if op in ("telemetry", "context"):
        return f"input.{arg}"
    if op in _ARITH:
        return "(" + f" {_ARITH[op]} ".join(_rego_term(a) for a in arg) + ")"
    raise ValueError(f"no Rego term for {op!r}")


def _dnf(expr: Any) -> list[list[str]]:
    """`expr` as a list of conjunctions of Rego statements (their disjunction is `expr`)."""
    ((op, arg),) = expr.items()
    if op in ("telemetry", "context"):  # a bool input used as a condition
        return [[f"{_rego_term(expr)} == true"]]
    if op in _CMP:
        return [[f"{_rego_term(arg[0])} {_CMP[op]} {_rego_term(arg[1])}"]]
    if op == "between":
        x, lo, hi = (_rego_term(a) for a in arg)
        return [[f"{lo} <= {x}", f"{x} <= {hi}"]]
    if op == "in":
        return [[f"{_rego_term(arg[0])} in {{{', '.join(json.dumps(v) for v in arg[1])}}}"]]
    if op == "any":
        return [conjunction for a in arg for conjunction in _dnf(a)]
    if op == "all":
        out: list[list[str]] = [[]]
        for a in arg:
            out = [left + right for left in out for right in _dnf(a)]
        return out
    if op == "not":
        ((inner, inner_arg),) = arg.items()
        if inner in _NEGATED:
            return _dnf({_NEGATED[inner]: inner_arg})
        if inner in ("telemetry", "context"):
            return [[f"{_rego_term(arg)} == false"]]
    raise ValueError(f"no Rego translation for {op!r}")


def to_rego(policy: dict) -> str:
    """A Rego module `package bench` whose `held` is the set of ids of the rules that hold."""
    assert policy["combine"] == "most-severe" and policy.get("default", "DENY") == "DENY"
    out = ["package bench", "", "import rego.v1", ""]
    for rule in policy["rules"]:
        for conjunction in _dnf(rule["when"]):
            out.append(f'held contains "{rule["id"]}" if {{ ' + "; ".join(conjunction) + " }")
    return "\n".join(out) + "\n"


def rego_verdict(policy: dict, held: list[str]) -> str:
    """The most severe verdict among the rules that held, else the default DENY."""
    if not held:
        return "DENY"
    then = {r["id"]: r["then"] for r in policy["rules"]}
    return max((then[i] for i in held), key=SEVERITY.__getitem__)
