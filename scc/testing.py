"""`scc test`: run the cases of `NAME.test.json` files against the *compiled* policy modules.

What is tested is what will run beside the PLC: each policy is compiled with the real compiler and
every case goes through the real runtime, synapse's `Evaluator`, in this process (scc sits above
synapse: README, "Layout"). The pipeline is a row of small stages:

  1. discover(paths)          the *.test.json files (files as given, directories searched)
  2. load_test_file(path)     read and schema-check one file (docs/policy-tests.md)
  3. compile_policy_file()    the policy's module bytes and rule ids, or the compiler's diagnostics
  4. run_cases()              one decision per case, from the runtime
  5. judge()                  what differs between a case's expectations and its decision
  6. render_console(), junit_xml()   the reports

Problems with the test files themselves (unreadable, not matching the schema, no files at all) raise
TestFileError; a module the runtime refuses raises ModuleRefused: both are usage/I/O errors
(exit 2). A failing case or a policy that does not compile is a test failure.
"""

from __future__ import annotations

import functools
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from axon import strictjson
from scc.compiler import compile_policy
from scc.errors import PolicyError, SccError
from synapse.decision import Decision
from synapse.errors import SynapseError
from synapse.evaluate import Evaluator
from synapse.inputs import Reading, ReadingInvalid

SCHEMA_RESOURCE = "policy-test.schema.json"
TEST_SUFFIX = ".test.json"
DEFAULT_PATHS = ("policies",)


class TestFileError(SccError):
    """A test file is missing, unreadable, not JSON, or does not match the test-file schema."""

    __test__ = False  # not a pytest test class
    code = "SCC-TEST-FILE"


class ModuleRefused(SccError):
    """The runtime refused a compiled module: it could not load or instantiate it."""

    code = "SCC-TEST-RUNTIME"


@dataclass(frozen=True)
class PolicyTestFile:
    path: Path
    policy_path: Path
    cases: tuple[dict[str, Any], ...]
    claims: tuple[dict[str, Any], ...] = ()  # proved with z3 (scc/analysis/claims.py)


@dataclass(frozen=True)
class CompiledPolicy:
    name: str
    wasm: bytes
    rule_ids: tuple[str, ...]


@dataclass(frozen=True)
class CaseResult:
    name: str
    case: dict[str, Any]
    decision: dict[str, Any] | None
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems


@dataclass
class SuiteResult:
    """The outcome of one test file: its cases, or why its policy could not be compiled."""

    test_file: PolicyTestFile
    policy_name: str
    rule_ids: tuple[str, ...] = ()
    cases: list[CaseResult] = field(default_factory=list)
    compile_error: str | None = None
    seconds: float = 0.0
    claims: list[Any] = field(default_factory=list)  # scc.analysis.claims.ClaimResult, in file order

    @property
    def passed(self) -> int:
        return sum(r.passed for r in self.cases) + sum(c.proven for c in self.claims)

    @property
    def failed(self) -> int:
        if self.compile_error is not None:
            return len(self.test_file.cases) + len(self.test_file.claims)
        return sum(not r.passed for r in self.cases) + sum(not c.proven for c in self.claims)

    @property
    def unexercised(self) -> tuple[str, ...]:
        """Rules that decided no case (a case that only reaches the default exercises none)."""
        decided = {r.decision.get("rule") for r in self.cases if r.decision is not None}
        return tuple(rule for rule in self.rule_ids if rule not in decided)


# ------------------------------------------------------------------------------ 1. discover


