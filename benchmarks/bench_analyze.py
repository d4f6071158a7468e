"""`scc analyze` and `scc diff` figures (issue 13 item 8), beside compile time measured in the same run.

    python benchmarks/bench_analyze.py          the six bundled policies, then generated 100 and 1,000 rules
    python benchmarks/bench_analyze.py --quick  smoke run: the bundled policies only
    python benchmarks/bench_analyze.py --only compressor-surge,tank-overfill    some of them

Rows:
  - analyze: the whole analysis as `scc analyze` runs it (every question, every example replayed through
    the compiled module). Target: at most 1 s for each bundled policy; at most 60 s for the generated
    ones, which run with a 60 s budget: questions left when it is spent are counted as unknown.
  - diff: the policy against a copy with the first number of its definitions and rules raised by one
    (a difference to find, where the number matters), same budget. Target as for analyze.
  - baseline: compiling the same policy with scc (parse, check, lower, emit, assemble), same run.
  - "unknown" is what the solver did not settle (time-out or budget): never counted as proven.
Times are wall-clock seconds of one run each (the analysis is deterministic but its time limits are
not: on a loaded machine, questions near the per-question limit may turn unknown); the machine's
cores and load average are printed with the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import z3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import print_table  # noqa: E402
from workloads import many_rule_policy  # noqa: E402

from scc.analysis.checks import analyze  # noqa: E402
from scc.analysis.diff import diff  # noqa: E402
from scc.analysis.replay import CompiledModule, Replayer  # noqa: E402
from scc.analysis.source import load  # noqa: E402
from scc.compiler import compile_policy  # noqa: E402

BUNDLED = ("boiler-guard", "chemical-dosing-ratio", "compressor-surge", "conveyor-estop-interlock",
           "robot-cell-maintenance-access", "tank-overfill")
TIMEOUT = 10.0  # seconds per question (scc's default)
GENERATED_BUDGET = 60.0


def _mutated(document: dict) -> dict:
    """A copy with the first number in its definitions or rules (document order) raised by one."""
    out = copy.deepcopy(document)

    def bump(node: object) -> bool:
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) \
            if isinstance(node, list) else []
        for key, item in items:
            if isinstance(item, int | float) and not isinstance(item, bool):
                node[key] = item + 1
                return True
            if bump(item):
                return True
        return False

    bump({"let": out.get("let", {}), "rules": [r["when"] for r in out["rules"]]})
    return out


def measure(name: str, document: dict, budget: float | None) -> list[str]:
    source = json.dumps(document).encode()
    started = time.perf_counter()
    compile_policy(source)
    compile_ms = (time.perf_counter() - started) * 1000
    policy = load(name, source).policy
    module = CompiledModule()
    started = time.perf_counter()
    analysis = analyze(policy, Replayer(policy.document, [module]), TIMEOUT, budget=budget)
    analyze_s = time.perf_counter() - started
    unknown = sum(f.code == "SCC-A006" for f in analysis.findings)
    other = load(name, json.dumps(_mutated(document)).encode()).policy
    started = time.perf_counter()
    result = diff(policy, other, Replayer(policy.document, [module]), Replayer(other.document, [module]),
                  TIMEOUT, budget=budget)
    diff_s = time.perf_counter() - started
    found = ("equivalent" if result.equivalent else
             f"{len(result.differences)} pair(s)" if result.differences else "unknown")
    target = 1.0 if budget is None else GENERATED_BUDGET
    met = "yes" if max(analyze_s, diff_s) <= target else "NO"
    return [name, f"{len(document['rules']):,}", f"{compile_ms:,.1f}", f"{analyze_s:.2f}",
            f"{analyze_s * 1000 / compile_ms:,.0f}x", f"{analysis.questions}", f"{unknown}",
            f"{diff_s:.2f}", found, f"{len(result.unknown)}", f"<= {target:g} s", met]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the bundled policies only")
    parser.add_argument("--only", metavar="NAME[,NAME]", help="these bundled policies only (implies --quick)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BUNDLED
    unknown = set(names) - set(BUNDLED)
    if unknown:
        parser.error(f"not a bundled policy: {', '.join(sorted(unknown))} (one of {', '.join(BUNDLED)})")
    load1, load5, _ = os.getloadavg()
    print(f"scc analyze / scc diff: z3 {z3.get_version_string()}, {os.cpu_count()} cores, load average "
          f"{load1:.2f} / {load5:.2f} (1 / 5 min) at start; {TIMEOUT:g} s per question")
    rows = [measure(name, json.loads((ROOT / "policies" / f"{name}.json").read_text()), None)
            for name in names]
    if not (args.quick or args.only):
        for n in (100, 1000):
            rows.append(measure(f"generated-{n}", many_rule_policy(n), GENERATED_BUDGET))
    print_table(["policy", "rules", "compile ms (baseline)", "analyze s", "vs compile", "questions",
                 "unknown", "diff s", "diff found", "diff unknown", "target", "met"],
                rows, right={1, 2, 3, 4, 5, 6, 7, 9})
    load1, load5, _ = os.getloadavg()
    print(f"load average at the end: {load1:.2f} / {load5:.2f}; generated policies: benchmarks/workloads.py "
          f"(most-severe), budget {GENERATED_BUDGET:g} s each for analyze and for diff")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
