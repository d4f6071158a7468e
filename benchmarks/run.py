"""Sopcos Edge performance figures, each beside its baselines and target, measured in one run.

    python benchmarks/run.py            full run (several minutes on a small machine)
    python benchmarks/run.py --quick    smoke run: same tables, far fewer samples (figures are rough)

Measured, for a generated 10-rule/5-input policy and generated N-rule policies (benchmarks/workloads.py;
all `most-severe`, so every rule runs on every decision), with every engine in this process:
  - compile time (scc's compiler API; the peers' baseline is loading their policy text);
  - in-process decision latency p50/p99 and decisions/s: synapse's Evaluator (the wasm module),
    the plain-Python reference interpreter (tests/reference.py), and the in-process peers, each with its
    policy loaded once: cedarpy (an equivalent Cedar translation), regorus (hobofan-regorus, Rust) and
    OPA's Go engine (opa-golib-python-bindings), both on an equivalent Rego module with the reading
    passed as the input document; a peer that is not installed is reported so, with how to install it;
  - replay throughput of `synapse eval MODULE --input FILE.jsonl` as a subprocess (process start-up
    included), beside the same replay done in-process by the Python interpreter and by cedarpy;
  - scaling, 10 to 4,096 rules: compile, load, p50/p99 and the evaluating process's peak RSS, that
    last one measured in a separate process per engine and size (`--rss-of`: it loads the policy and
    decides 200 readings, nothing else);
  - start-up: the wall time of each command line's trivial run, beside the interpreter's own;
  - with --floor only: the floor of a decision under the fresh-instance rule (docs/abi.md, "Fresh
    state"): a new instance from the InstancePre through the C API, a call that fetches no input and
    the result block read, beside the whole decision and regorus, in the same run.
Every implementation's verdicts are compared on the sampled inputs first: a benchmark of
implementations that disagree would measure nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from _table import gc_paused, p50_p99, print_table, seconds_per_call  # noqa: E402
from workloads import (  # noqa: E402
    cedar_verdict,
    inputs,
    many_rule_policy,
    rego_verdict,
    ten_rule_policy,
    to_cedar,
    to_rego,
)

CEDAR_REQUEST = {"principal": 'User::"plant-operator"', "action": 'Action::"evaluate"',
                 "resource": 'Policy::"bench"'}
SCALING_SIZES = (10, 100, 1_000, 4_096)
RSS_DECISIONS = 200


@dataclass(frozen=True)
class Sizes:
    compile_repeats: int
    samples_10: int
    samples_1000: int
    peer_samples_1000: int
    replay_lines: int
    scaling_samples: dict[int, int]  # Sopcos decisions timed per size
    scaling_peer_samples: dict[int, int]  # each peer's
    startup_runs: int


FULL = Sizes(compile_repeats=3, samples_10=20_000, samples_1000=5_000, peer_samples_1000=300,
             replay_lines=100_000, scaling_samples={10: 10_000, 100: 5_000, 1_000: 3_000, 4_096: 1_000},
             scaling_peer_samples={10: 3_000, 100: 1_000, 1_000: 150, 4_096: 40}, startup_runs=20)
QUICK = Sizes(compile_repeats=1, samples_10=300, samples_1000=100, peer_samples_1000=20, replay_lines=1_000,
              scaling_samples={10: 200, 100: 100, 1_000: 50, 4_096: 30},
              scaling_peer_samples={10: 50, 100: 20, 1_000: 5, 4_096: 3}, startup_runs=2)


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


# ------------------------------------------------------------------------------------------------ peers


@dataclass(frozen=True)
class PeerKind:
    """An in-process peer engine: how to load a policy into it and ask it for a verdict."""

    name: str
    distribution: str  # the PyPI name
    install: str  # how to install it, for the table when it is missing
    load: Callable[[dict], Callable[[dict, dict], str]]  # policy -> decide(telemetry, context) -> verdict


def _cedar(policy: dict) -> Callable[[dict, dict], str]:
    import cedarpy

    policies = cedarpy.PolicySet.from_str(to_cedar(policy))
    entities = cedarpy.Entities.from_json_str("[]")
    is_authorized = cedarpy.is_authorized

    def decide(tel: dict, ctx: dict) -> str:
        return cedar_verdict(policy, is_authorized({**CEDAR_REQUEST, "context": {**tel, **ctx}}, policies,
                                                   entities))

    return decide


def _regorus(policy: dict) -> Callable[[dict, dict], str]:
    import hobofan_regorus

    engine = hobofan_regorus.Engine()
    engine.add_policy("bench.rego", to_rego(policy))

    def decide(tel: dict, ctx: dict) -> str:
        engine.set_input_json(json.dumps({**tel, **ctx}))
        return rego_verdict(policy, engine.eval_rule("data.bench.held"))

    return decide


def _opa(policy: dict) -> Callable[[dict, dict], str]:
    from opa_bindings.engine import OpaEngine

    engine = OpaEngine()
    engine.add_policy("bench.rego", to_rego(policy))

    def decide(tel: dict, ctx: dict) -> str:
        return rego_verdict(policy, engine.eval_document("bench.held", {**tel, **ctx}))

    return decide


PEERS = (
    PeerKind("cedarpy", "cedarpy", "pip install cedarpy", _cedar),
    PeerKind("regorus", "hobofan-regorus", "pip install hobofan-regorus", _regorus),
    PeerKind("OPA (Go)", "opa-golib-python-bindings",
             "pip install --ignore-requires-python opa-golib-python-bindings", _opa),
)


def peer_status(kind: PeerKind) -> str | None:
    """None when the peer can run here, else why not (shown in the tables instead of figures)."""
    try:
        kind.load(ten_rule_policy())
    except Exception as exc:  # ImportError, or a native library that does not load
        return f"not installable here ({type(exc).__name__}: {str(exc)[:60]}); {kind.install}"
    return None


def peer_label(kind: PeerKind) -> str:
    try:
        return f"{kind.name} {version(kind.distribution)}"
    except PackageNotFoundError:
        return f"{kind.name} (not installed)"


# -------------------------------------------------------------------------------- the main comparison


class Contestants:
    """One policy in every implementation that runs here, ready to decide."""

    def __init__(self, policy: dict, sizes: Sizes, peers: dict[str, PeerKind]) -> None:
        from scc.compiler import compile_policy
        from synapse.evaluate import Evaluator

        self.policy = policy
        source = json.dumps(policy).encode()
        self.compile_s = best_seconds(lambda: compile_policy(source), sizes.compile_repeats)
        self.wasm = compile_policy(source).wasm
        t0 = time.perf_counter()
        self.evaluator = Evaluator.from_wasm(self.wasm)
        self.load_s = time.perf_counter() - t0
        self.peer_load_s: dict[str, float] = {}
        self.peers: dict[str, Callable[[dict, dict], str]] = {}
        for name, kind in peers.items():
            t0 = time.perf_counter()
            self.peers[name] = kind.load(policy)
            self.peer_load_s[name] = time.perf_counter() - t0

    def sopcos(self, tel: dict, ctx: dict) -> str:
        return self.evaluator.evaluate(tel, ctx).verdict.name

    def python(self, tel: dict, ctx: dict) -> str:
        from tests.reference import evaluate as reference_evaluate

        return reference_evaluate(self.policy, tel, ctx).verdict

    def disagreements(self, cases: list[tuple[dict, dict]], with_python: bool = True) -> int:
        deciders = [self.sopcos, *self.peers.values(), *([self.python] if with_python else [])]
        return sum(len({decide(t, c) for decide in deciders}) != 1 for t, c in cases)


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


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value * 1e3:,.1f} ms"
    if unit == "us":
        return f"{value:,.1f} µs"
    if unit == "MiB":
        return f"{value:,.0f} MiB"
    return f"{value:,.0f}/s"


def mark(met: bool | None) -> str:
    return "" if met is None else ("met" if met else "MISSED")


def fastest(latencies: dict[str, Latency]) -> tuple[str, Latency] | None:
    return min(latencies.items(), key=lambda item: item[1].p50_us) if latencies else None


def main_table(args: argparse.Namespace, sizes: Sizes, peers: dict[str, PeerKind], missing: dict[str, str],
               cases: list[tuple[dict, dict]]) -> int:
    small = Contestants(ten_rule_policy(), sizes, peers)
    large = Contestants(many_rule_policy(1_000), sizes, peers)
    checked = cases[: 50 if args.quick else 300]
    disagreements = small.disagreements(checked) + large.disagreements(checked[:30])

    s10 = latency(small.sopcos, cases, sizes.samples_10)
    p10 = latency(small.python, cases, sizes.samples_10)
    s1k = latency(large.sopcos, cases, sizes.samples_1000)
    p1k = latency(large.python, cases, sizes.samples_1000)
    peer10 = {n: latency(d, cases, sizes.samples_10 // 4) for n, d in small.peers.items()}
    peer1k = {n: latency(d, cases, sizes.peer_samples_1000) for n, d in large.peers.items()}

    lines = [json.dumps({"telemetry": t, "context": c}) + "\n"
             for t, c in (cases * (sizes.replay_lines // len(cases) + 1))[: sizes.replay_lines]]
    replay_s = replay_synapse(small.wasm, lines)
    replay_p = replay_in_process(small.python, lines[: max(1, len(lines) // 10)])
    peer_lines = lines[: max(1, len(lines) // 20)]
    replay_peers = {n: replay_in_process(d, peer_lines) for n, d in small.peers.items()}

    names = [kind.name for kind in PEERS]

    def peer_cells(figures: dict[str, Any], render: Callable[[Any], str]) -> list[str]:
        return [render(figures[n]) if n in figures else "not installed" for n in names]

    def row(metric: str, sopcos: str, python: str, figures: dict[str, Any], render: Callable[[Any], str],
            target: str = "", met: bool | None = None) -> tuple:
        return (metric, sopcos, python, *peer_cells(figures, render), target, mark(met))

    def ratio(metric: str, value: float | None, peer: str, target: str, floor: float) -> tuple:
        shown = "-" if value is None else f"{value:.1f}x{peer}"
        met = None if value is None else value >= floor
        return (metric, shown, "", *[""] * len(names), target, mark(met))

    def lat(field: str) -> Callable[[Latency], str]:
        return lambda f: fmt(getattr(f, field), "/s" if field == "per_s" else "us")

    cedar_up = peer10["cedarpy"].p50_us / s10.p50_us if "cedarpy" in peer10 else None
    best10, best1k = fastest(peer10), fastest(peer1k)
    up10 = best10[1].p50_us / s10.p50_us if best10 else None
    up1k = best1k[1].p50_us / s1k.p50_us if best1k else None
    parse = {n: f"{small.peer_load_s[n] * 1e3:,.1f} ms (load)" for n in small.peers}
    parse_1k = {n: f"{large.peer_load_s[n] * 1e3:,.1f} ms (load)" for n in large.peers}
    rows = [
        row("compile, 10 rules", fmt(small.compile_s, "ms"), "-", parse, str),
        row("compile, 1,000 rules", fmt(large.compile_s, "ms"), "-", parse_1k, str, "<= 2 s",
            large.compile_s <= 2.0),
        row("10 rules/5 inputs p50", fmt(s10.p50_us, "us"), fmt(p10.p50_us, "us"), peer10, lat("p50_us"),
            "<= 15 µs", s10.p50_us <= 15.0),
        ratio("  speed-up over cedarpy (p50)", cedar_up, "", ">= 3x", 3.0),
        ratio("  over the fastest peer (p50)", up10, f" ({best10[0]})" if best10 else "", ">= 5x", 5.0),
        row("10 rules/5 inputs p99", fmt(s10.p99_us, "us"), fmt(p10.p99_us, "us"), peer10, lat("p99_us")),
        row("10 rules/5 inputs throughput", fmt(s10.per_s, "/s"), fmt(p10.per_s, "/s"), peer10, lat("per_s")),
        row("1,000 rules p50", fmt(s1k.p50_us, "us"), fmt(p1k.p50_us, "us"), peer1k, lat("p50_us"),
            "<= 50 µs", s1k.p50_us <= 50.0),
        ratio("  over the fastest peer (p50)", up1k, f" ({best1k[0]})" if best1k else "", ">= 50x", 50.0),
        row("1,000 rules p99", fmt(s1k.p99_us, "us"), fmt(p1k.p99_us, "us"), peer1k, lat("p99_us")),
        row("1,000 rules throughput", fmt(s1k.per_s, "/s"), fmt(p1k.per_s, "/s"), peer1k, lat("per_s")),
        row(f"replay {sizes.replay_lines:,} lines (10 rules)", fmt(replay_s, "/s") + " (eval --input)",
            fmt(replay_p, "/s") + " (in-proc)", replay_peers, lambda v: fmt(v, "/s") + " (in-proc)",
            ">= 30,000/s", replay_s >= 30_000),
    ]
    print_table(("metric", "Sopcos (wasm)", "plain Python", *names, "target", ""), rows)
    agree = "all implementations agree" if not disagreements else f"{disagreements} DISAGREEMENTS"
    print(f"verdicts compared on {len(checked)} + 30 inputs (Sopcos, plain Python and every peer that "
          f"runs): {agree}")
    for name, why in missing.items():
        print(f"{name}: {why}")
    print(f"samples: {sizes.samples_10:,} decisions (10 rules; each peer {sizes.samples_10 // 4:,}), "
          f"{sizes.samples_1000:,} (1,000 rules; each peer {sizes.peer_samples_1000:,}), each timed alone "
          "with perf_counter_ns, GC off while timing")
    return disagreements


# ------------------------------------------------------------------------------------------------ scaling


def rss_of(engine: str, policy_path: Path, wasm_path: Path | None) -> dict[str, float]:
    """Peak and final RSS of a fresh process that loads the policy into `engine` and decides
    RSS_DECISIONS readings (`run.py --rss-of`, below)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-of", engine, str(policy_path)]
    if wasm_path is not None:
        command.append(str(wasm_path))
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"RSS measurement of {engine} failed: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _rss_child(engine: str, policy_path: str, wasm_path: str | None) -> int:
    policy = json.loads(Path(policy_path).read_text())
    if engine == "Sopcos":
        from synapse.evaluate import Evaluator

        evaluator = Evaluator.from_wasm(Path(wasm_path).read_bytes())

        def decide(tel: dict, ctx: dict) -> object:
            return evaluator.evaluate(tel, ctx)
    else:
        decide = next(kind for kind in PEERS if kind.name == engine).load(policy)
    for tel, ctx in inputs(RSS_DECISIONS):
        decide(tel, ctx)
    status = Path("/proc/self/status").read_text()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
           if line.startswith(("VmRSS:", "VmHWM:"))}
    print(json.dumps({"rss_mib": kib["VmRSS"] / 1024, "peak_mib": kib["VmHWM"] / 1024}))
    return 0


