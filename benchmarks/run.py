"""Sopcos Edge performance figures, each beside its baselines and target, measured in one run.

    python benchmarks/run.py            full run (a few minutes on a small machine)
    python benchmarks/run.py --quick    smoke run: same table, far fewer samples (figures are rough)

Measured, for a generated 10-rule/5-input policy and a generated 1,000-rule policy (benchmarks/
workloads.py; both `most-severe`, so every rule runs on every decision):
  - compile time (scc's compiler API; Cedar's baseline is parsing its policy set);
  - in-process decision latency p50/p99 and decisions/s: synapse's Evaluator (the wasm module),
    the plain-Python reference interpreter (tests/reference.py), and cedarpy with a pre-parsed
    policy set and entities (an equivalent Cedar translation);
  - replay throughput of `synapse eval MODULE --input FILE.jsonl` as a subprocess (process start-up
    included), beside the same replay done in-process by the Python interpreter and by cedarpy.
Every implementation's verdicts are compared on the sampled inputs first: a benchmark of
implementations that disagree would measure nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import cedarpy  # noqa: E402
from _table import gc_paused, p50_p99, print_table, seconds_per_call  # noqa: E402
from workloads import cedar_verdict, inputs, many_rule_policy, ten_rule_policy, to_cedar  # noqa: E402

from scc.compiler import compile_policy  # noqa: E402
from synapse.evaluate import Evaluator  # noqa: E402
from tests.reference import evaluate as reference_evaluate  # noqa: E402

CEDAR_REQUEST = {"principal": 'User::"plant-operator"', "action": 'Action::"evaluate"',
                 "resource": 'Policy::"bench"'}


@dataclass(frozen=True)
class Sizes:
    compile_repeats: int
    samples_10: int
    samples_1000: int
    cedar_samples_1000: int
    replay_lines: int


FULL = Sizes(compile_repeats=3, samples_10=20_000, samples_1000=5_000, cedar_samples_1000=300,
             replay_lines=100_000)
QUICK = Sizes(compile_repeats=1, samples_10=300, samples_1000=100, cedar_samples_1000=20, replay_lines=1_000)


@dataclass(frozen=True)
class Latency:
    p50_us: float
    p99_us: float
    per_s: float


def latency(decide: Callable[[dict, dict], object], cases: list[tuple[dict, dict]], n: int) -> Latency:
    """Time `n` decisions one by one, cycling through `cases`; GC off while timing (as timeit does)."""
    for tel, ctx in cases[:50]:  # warm-up
        decide(tel, ctx)
    timings = [0] * n
    clock = time.perf_counter_ns
    count = len(cases)
    with gc_paused():
        start = clock()
        for i in range(n):
            tel, ctx = cases[i % count]
            t0 = clock()
            decide(tel, ctx)
            timings[i] = clock() - t0
        total = clock() - start
    p50, p99 = p50_p99(timings)
    return Latency(p50 / 1e3, p99 / 1e3, n / (total / 1e9))


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    return min(seconds_per_call(fn, 1) for _ in range(repeats))


class Contestants:
    """One policy in the three implementations, ready to decide."""

    def __init__(self, policy: dict, sizes: Sizes) -> None:
        self.policy = policy
        source = json.dumps(policy).encode()
        self.compile_s = best_seconds(lambda: compile_policy(source), sizes.compile_repeats)
        self.wasm = compile_policy(source).wasm
        self.evaluator = Evaluator.from_wasm(self.wasm)
        cedar_text = to_cedar(policy)
        self.cedar_parse_s = best_seconds(lambda: cedarpy.PolicySet.from_str(cedar_text),
                                          sizes.compile_repeats)
        self.cedar_policies = cedarpy.PolicySet.from_str(cedar_text)
        self.cedar_entities = cedarpy.Entities.from_json_str("[]")

    def sopcos(self, tel: dict, ctx: dict) -> str:
        return self.evaluator.evaluate(tel, ctx).verdict.name

    def python(self, tel: dict, ctx: dict) -> str:
        return reference_evaluate(self.policy, tel, ctx).verdict

    def cedar(self, tel: dict, ctx: dict) -> str:
        result = cedarpy.is_authorized({**CEDAR_REQUEST, "context": {**tel, **ctx}},
                                       self.cedar_policies, self.cedar_entities)
        return cedar_verdict(self.policy, result)

    def disagreements(self, cases: list[tuple[dict, dict]]) -> int:
        return sum(len({self.sopcos(t, c), self.python(t, c), self.cedar(t, c)}) != 1 for t, c in cases)


def replay_synapse(wasm: bytes, lines: list[str]) -> float:
    """Decisions/s of `python -m synapse eval MODULE --input FILE`, start-up included."""
    with tempfile.TemporaryDirectory(prefix="sopcos-bench-") as tmp:
        module, feed, out = Path(tmp) / "policy.wasm", Path(tmp) / "feed.jsonl", Path(tmp) / "out.jsonl"
        module.write_bytes(wasm)
        feed.write_text("".join(lines))
        with out.open("wb") as sink:
            t0 = time.perf_counter()
            command = [sys.executable, "-m", "synapse", "eval", str(module), "--input", str(feed)]
            done = subprocess.run(command, stdout=sink, stderr=subprocess.PIPE, text=True, check=False,
                                  cwd=ROOT)
            seconds = time.perf_counter() - t0
        if done.returncode != 0:
            raise SystemExit(f"synapse eval failed (exit {done.returncode}): {done.stderr.strip()}")
        answered = sum(1 for _ in out.open())
    if answered != len(lines):
        raise SystemExit(f"synapse eval answered {answered} of {len(lines)} lines")
    return len(lines) / seconds


def replay_in_process(decide: Callable[[dict, dict], str], lines: list[str]) -> float:
    t0 = time.perf_counter()
    for line in lines:
        request = json.loads(line)
        json.dumps({"verdict": decide(request["telemetry"], request["context"])})
    return len(lines) / (time.perf_counter() - t0)


# ---------------------------------------------------------------------------------------------- table


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:,.1f} ms"
    if unit == "us":
        return f"{value:,.1f} µs"
    return f"{value:,.0f}/s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run with few samples (rough figures)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL

    cases = inputs(1_000)
    small = Contestants(ten_rule_policy(), sizes)
    large = Contestants(many_rule_policy(1_000), sizes)
    checked = cases[: 50 if args.quick else 300]
    disagreements = small.disagreements(checked) + large.disagreements(checked[:30])

    s10 = latency(small.sopcos, cases, sizes.samples_10)
    p10 = latency(small.python, cases, sizes.samples_10)
    c10 = latency(small.cedar, cases, sizes.samples_10)
    s1k = latency(large.sopcos, cases, sizes.samples_1000)
    p1k = latency(large.python, cases, sizes.samples_1000)
    c1k = latency(large.cedar, cases, sizes.cedar_samples_1000)

    lines = [json.dumps({"telemetry": t, "context": c}) + "\n"
             for t, c in (cases * (sizes.replay_lines // len(cases) + 1))[: sizes.replay_lines]]
    replay_s = replay_synapse(small.wasm, lines)
    replay_p = replay_in_process(small.python, lines[: max(1, len(lines) // 10)])
    replay_c = replay_in_process(small.cedar, lines[: max(1, len(lines) // 20)])

    speedup = c10.p50_us / s10.p50_us

    def trio(metric: str, figures: tuple[Latency, Latency, Latency], field: str, target: str = "",
             met: bool | None = None) -> tuple:
        unit = "/s" if field == "per_s" else "us"
        return (metric, *(fmt(getattr(f, field), unit) for f in figures), target, met)

    rows = [  # metric, Sopcos, plain Python, cedarpy, target, met (None: no target)
        ("compile, 10 rules", fmt(small.compile_s, "ms"), "-", fmt(small.cedar_parse_s, "ms") + " (parse)",
         "", None),
        ("compile, 1,000 rules", fmt(large.compile_s, "ms"), "-", fmt(large.cedar_parse_s, "ms") + " (parse)",
         "<= 2 s", large.compile_s <= 2.0),
        trio("10 rules/5 inputs p50", (s10, p10, c10), "p50_us", "<= 15 µs", s10.p50_us <= 15.0),
        ("  speed-up over cedarpy (p50)", f"{speedup:.1f}x", "", "", ">= 3x", speedup >= 3.0),
        trio("10 rules/5 inputs p99", (s10, p10, c10), "p99_us"),
        trio("10 rules/5 inputs throughput", (s10, p10, c10), "per_s"),
        trio("1,000 rules p50", (s1k, p1k, c1k), "p50_us", "<= 50 µs", s1k.p50_us <= 50.0),
        trio("1,000 rules p99", (s1k, p1k, c1k), "p99_us"),
        trio("1,000 rules throughput", (s1k, p1k, c1k), "per_s"),
        (f"replay {sizes.replay_lines:,} lines (10 rules)", fmt(replay_s, "/s") + " (eval --input)",
         fmt(replay_p, "/s") + " (in-proc)", fmt(replay_c, "/s") + " (in-proc)", ">= 30,000/s",
         replay_s >= 30_000),
    ]
    print(f"Sopcos Edge benchmarks{' (--quick: rough figures)' if args.quick else ''}; "
          f"Python {sys.version.split()[0]}, wasmtime {version('wasmtime')}, cedarpy {version('cedarpy')}")
    print_table(("metric", "Sopcos (wasm)", "plain Python", "cedarpy", "target", ""),
                [(m, s, p, c, t, "" if ok is None else ("met" if ok else "MISSED"))
                 for m, s, p, c, t, ok in rows])
    print(f"verdicts compared on {len(checked)} + 30 inputs: "
          f"{'all three implementations agree' if not disagreements else f'{disagreements} DISAGREEMENTS'}")
    print(f"samples: {sizes.samples_10:,} decisions (10 rules), {sizes.samples_1000:,} (1,000 rules; cedarpy "
          f"{sizes.cedar_samples_1000:,}), each timed alone with perf_counter_ns, GC off while timing")
    return 1 if disagreements else 0


if __name__ == "__main__":
    raise SystemExit(main())
