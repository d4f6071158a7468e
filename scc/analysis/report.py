"""The analyses for people (plain text), for programs (JSON) and for CI code scanning (SARIF 2.1.0)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from scc import COMPILER_ID
from scc.analysis.checks import Analysis, Finding
from scc.analysis.diff import DiffResult
from scc.analysis.replay import Reading
from scc.ast import Policy

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
INFORMATION_URI = "docs/analysis.md"
# One line per code for SARIF's rule list (docs/errors.md has the long form).
CODE_TEXT = {
    "SCC-A001": "a rule can never hold within the declared input ranges",
    "SCC-A002": "a rule can hold but never decides",
    "SCC-A003": "the default decides for some valid inputs",
    "SCC-A004": "a fault (division by zero, NaN) is reachable",
    "SCC-A005": "two rules with different verdicts overlap; the order decides (first-match)",
    "SCC-A006": "the solver could not answer in time (unknown)",
    "SCC-D001": "the two policies decide differently for some inputs",
    "SCC-D002": "the solver could not answer in time whether the policies differ (unknown)",
}
Locate = Callable[[str], tuple[int, int]]  # JSON Pointer -> (line, column)


def format_value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str | bool) else repr(value)


def format_reading(reading: Reading) -> str:
    """telemetry pressure_bar=96.0, valve_open=true; context mode="AUTO"."""
    parts = []
    for group in ("telemetry", "context"):
        values = reading.get(group) or {}
        if values:
            parts.append(f"{group} " + ", ".join(f"{name}={format_value(v)}" for name, v in values.items()))
    return "; ".join(parts) or "(no inputs)"


def _finding_line(name: str, finding: Finding, locate: Locate) -> list[str]:
    line, column = locate(finding.pointer)
    out = [f"{name}:{line}:{column}: {finding.level} {finding.code} {finding.pointer}: {finding.message}"]
    if finding.reading is not None:
        out.append(f"    for example: {format_reading(finding.reading)}")
    return out


def text(name: str, analysis: Analysis, locate: Locate) -> str:
    lines = [f"{name}: {analysis.policy} {analysis.version} ({analysis.combine}), analysed with "
             f"{analysis.solver} in {analysis.seconds:.2f} s ({analysis.questions} questions, every "
             "example replayed through the compiled module)"]
    decide = [r.id for r in analysis.rules if r.decides]
    if len(decide) == len(analysis.rules):
        lines.append(f"{name}: every rule decides for some valid input")
    for finding in analysis.findings:
        lines += _finding_line(name, finding, locate)
    if analysis.default_decides is False:
        lines.append(f"{name}: the default never decides: a rule (or a fault) decides every valid input")
    counts = {level: sum(f.level == level for f in analysis.findings) for level in ("warning", "note")}
    unknown = sum(f.code == "SCC-A006" for f in analysis.findings)
    lines.append(f"{name}: {counts['warning']} warning(s), {counts['note']} note(s)"
                 + (f", {unknown} question(s) unknown" if unknown else ""))
    return "\n".join(lines) + "\n"


def finding_json(finding: Finding, locate: Locate) -> dict[str, Any]:
    line, column = locate(finding.pointer)
    out = {"code": finding.code, "level": finding.level, "pointer": finding.pointer, "line": line,
           "column": column, "message": finding.message}
    if finding.rule is not None:
        out["rule"] = finding.rule
    if finding.reading is not None:
        out["example"] = finding.reading
    return out


def to_json(analysis: Analysis, locate: Locate) -> dict[str, Any]:
    return {
        "policy": analysis.policy, "version": analysis.version, "combine": analysis.combine,
        "solver": analysis.solver, "timeout_seconds": analysis.timeout,
        "findings": [finding_json(f, locate) for f in analysis.findings],
        "rules": [{"id": r.id, "pointer": r.pointer, "then": r.then,
                   "decides": "unknown" if r.decides is None else r.decides,
                   **({"example": r.reading} if r.reading is not None else {})} for r in analysis.rules],
        "default_decides": "unknown" if analysis.default_decides is None else analysis.default_decides,
        "questions": analysis.questions, "replays": analysis.replays,
        "seconds": round(analysis.seconds, 3),
    }


def sarif(uri: str, findings: list[Finding], locate: Locate, tool: str, solver: str) -> dict[str, Any]:
    """A SARIF 2.1.0 log: one run, one result per finding, located in the source file."""
    codes = sorted({f.code for f in findings})
    results = []
    for finding in findings:
        line, column = locate(finding.pointer)
        result: dict[str, Any] = {
            "ruleId": finding.code,
            "level": finding.level,
            "message": {"text": finding.message + (f" For example: {format_reading(finding.reading)}."
                                                   if finding.reading is not None else "")},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": uri},
                                     "region": {"startLine": line, "startColumn": column}},
                "logicalLocations": [{"fullyQualifiedName": finding.pointer or "/", "kind": "member"}],
            }],
            "properties": {"pointer": finding.pointer},
        }
        if finding.reading is not None:
            result["properties"]["example"] = finding.reading
        results.append(result)
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": tool, "version": COMPILER_ID, "informationUri": INFORMATION_URI,
                "rules": [{"id": code, "shortDescription": {"text": CODE_TEXT[code]}} for code in codes],
                "properties": {"solver": solver},
            }},
            "results": results,
        }],
    }


# -- scc diff -------------------------------------------------------------------------------------------


def _rule(rule: str | None) -> str:
    return f"rule `{rule}`" if rule else "no rule (the default, a fault or an invalid input)"


def diff_text(old: str, new: str, result: DiffResult) -> str:
    if result.equivalent:
        head = (f"{old} -> {new}: EQUIVALENT: the same verdict for every reading (proved with "
                f"{result.solver} in {result.seconds:.2f} s)")
        return head + "\n"
    state = "DIFFERENT" if result.differences else "UNKNOWN (not proved equivalent)"
    lines = [f"{old} -> {new}: {state} ({result.solver}, {result.seconds:.2f} s; every example replayed "
             "through both compiled modules)"]
    for difference in result.differences:
        lines.append(f"  {difference.old} -> {difference.new}:")
        for example in difference.examples:
            lines.append(f"    {format_reading(example.reading)}")
            lines.append(f"      old: {_rule(example.old_rule)}; new: {_rule(example.new_rule)}")
    for a, b in result.unknown:
        lines.append(f"  {a} -> {b}: unknown (the solver ran out of time; not proved absent)")
    return "\n".join(lines) + "\n"


def diff_json(old: str, new: str, result: DiffResult) -> dict[str, Any]:
    return {
        "old": old, "new": new, "solver": result.solver, "timeout_seconds": result.timeout,
        "equivalent": "unknown" if result.equivalent is None else result.equivalent,
        "differences": [{"old": d.old, "new": d.new,
                         "examples": [{"reading": e.reading, "old_rule": e.old_rule, "new_rule": e.new_rule}
                                      for e in d.examples]} for d in result.differences],
        "unknown": [{"old": a, "new": b} for a, b in result.unknown],
        "questions": result.questions, "seconds": round(result.seconds, 3),
    }


def diff_findings(new: Policy, result: DiffResult) -> list[Finding]:
    """One finding per example, at the rule of NEW that decides it (or at /default, or /rules)."""
    sites = {rule.id: rule.site for rule in new.rules}
    out = []
    for difference in result.differences:
        for example in difference.examples:
            pointer = sites.get(example.new_rule or "", "/default" if "default" in new.document else "/rules")
            out.append(Finding("SCC-D001", "warning", pointer,
                               f"{difference.old} -> {difference.new}: the old policy decided "
                               f"{difference.old} by {_rule(example.old_rule)}, this one decides "
                               f"{difference.new} by {_rule(example.new_rule)}", example.reading,
                               example.new_rule))
    for a, b in result.unknown:
        out.append(Finding("SCC-D002", "warning", "/rules",
                           f"{a} -> {b}: unknown, the solver ran out of time (not proved absent)"))
    return out