def scaling_table(sizes: Sizes, peers: dict[str, PeerKind], missing: dict[str, str],
                  cases: list[tuple[dict, dict]]) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sopcos-scaling-") as tmp:
        for n in SCALING_SIZES:
            policy = many_rule_policy(n)
            engines = Contestants(policy, Sizes(**{**sizes.__dict__, "compile_repeats": 1}), peers)
            policy_path, wasm_path = Path(tmp) / f"p{n}.json", Path(tmp) / f"p{n}.wasm"
            policy_path.write_text(json.dumps(policy))
            wasm_path.write_bytes(engines.wasm)
            disagree = engines.disagreements(cases[:20], with_python=False)
            ours = latency(engines.sopcos, cases, sizes.scaling_samples[n])
            rss = rss_of("Sopcos", policy_path, wasm_path)
            peer_figures = {name: (engines.peer_load_s[name],
                                   latency(decide, cases, sizes.scaling_peer_samples[n]),
                                   rss_of(name, policy_path, None))
                            for name, decide in engines.peers.items()}
            best = fastest({name: f[1] for name, f in peer_figures.items()})
            up = f"{best[1].p50_us / ours.p50_us:,.1f}x ({best[0]})" if best else "-"
            if disagree:
                up += f"; {disagree} DISAGREEMENTS"
            rows.append((f"{n:,}", "Sopcos (wasm)", fmt(engines.compile_s, "ms"), fmt(engines.load_s, "ms"),
                         f"{engines.load_s / n * 1e6:,.0f} µs", fmt(ours.p50_us, "us"),
                         fmt(ours.p99_us, "us"), fmt(rss["peak_mib"], "MiB"), up))
            for kind in PEERS:
                if kind.name in missing:
                    rows.append((f"{n:,}", kind.name, "not installed", "", "", "", "", "", ""))
                    continue
                load_s, lat, peer_rss = peer_figures[kind.name]
                rows.append((f"{n:,}", kind.name, "-", fmt(load_s, "ms"), f"{load_s / n * 1e6:,.0f} µs",
                             fmt(lat.p50_us, "us"), fmt(lat.p99_us, "us"), fmt(peer_rss["peak_mib"], "MiB"),
                             ""))
    print()
    print("Scaling: generated policies of N rules (most-severe: every rule runs), every engine in this "
          "process")
    print_table(("rules", "engine", "compile", "load", "load/rule", "p50", "p99", "peak RSS",
                 "Sopcos p50 speed-up over the fastest peer"), rows, right={2, 3, 4, 5, 6, 7})
    print(f"load: Sopcos Evaluator.from_wasm (check + compile to machine code + first instance); peers: "
          f"loading the policy text. peak RSS: a separate process per engine and size that loads the policy "
          f"and decides {RSS_DECISIONS} readings (Sopcos loads the compiled module; it does not compile). "
          f"targets: 4,096 rules compile + load <= 1.5 s, Sopcos peak RSS <= 120 MiB, load per rule "
          f"roughly constant")


