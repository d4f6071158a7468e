"""A fleet of nodes on one ledger (issue 12 item 7), each figure beside a baseline measured in the same run.

    python benchmarks/bench_fleet.py            full run (a few minutes: builds a 100,000-entry ledger)
    python benchmarks/bench_fleet.py --quick    smoke run: same tables, fewer samples, 10,000 entries only
    python benchmarks/bench_fleet.py --only startup   one section (see SECTIONS)

Sections (each a function returning its table; add a section by adding a function to SECTIONS):
  - revocation: revocation-to-stop latency on 3 real `synapse serve` nodes following one chain (anvil,
    confirmations 0), from sending the ARTIFACT_REVOKE to each node refusing the artifact (p50, p99 over
    every node and round); baseline: the same 3 nodes on one shared embedded ledger file.
  - throughput: ledger operations per second sent to anvil (checked against the index, signed,
    eth_sendRawTransaction) and indexed from its blocks by a fresh index; baseline: appends to the
    embedded ledger (fsync per append) and its replay on open.
  - startup: opening a ledger of 10,000 and 100,000 operations from the node's signed checkpoint;
    baseline: opening it by replaying every entry (what opening did before checkpoints).
  - mqtt: SIP-017 alerts through a real Mosquitto (benchmarks/bench_mqtt.py, which also runs alone):
    MQTT alert latency (p50/p99) from the decision to the recipient's checked message, and alerts per
    second; baselines: a bare QoS 1 publish of the same size, and the ledger carrier (OpCode 9).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _table import p50_p99, print_table  # noqa: E402

from axon.keys import Identity, SigningKey  # noqa: E402
from axon.ledger import Ledger, operation_transaction, ops  # noqa: E402
from axon.ledger.chain import ChainLedger  # noqa: E402
from axon.ledger.state import LedgerState  # noqa: E402
from axon.ledger.store import Store  # noqa: E402
from synapse.service.auth import hash_token, new_token  # noqa: E402
from tests.anvil import Anvil, ChainPlant  # noqa: E402
from tests.service_support import AUTO, NORMAL, Plant, Server, write_config  # noqa: E402

CHAIN = 7317
FOLLOW_INTERVAL = 0.5
ADMIN_TOKEN = new_token()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.0f} ms"


# --- revocation-to-stop on three nodes ----------------------------------------------------------------


def _node_config(plant: Plant, name: str, ledger: object, node_key: Path) -> Path:
    work = plant.dir / name
    work.mkdir()
    ledger_section = {"path": ledger, "follow_interval": FOLLOW_INTERVAL}
    if isinstance(ledger, str):
        ledger_section["confirmations"] = 0
    return write_config(work / "service.toml", {
        "ledger": ledger_section, "node": {"key": node_key}, "store": {"path": work / "store"},
        "decision_log": {"path": work / "decisions"}, "auth": {"open_evaluate": True},
    }, tokens=[{"name": "bench-admin", "sha256": hash_token(ADMIN_TOKEN), "scopes": ["admin"]}])


def _served(node: Server, urn: str) -> bool:
    r = node.client.post("/v1/evaluate", json={"policy": urn, "telemetry": NORMAL, "context": AUTO})
    return r.status_code == 200


def _wait(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.01)


def _revocation_rounds(plant: Plant, nodes: list[Server], rounds: int) -> list[float]:
    samples = []
    for i in range(rounds):
        sop, urn = plant.artifact(f"2.0.{i}", policy="bench-guard")
        for node in nodes:
            _wait(lambda node=node, sop=sop: node.client.put("/v1/artifacts", content=sop,
                                                             headers=ADMIN).status_code == 201)
        start = time.perf_counter()
        plant.revoke(urn)
        pending = set(range(len(nodes)))
        while pending:
            for k in list(pending):
                if not _served(nodes[k], urn):
                    samples.append(time.perf_counter() - start)
                    pending.discard(k)
            time.sleep(0.005)
    return samples


def revocation(quick: bool, work: Path) -> Table:
    rounds = 3 if quick else 10
    rows = []
    for label, chain in (("chain (anvil), 3 nodes", True), ("embedded file, 3 nodes (baseline)", False)):
        directory = Path(tempfile.mkdtemp(dir=work))
        anvil = Anvil(chain_id=CHAIN).__enter__() if chain else None
        try:
            plant = ChainPlant(directory, anvil) if anvil else Plant(directory)
            keys = [_node_key(plant, f"node-{i}") for i in (1, 2, 3)]
            ledger = anvil.url if anvil else plant.ledger_path
            configs = [_node_config(plant, f"node-{i}", ledger, key) for i, key in zip((1, 2, 3), keys,
                                                                                          strict=True)]
            nodes = [Server(c.parent, c).wait_ready() for c in configs]
            try:
                samples = _revocation_rounds(plant, nodes, rounds)
            finally:
                for node in nodes:
                    node.stop()
        finally:
            if anvil:
                anvil.stop()
        p50, p99 = p50_p99(samples)
        rows.append([label, str(len(samples)), _ms(p50), _ms(p99), _ms(max(samples))])
    return Table("revocation to stop (send the revocation -> the node refuses the artifact)",
                 ["ledger", "samples", "p50", "p99", "max"], rows,
                 f"follow_interval {FOLLOW_INTERVAL} s, confirmations 0 (anvil mines each transaction at "
                 "once); bound: follow interval + confirmations x block time + one follow step")


def _node_key(plant: Plant, name: str) -> Path:
    if isinstance(plant, ChainPlant):
        return plant.node_identity(name)[1]
    return plant.node_key


# --- operations per second ----------------------------------------------------------------------------


def throughput(quick: bool, work: Path) -> Table:
    n = 100 if quick else 500
    author = Identity(SigningKey(hashlib.sha256(b"bench-author").digest()), "did:sopcos:bench-author#key-1")
    root = Identity(SigningKey(hashlib.sha256(b"bench-root").digest()), "did:sopcos:bench-root#key-1")
    rows = []
    with Anvil(chain_id=CHAIN) as anvil:
        for who in (root, author):
            anvil.fund(who.key.address)
        sender = ChainLedger.connect(anvil.url, work / "sender-index.sqlite", confirmations=0)
        sender.sign_and_submit(root, ops.register_key(root.did, root.key.public_key, 5), now=0)
        sender.sign_and_submit(root, ops.register_key(author.did, author.key.public_key, 4), now=0)
        start = time.perf_counter()
        for i in range(n):
            sender.send(author, ops.message(root.did, {"n": i}), now=0)
        sent = time.perf_counter() - start
        start = time.perf_counter()
        with ChainLedger.connect(anvil.url, work / "fresh-index.sqlite", confirmations=0) as fresh:
            fresh.follow_to_head()
            indexed = time.perf_counter() - start
            assert fresh.head_seq == n + 2, fresh.head_seq
        sender.close()
    path = work / "embedded.ledger"
    with Ledger.init(path, root, CHAIN, now=0) as led:
        led.sign_and_submit(root, ops.register_key(author.did, author.key.public_key, 4), now=0)
        start = time.perf_counter()
        for i in range(n):
            led.sign_and_submit(author, ops.message(root.did, {"n": i}), now=0)
        appended = time.perf_counter() - start
    start = time.perf_counter()
    Ledger.open(path).close()
    replayed = time.perf_counter() - start
    rows.append(["send to anvil (check, sign, eth_sendRawTransaction)", f"{n / sent:,.0f}",
                 f"{n / appended:,.0f}", f"{appended / sent:.2f}x"])
    rows.append(["index from anvil's blocks (fresh index)", f"{n / indexed:,.0f}",
                 f"{(n + 2) / replayed:,.0f}", f"{replayed / indexed:.2f}x"])
    return Table(f"ledger operations per second ({n} MESSAGE operations, one sender)",
                 ["operation", "chain ops/s", "embedded ops/s (baseline)", "chain vs baseline"], rows,
                 "anvil automines one block per transaction; the embedded baseline appends with a commit "
                 "each and replays on open")


# --- start-up with a long history ---------------------------------------------------------------------


def build_ledger(path: Path, n: int, node: Identity) -> None:
    """A ledger of `n` operations (a third each artifact registrations, messages and decision-log
    anchors), written in one transaction, and the node's checkpoint of it."""
    root = Identity(SigningKey(hashlib.sha256(b"root").digest()), "did:sopcos:root#key-1")
    author = Identity(SigningKey(hashlib.sha256(b"author").digest()), "did:sopcos:author#key-1")
    state, store = LedgerState(CHAIN), Store.create(path, CHAIN)

    def add(who: Identity, op: dict) -> None:
        raw = operation_transaction(op, state.nonce_of(who.key.address)).sign(who.key, CHAIN).encode()
        entry = state.admit(raw, 1_700_000_000)
        store.append(entry)
        state.commit(entry)

    with store.writing():
        add(root, ops.register_key(root.did, root.key.public_key, 5))
        add(root, ops.register_key(author.did, author.key.public_key, 4))
        add(root, ops.register_key(node.did, node.key.public_key, 1))
        for i in range(n - 3):
            kind = i % 3
            if kind == 0:
                digest = hashlib.sha256(i.to_bytes(8, "big")).hexdigest()
                add(author, ops.register_artifact(f"urn:sopcos:artifact:sha256:{digest}", f"policy-{i % 500}",
                                                  f"1.0.{i}", 3))
            elif kind == 1:
                add(author, ops.message(node.did, {"n": i}))
            else:
                add(node, ops.log_anchor(node.did, "0123456789ab", i, "sha256:" + "ab" * 32))
    store.close()
    with Ledger.open(path) as led:
        led.write_checkpoint(node.key)


