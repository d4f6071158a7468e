"""What the trace behind explanations costs (docs/abi.md, "Trace"), measured in one run.

    python benchmarks/bench_explain.py            full run
    python benchmarks/bench_explain.py --quick    smoke run: same table, far fewer samples

For the benchmark's 10- and 1,000-rule policies (benchmarks/workloads.py, most-severe: every rule runs)
and the 4,096-rule one, the same program is emitted twice: as scc emits it (with the trace code) and
without it (the baseline: the module an scc without explain would emit). Both decide through the same
runtime in this process, sample by sample in turn, so that the load of other work falls on both alike:
  - Evaluator.evaluate p50/p99 on each module: what the trace code costs a decision nobody asked to
    explain (a flag test per rule tried and per definition computed);
  - Evaluator.explain p50/p99 on the traced module: what asking costs (the trace written, read back,
    checked against the result block and put into words);
  - the module's size and Evaluator.from_wasm time (best of 3): what the trace code costs loading.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _table import gc_paused, p50_p99, print_table  # noqa: E402
from workloads import inputs, many_rule_policy, ten_rule_policy  # noqa: E402

from scc import COMPILER_ID  # noqa: E402
from scc.compiler import compile_policy  # noqa: E402
from scc.emit import assemble, emit_wat  # noqa: E402
from synapse.evaluate import Evaluator  # noqa: E402


def modules(policy: dict) -> tuple[bytes, bytes]:
    """(as scc emits it, the same program without the trace)."""
    result = compile_policy(json.dumps(policy).encode())
    untraced = assemble(emit_wat(result.program, f"{policy['policy']} without trace, {COMPILER_ID}"),
                        result.meta_json)
    return result.wasm, untraced


def load_ms(wasm: bytes) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        Evaluator.from_wasm(wasm)
        best = min(best, time.perf_counter() - start)
    return best * 1000


def latencies(traced: bytes, untraced: bytes, n: int) -> dict[str, list[float]]:
    """µs per call of evaluate on both modules (taken in turn, on the same inputs), then of explain on the
    traced one (a loop of its own: what it allocates must not fall on the evaluations it would precede)."""
    calls = {"evaluate, no trace": Evaluator.from_wasm(untraced).evaluate,
             "evaluate, traced": Evaluator.from_wasm(traced).evaluate,
             "explain, traced": Evaluator.from_wasm(traced).explain}
    cases = inputs(200)
    # The same verdicts first: a benchmark of paths that disagree measures nothing.
    verdicts = {name: [decide(t, c).verdict for t, c in cases[:50]] for name, decide in calls.items()}
    assert len({tuple(v) for v in verdicts.values()}) == 1, "the modules disagree"
    samples: dict[str, list[float]] = {name: [] for name in calls}
    pair = list(calls.items())[:2]
    with gc_paused():
        for i in range(n):
            telemetry, context = cases[i % len(cases)]
            for name, decide in pair if i % 2 else reversed(pair):
                start = time.perf_counter_ns()
                decide(telemetry, context)
                samples[name].append((time.perf_counter_ns() - start) / 1000)
    explain = calls["explain, traced"]
    with gc_paused():
        for i in range(n):
            telemetry, context = cases[i % len(cases)]
            start = time.perf_counter_ns()
            explain(telemetry, context)
            samples["explain, traced"].append((time.perf_counter_ns() - start) / 1000)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="far fewer samples (rough figures)")
    args = parser.parse_args()
    n = 300 if args.quick else 5000
    load = os.getloadavg()
    print(f"Sopcos explain: the trace's cost{' (--quick: rough figures)' if args.quick else ''}")
    print(f"machine: {os.cpu_count()} cores, load average {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f} "
          "(1/5/15 min) at the start; other work on the machine shows in every figure, ratios less")
    rows = []
    for label, policy in (("10 rules", ten_rule_policy()), ("1,000 rules", many_rule_policy(1000))):
        traced, untraced = modules(policy)
        samples = latencies(traced, untraced, n if label == "10 rules" else n // 2)
        base_p50, base_p99 = p50_p99(samples["evaluate, no trace"])
        for name, values in samples.items():
            p50, p99 = p50_p99(values)
            rows.append([label, name, f"{p50:,.1f} µs", f"{p99:,.1f} µs", f"{p50 / base_p50:.2f}x",
                         f"{p99 / base_p99:.2f}x"])
    print_table(["policy", "call", "p50", "p99", "p50 ratio", "p99 ratio"], rows, right={2, 3, 4, 5})
    print(f"samples: {n} (10 rules), {n // 2} (1,000 rules) per call, the two evaluates in turn, explain "
          "after them; ratios against evaluate on the module without trace code")
    print()
    rows = []
    for rules in (1000, 4096):
        traced, untraced = modules(many_rule_policy(rules))
        base, with_trace = load_ms(untraced), load_ms(traced)
        rows.append([f"{rules:,} rules", f"{len(untraced):,} B", f"{len(traced):,} B",
                     f"{len(traced) / len(untraced):.2f}x", f"{base:,.0f} ms", f"{with_trace:,.0f} ms",
                     f"{with_trace / base:.2f}x"])
    print_table(["policy", "module, no trace", "traced", "ratio", "load, no trace", "traced", "ratio"], rows,
                right={1, 2, 3, 4, 5, 6})
    print("load: Evaluator.from_wasm (check + compile to machine code + first instance), best of 3")


if __name__ == "__main__":
    main()