# ------------------------------------------------------------------------------------------------ start-up


def startup_table(sizes: Sizes) -> None:
    """Each command line's wall time, median of `startup_runs`, with the bytecode cache on as in any
    installation (pip compiles .pyc files; a checkout writes __pycache__). A process environment
    with PYTHONDONTWRITEBYTECODE=1 would compile every project module from source on every run: the
    cache goes to a temporary directory (PYTHONPYCACHEPREFIX), filled by one untimed run, and one row
    shows `synapse eval` without it."""
    from scc.compiler import compile_policy

    with tempfile.TemporaryDirectory(prefix="sopcos-startup-") as tmp:
        ten = Path(tmp) / "ten.json"
        ten.write_text(json.dumps(ten_rule_policy()))
        module = Path(tmp) / "ten.wasm"
        module.write_bytes(compile_policy(ten.read_bytes()).wasm)
        reading = json.dumps({"pressure_bar": 50, "temp_c": 100, "flow_m3h": 10, "estop": False})
        python = [sys.executable]
        context = '{"mode": "AUTO"}'
        evaluate = [*python, "-m", "synapse", "eval", str(module), "--telemetry", reading, "--context",
                    context]
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        commands = [
            ("python -c pass (the interpreter alone)", [*python, "-c", "pass"], None, cached),
            ("scc check boiler-guard.json", [*python, "-m", "scc", "check", "policies/boiler-guard.json"],
             0.150, cached),
            ("scc compile (10 rules) -o OUT.wasm", [*python, "-m", "scc", "compile", str(ten), "-o",
                                                    str(Path(tmp) / "out.wasm")], 0.200, cached),
            ("synapse eval OUT.wasm --telemetry ...", evaluate, 0.150, cached),
            ("  the same, no bytecode cache", evaluate, None, uncached),
            ("scc --help (every command loaded)", [*python, "-m", "scc", "--help"], None, cached),
            ("synapse --help (every command loaded)", [*python, "-m", "synapse", "--help"], None, cached),
            ("axon --help (every command loaded)", [*python, "-m", "axon", "--help"], None, cached),
        ]
        load_before = os.getloadavg()[0]
        rows = []
        for label, command, target, env in commands:
            subprocess.run(command, capture_output=True, cwd=ROOT, check=False, env=env)  # fills the cache
            walls = []
            for _ in range(sizes.startup_runs):
                t0 = time.perf_counter()
                done = subprocess.run(command, capture_output=True, cwd=ROOT, check=False, env=env)
                walls.append(time.perf_counter() - t0)
                if done.returncode != 0:
                    raise SystemExit(f"{label} failed: {done.stderr.decode()[-500:]}")
            median = statistics.median(walls)
            rows.append((label, fmt(min(walls), "ms"), fmt(median, "ms"),
                         "" if target is None else f"<= {target * 1e3:.0f} ms (median)",
                         "" if target is None else ("met" if median <= target else "MISSED")))
    print()
    print(f"Start-up: wall time of a trivial run of each command line, {sizes.startup_runs} runs each, "
          f"bytecode cache on unless said; 1-min load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")
    print_table(("command", "best", "median", "target", ""), rows, right={1, 2})