def discover(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Test files named by `paths` (directories are searched recursively), sorted, without repeats."""
    found: dict[Path, None] = {}
    for raw in paths or DEFAULT_PATHS:
        path = Path(raw)
        if path.is_dir():
            for hit in sorted(path.rglob("*" + TEST_SUFFIX)):
                if hit.is_file():
                    found.setdefault(hit.resolve(), None)
        elif path.is_file():
            found.setdefault(path.resolve(), None)
        else:
            raise TestFileError(f"{raw}: no such file or directory")
    if not found:
        shown = ", ".join(str(p) for p in (paths or DEFAULT_PATHS))
        raise TestFileError(f"no *{TEST_SUFFIX} files found in {shown}")
    return list(found)


# ------------------------------------------------------------------------------ 2. load


@functools.cache
def _validator() -> Draft202012Validator:
    schema = strictjson.loads(resources.files("scc").joinpath("schema", SCHEMA_RESOURCE).read_bytes())
    return Draft202012Validator(schema)


def _pointer(path: Iterable[str | int]) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def load_test_file(path: Path) -> PolicyTestFile:
    """Read one test file and check it against scc/schema/policy-test.schema.json."""
    try:
        document = strictjson.loads(path.read_bytes())
    except OSError as exc:
        raise TestFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except strictjson.JsonError as exc:
        raise TestFileError(f"{path}: not valid JSON: {exc}") from None
    errors = sorted(_validator().iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise TestFileError(f"{path}:{_pointer(first.absolute_path) or '/'}: {first.message}{more}")
    names: set[str] = set()
    for index, case in enumerate(document["cases"]):
        if case["name"] in names:
            raise TestFileError(f"{path}:/cases/{index}/name: case name {case['name']!r} is used twice")
        names.add(case["name"])
    claim_names: set[str] = set()
    for index, claim in enumerate(document.get("claims", ())):
        if claim["name"] in claim_names:
            raise TestFileError(f"{path}:/claims/{index}/name: claim name {claim['name']!r} is used twice")
        claim_names.add(claim["name"])
    policy_path = (path.parent / document["policy"]).resolve()
    if not policy_path.is_file():
        raise TestFileError(f"{path}:/policy: policy file {document['policy']!r} not found next to it")
    return PolicyTestFile(path, policy_path, tuple(document["cases"]), tuple(document.get("claims", ())))


# ------------------------------------------------------------------------------ 3. compile


def compile_policy_file(policy_path: Path) -> CompiledPolicy:
    """Compile one policy source; PolicyError (with the compiler's diagnostics) if it is wrong."""
    try:
        source = policy_path.read_bytes()
    except OSError as exc:
        raise TestFileError(f"{policy_path}: cannot read: {exc.strerror or exc}") from None
    result = compile_policy(source)
    return CompiledPolicy(result.meta["policy"], result.wasm, tuple(r["id"] for r in result.meta["rules"]))


def _describe_compile_error(exc: PolicyError, policy_path: Path) -> str:
    lines = [f"{policy_path.name} does not compile:"]
    lines += ["  " + d.format(policy_path.name) for d in exc.errors]
    if exc.hidden:
        lines.append(f"  ... and {exc.hidden} more")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ 4. run


def run_cases(wasm: bytes, cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One decision per case, in order, from the runtime's evaluator with its default limits.

    A case whose telemetry or context is not a reading (a null, a list, an over-long string) is a
    DENY whose reason names the case and the value, as the runtime refuses such a reading."""
    try:
        evaluator = Evaluator.from_wasm(wasm)
    except SynapseError as exc:
        raise ModuleRefused(f"the runtime refused the compiled module: {exc} [{exc.code}]") from None
    decisions = []
    for number, case in enumerate(cases, start=1):
        try:
            reading = Reading.from_json({"telemetry": case.get("telemetry", {}),
                                         "context": case.get("context", {})})
        except ReadingInvalid as exc:
            decision = Decision.deny(f"case {number}: {exc}")
        else:
            decision = evaluator.evaluate(reading.telemetry, reading.context)
        decisions.append(dict(decision.to_dict()))
    return decisions


# ------------------------------------------------------------------------------ 5. judge


def _rule_text(rule: str | None) -> str:
    return rule if rule is not None else "none (default or fault)"


def judge(case: dict[str, Any], decision: dict[str, Any]) -> tuple[str, ...]:
    """Every way `decision` differs from what `case` expects; empty when the case passes."""
    problems = []
    if decision.get("verdict") != case["expect"]:
        problems.append(f"verdict: expected {case['expect']}, got {decision.get('verdict')}")
    if "rule" in case and decision.get("rule") != case["rule"]:
        problems.append(f"rule: expected {_rule_text(case['rule'])}, got {_rule_text(decision.get('rule'))}")
    if "reason_contains" in case:
        reason = decision.get("reason") or ""
        if case["reason_contains"] not in reason:
            problems.append(f"reason: expected it to contain {case['reason_contains']!r}, got {reason!r}")
    return tuple(problems)


# ------------------------------------------------------------------------------ the whole run


def run_test_file(test_file: PolicyTestFile, compiled: CompiledPolicy | PolicyError) -> SuiteResult:
    started = time.perf_counter()
    if isinstance(compiled, PolicyError):
        return SuiteResult(test_file, test_file.policy_path.stem,
                           compile_error=_describe_compile_error(compiled, test_file.policy_path))
    decisions = run_cases(compiled.wasm, test_file.cases)
    results = [
        CaseResult(case["name"], case, decision, judge(case, decision))
        for case, decision in zip(test_file.cases, decisions, strict=True)
    ]
    claims = prove_claims(test_file) if test_file.claims else []
    return SuiteResult(test_file, compiled.name, compiled.rule_ids, results,
                       seconds=time.perf_counter() - started, claims=claims)


def prove_claims(test_file: PolicyTestFile) -> list[Any]:
    """The file's claims, each proved, refuted (with a counterexample the module confirms), unknown
    or invalid. z3 loads only here: a test file without claims never imports it."""
    from scc.analysis.claims import prove
    from scc.analysis.replay import CompiledModule, Replayer
    from scc.analysis.source import load

    loaded = load(test_file.policy_path.name, test_file.policy_path.read_bytes())
    return prove(loaded.policy, list(test_file.claims), Replayer(loaded.policy.document, [CompiledModule()]))


def run_tests(paths: Sequence[str | os.PathLike[str]]) -> list[SuiteResult]:
    """Discover, load, compile (once per policy) and run; the results in file order."""
    test_files = [load_test_file(p) for p in discover(paths)]
    compiled: dict[Path, CompiledPolicy | PolicyError] = {}
    suites = []
    for test_file in test_files:
        if test_file.policy_path not in compiled:
            try:
                compiled[test_file.policy_path] = compile_policy_file(test_file.policy_path)
            except PolicyError as exc:
                compiled[test_file.policy_path] = exc
        suites.append(run_test_file(test_file, compiled[test_file.policy_path]))
    return suites


# ------------------------------------------------------------------------------ 6. reports


def _show_decision(decision: dict[str, Any]) -> list[str]:
    lines = [f"got:      {decision.get('verdict')} by {_rule_text(decision.get('rule'))}"]
    if decision.get("reason"):
        lines.append(f"reason:   {decision['reason']}")
    for log in decision.get("logs") or []:
        lines.append(f"log:      [{log.get('level')}] {log.get('message')}")
    return lines


def failure_text(result: CaseResult) -> str:
    """What the console and the JUnit <failure> say about one failing case."""
    expected = f"{result.case['expect']}"
    if "rule" in result.case:
        expected += f" by {_rule_text(result.case['rule'])}"
    lines = [f"expected: {expected}"]
    lines += _show_decision(result.decision or {})
    lines += [f"problem:  {p}" for p in result.problems]
    return "\n".join(lines)


def claim_text(result: Any) -> str:
    """What the console and the JUnit <failure> say about a claim that is not proven."""
    lines = [f"claim:    {result.statement()}", f"result:   {result.status.value}: {result.detail}"]
    if result.counterexample is not None:
        for group in ("telemetry", "context"):
            lines.append(f"{group + ':':<10}{json.dumps(result.counterexample[group])}")
    return "\n".join(lines)


def render_console(suites: Sequence[SuiteResult]) -> str:
    out: list[str] = []
    for suite in suites:
        label = f"{suite.policy_name} ({suite.test_file.path.name})"
        if suite.compile_error is not None:
            out.append(f"ERROR {label}: {suite.compile_error}")
            continue
        for result in suite.cases:
            if not result.passed:
                out.append(f"FAIL {label}: {result.name}")
                out.extend("    " + line for line in failure_text(result).splitlines())
        for claim in suite.claims:
            if not claim.proven:
                out.append(f"FAIL {label}: claim {claim.name}")
                out.extend("    " + line for line in claim_text(claim).splitlines())
    unexercised = [(s.policy_name, s.unexercised) for s in suites
                   if s.compile_error is None and s.unexercised]
    if unexercised:
        out.append("rules no case exercised:")
        out.extend(f"  {name}: {', '.join(rules)}" for name, rules in unexercised)
    passed = sum(s.passed for s in suites)
    failed = sum(s.failed for s in suites)
    out.append(f"{passed} passed, {failed} failed")
    return "\n".join(out) + "\n"


def junit_xml(suites: Sequence[SuiteResult]) -> bytes:
    """JUnit XML: one <testsuite> per policy test file, one <testcase> per case."""
    root = ET.Element("testsuites", name="scc test")
    total = failures = errors = 0
    for suite in suites:
        element = ET.SubElement(root, "testsuite", name=suite.policy_name, file=str(suite.test_file.path),
                                time=f"{suite.seconds:.3f}")
        if suite.compile_error is not None:
            case = ET.SubElement(element, "testcase", classname=suite.policy_name, name="compile")
            ET.SubElement(case, "error", message="policy does not compile").text = suite.compile_error
            counts = (1, 0, 1)
        else:
            for result in suite.cases:
                case = ET.SubElement(element, "testcase", classname=suite.policy_name, name=result.name)
                if not result.passed:
                    failure = ET.SubElement(case, "failure", message="; ".join(result.problems))
                    failure.text = failure_text(result)
            for claim in suite.claims:
                case = ET.SubElement(element, "testcase", classname=suite.policy_name,
                                     name=f"claim: {claim.name}")
                if not claim.proven:
                    failure = ET.SubElement(case, "failure", message=f"claim {claim.status.value}")
                    failure.text = claim_text(claim)
            counts = (len(suite.cases) + len(suite.claims), suite.failed, 0)
        element.set("tests", str(counts[0]))
        element.set("failures", str(counts[1]))
        element.set("errors", str(counts[2]))
        total, failures, errors = total + counts[0], failures + counts[1], errors + counts[2]
    root.set("tests", str(total))
    root.set("failures", str(failures))
    root.set("errors", str(errors))
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