def startup(quick: bool, work: Path) -> Table:
    node = Identity(SigningKey(hashlib.sha256(b"node").digest()), "did:sopcos:node#key-1")
    rows = []
    for n in (10_000,) if quick else (10_000, 100_000):
        path = work / f"ledger-{n}.db"
        build_ledger(path, n, node)
        start = time.perf_counter()
        with Ledger.open(path, checkpoint_keys=[node.key.public_key]) as led:
            fast = time.perf_counter() - start
            assert led.checkpoint_seq == n, led.checkpoint_refused
        start = time.perf_counter()
        Ledger.open(path).close()
        full = time.perf_counter() - start
        rows.append([f"{n:,}", f"{fast:.2f} s", f"{full:.2f} s", f"{full / fast:.0f}x",
                     f"{path.stat().st_size / 2**20:.0f} MiB"])
    return Table("ledger start-up (open until ready to answer)",
                 ["operations", "from the node's checkpoint", "full replay (baseline)", "speed-up", "file"],
                 rows, "target: 100,000 operations ready in <= 2 s")


def mqtt(quick: bool, work: Path) -> Table:
    import bench_mqtt  # beside this file; it starts its own broker

    f = bench_mqtt.measure(quick, work)
    samples, burst = bench_mqtt.sizes(quick)

    def latency(xs: list[float]) -> str:
        return "{:.2f} / {:.2f} ms".format(*p50_p99(xs))

    rows = [["MQTT alert latency (p50/p99)", latency(f["alert"]), latency(f["bare"]), latency(f["ledger"])],
            ["alerts per second", f"{f['alert_rate']:,.0f}", f"{f['bare_rate']:,.0f}",
             f"{1000 / (sum(f['ledger']) / len(f['ledger'])):,.0f} (one at a time)"]]
    return Table(f"SIP-017 alerts over MQTT (Mosquitto on loopback, QoS 1): {samples} alerts one at a time, "
                 f"{burst} queued at once",
                 ["figure", "SIP-017 over MQTT", "bare QoS 1 publish (baseline)",
                  "ledger OpCode 9 (baseline)"],
                 rows, "MQTT: sealed, signed, published, checked by the recipient against the ledger; "
                       "both ends in one process")


SECTIONS: dict[str, Callable[[bool, Path], Table]] = {
    "revocation": revocation,
    "throughput": throughput,
    "startup": startup,
    "mqtt": mqtt,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples, 10,000 entries only")
    parser.add_argument("--only", choices=list(SECTIONS), action="append", help="run only these sections")
    args = parser.parse_args(argv)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"A fleet on one ledger; {os.cpu_count()} cores, load average {load} at start (a shared machine: "
          "other engineers' work runs beside this)\n")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only or list(SECTIONS):
            table = SECTIONS[name](args.quick, Path(tmp))
            print(table.title + "\n")
            print_table(table.header, table.rows, right=range(1, len(table.header)))
            if table.note:
                print(f"\n({table.note})")
            print()
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