# ------------------------------------------------------------------------------------------------ floor


def floor_table(samples: int) -> None:
    """What a decision costs at least while every evaluation gets a new instance, beside regorus."""
    from workloads import _policy

    from scc.compiler import compile_policy
    from synapse.evaluate import _BLOCK, Evaluator

    cases = inputs(1_000)
    ten = Evaluator.from_wasm(compile_policy(json.dumps(ten_rule_policy()).encode()).wasm)
    # One rule whose condition is a constant: the module fetches none of its declared inputs.
    constant = _policy("floor", [{"id": "always", "when": True, "then": "ALLOW"}])
    bare = Evaluator.from_wasm(compile_policy(json.dumps(constant).encode()).wasm)
    instances, budget = bare._instances, bare._budget  # noqa: SLF001 (measuring the evaluator's parts)

    def instance_only(_tel: dict, _ctx: dict) -> None:
        bare._instantiate()  # noqa: SLF001 (the store every 16 instances, fuel, deadline, the instance)

    def instance_call_read(_tel: dict, _ctx: dict) -> tuple:
        bare._instantiate()  # noqa: SLF001
        instances.call(budget)
        return _BLOCK.unpack(instances.read(0, _BLOCK.size))

    if instance_call_read({}, {})[0] != 1:
        raise SystemExit("the constant policy's module did not answer ALLOW")
    rows: list[tuple[str, Latency]] = [
        ("new instance (C API, from the InstancePre; store every 16, fuel, deadline)",
         latency(instance_only, cases, samples)),
        ("  + call evaluate (no input fetched) + read the result block: the floor",
         latency(instance_call_read, cases, samples)),
        ("Evaluator.evaluate, module fetching no input (reading checked, Decision made)",
         latency(bare.evaluate, cases, samples)),
        ("Evaluator.evaluate, 10 rules fetching 5 inputs (benchmark policy)",
         latency(ten.evaluate, cases, samples)),
    ]
    regorus = next(kind for kind in PEERS if kind.name == "regorus")
    why = peer_status(regorus)
    peer = None if why else latency(regorus.load(ten_rule_policy()), cases, max(samples // 4, 1))
    if peer is not None:
        rows.append(("regorus, 10 rules (set_input_json + eval_rule)", peer))
    print()
    print(f"Floor of a decision under the fresh-instance rule, {samples:,} samples each (regorus "
          f"{max(samples // 4, 1):,}), in this process")
    print_table(("path", "p50", "p99", "regorus p50 / this p50"),
                [(label, fmt(lat.p50_us, "us"), fmt(lat.p99_us, "us"),
                  "" if peer is None else f"{peer.p50_us / lat.p50_us:.1f}x") for label, lat in rows],
                right={1, 2, 3})
    if peer is None:
        print(f"regorus: {why}")


# ------------------------------------------------------------------------------------------------ main


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} cores, load average {load} (1/5/15 min) at the start"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run with few samples (rough figures)")
    parser.add_argument("--floor", action="store_true",
                        help="only the floor of a decision under the fresh-instance rule, beside regorus")
    parser.add_argument("--rss-of", nargs="+", metavar="ARG", help=argparse.SUPPRESS)  # the RSS child
    args = parser.parse_args(argv)
    if args.rss_of:
        engine, policy_path, *wasm = args.rss_of
        return _rss_child(engine, policy_path, wasm[0] if wasm else None)
    sizes = QUICK if args.quick else FULL
    if args.floor:
        print(f"machine: {machine()}; other work on the machine shows in every figure, ratios less")
        floor_table(sizes.samples_10)
        return 0

    missing = {kind.name: why for kind in PEERS if (why := peer_status(kind)) is not None}
    peers = {kind.name: kind for kind in PEERS if kind.name not in missing}
    print(f"Sopcos Edge benchmarks{' (--quick: rough figures)' if args.quick else ''}; "
          f"Python {sys.version.split()[0]}, wasmtime {version('wasmtime')}, "
          + ", ".join(peer_label(kind) for kind in PEERS))
    print(f"machine: {machine()}; other work on the machine shows in every figure, ratios less")
    cases = inputs(1_000)
    disagreements = main_table(args, sizes, peers, missing, cases)
    scaling_table(sizes, peers, missing, cases)
    startup_table(sizes)
    return 1 if disagreements else 0


if __name__ == "__main__":
    raise SystemExit(main())
