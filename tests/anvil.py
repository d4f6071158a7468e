"""A real Ethereum dev node (Foundry's anvil) for a test: a free loopback port chosen by anvil, stopped after.

`.ci/run` installs a pinned anvil (npm @foundry-rs/anvil) under .tools/ and puts it on PATH; without it
the node fails to start with a sentence saying what to install.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from axon.keys import Identity, write_key_file
from tests.service_support import Plant, identity

REPO = Path(__file__).resolve().parent.parent
ANVIL = shutil.which("anvil") or str(REPO / ".tools/node_modules/.bin/anvil")
START_TIMEOUT_S = 30.0
_LISTENING = re.compile(r"Listening on ([0-9.]+):([0-9]+)")
ETHER = 10**18


class Anvil:
    """`with Anvil(chain_id=7317) as node:` a running anvil at `node.url`.

    `args` are extra anvil flags (e.g. ["--block-time", "1"]). `fund(address)` gives an address a dev
    balance (anvil_setBalance), `rpc(method, params)` calls any JSON-RPC method (evm_snapshot,
    evm_revert, evm_mine...). `stop()` ends the node."""

    def __init__(self, *, chain_id: int = 7317, args: list[str] | None = None) -> None:
        if not Path(ANVIL).exists():
            raise RuntimeError("the chain tests need Foundry's anvil: install it with `npm install --prefix "
                               ".tools @foundry-rs/anvil@1.7.1` (as .ci/run does) or put `anvil` on PATH")
        self.chain_id = chain_id
        self._args = list(args or [])
        self._proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.url = ""

    def __enter__(self) -> Anvil:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        cmd = [ANVIL, "--host", "127.0.0.1", "--port", "0", "--chain-id", str(self.chain_id), *self._args]
        # Its own session: the npm wrapper starts the native binary as a child; stop() ends both.
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True)
        found = threading.Event()

        def read() -> None:
            assert self._proc is not None and self._proc.stdout is not None
            for line in self._proc.stdout:
                self.output.append(line.rstrip())
                match = _LISTENING.search(line)
                if match and not found.is_set():
                    self.url = f"http://{match.group(1)}:{match.group(2)}"
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(START_TIMEOUT_S):
            tail = "\n".join(self.output[-10:])
            self.stop()
            raise RuntimeError(f"anvil did not start listening within {START_TIMEOUT_S:g} s:\n{tail}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        from axon.ledger.chain import EthereumChain

        return EthereumChain(self.url).request(method, params or [])

    def fund(self, address: str, ether: int = 1000) -> None:
        self.rpc("anvil_setBalance", [address, hex(ether * ETHER)])

    def mine(self, blocks: int = 1) -> None:
        self.rpc("anvil_mine", [hex(blocks)])

    def head(self) -> int:
        return int(self.rpc("eth_blockNumber"), 16)



class ChainPlant(Plant):
    """`Plant` (root, author, admin, operator, node; real compiled and signed artifacts) with its ledger
    on `anvil`: an admin machine's ChainLedger sends every operation to the chain (keys funded with dev
    balances) and waits until it counts (confirmations 0)."""

    def __init__(self, directory: Path, anvil: Anvil) -> None:  # Plant's ledger file is not made
        from axon.ledger import ops
        from axon.ledger.chain import ChainLedger

        self.dir = directory
        self.anvil = anvil
        self.root, self.author, self.admin = identity("root"), identity("author"), identity("admin")
        self.operator, self.node = identity("operator"), identity("node")
        self.node_key = directory / "node.key"
        write_key_file(self.node_key, self.node.key, self.node.did)
        self.ledger = ChainLedger.connect(anvil.url, directory / "admin-index.sqlite", confirmations=0)
        for who in (self.root, self.author, self.admin, self.operator, self.node):
            anvil.fund(who.key.address)
        self.ledger.sign_and_submit(self.root, ops.register_key(self.root.did, self.root.key.public_key, 5),
                                    self.now)
        for who, level in ((self.author, "LVL_4"), (self.admin, "LVL_4"), (self.operator, "LVL_2"),
                           (self.node, "LVL_1")):
            self.submit(self.root, ops.register_key(who.did, who.key.public_key, level))

    def submit(self, who: Identity, op: dict[str, Any]) -> None:
        self.ledger.sign_and_submit(who, op, self.now)

    def node_identity(self, name: str, level: str = "LVL_1") -> tuple[Identity, Path]:
        """Another node's key, registered and funded (it posts decision-log anchors), and its key file."""
        from axon.ledger import ops

        who = identity(name)
        self.anvil.fund(who.key.address)
        self.submit(self.root, ops.register_key(who.did, who.key.public_key, level))
        path = self.dir / f"{name}.key"
        write_key_file(path, who.key, who.did)
        return who, path
