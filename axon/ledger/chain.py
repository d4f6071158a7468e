"""The ledger on an Ethereum node: operations sent with eth_sendRawTransaction, read back from blocks.

`EthereumChain` is the thin JSON-RPC shell (web3.py, imported when one is made: start-up of the CLIs
does not pay for it). `ChainLedger` is a `Ledger` whose local SQLite file is the index of the chain:
every read answers from the index (verification stays offline, and a node keeps its last known state
when the chain is away); `follow()` brings the index up to the chain's confirmed head through the same
admission checks (follow.py); operations are checked against the index, then sent to the chain, and
count once a follow step indexes them. docs/fleet.md says what the chain adds and what it does not.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from axon import ethtx
from axon.keys import Identity, PublicKey
from axon.ledger.errors import (
    ChainMismatch,
    ChainPending,
    ChainRefused,
    ChainUnavailable,
    LedgerError,
    LedgerStorageError,
)
from axon.ledger.follow import Block, FollowReport, follow
from axon.ledger.ledger import Ledger
from axon.ledger.records import Entry
from axon.ledger.state import REGISTRY_ADDRESS, operation_transaction

URL_SCHEMES = ("http://", "https://")
DEFAULT_TIMEOUT_S = 10.0
SEND_WAIT_S = 30.0  # how long sign_and_submit waits for its operation to be mined and indexed


def is_chain_url(location: object) -> bool:
    """True when a --ledger / [ledger] path names an Ethereum JSON-RPC endpoint rather than a file."""
    return isinstance(location, str) and location.lower().startswith(URL_SCHEMES)


def redact_url(url: str) -> str:
    """The URL without credentials or query (an RPC URL may carry an API key): for logs and errors."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{host}"


class EthereumChain:
    """JSON-RPC to one Ethereum node through web3.py. Every failure is ChainUnavailable (or
    ChainRefused for a transaction the node will not take), naming the node without credentials."""

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        from web3 import Web3  # here, not at module top: only a chain ledger pays for web3's import

        self.url = url
        self.name = redact_url(url)
        self._w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout}))
        self._registry = "0x" + REGISTRY_ADDRESS.hex()

    @contextlib.contextmanager
    def _rpc(self, what: str) -> Iterator[None]:
        try:
            yield
        except LedgerError:
            raise
        except Exception as exc:  # requests, web3 and the node's own errors: the chain did not answer
            raise ChainUnavailable(f"the Ethereum node {self.name} did not answer {what}: "
                                   f"{type(exc).__name__}: {_first_line(exc)}") from None

    def chain_id(self) -> int:
        with self._rpc("eth_chainId"):
            return int(self._w3.eth.chain_id)

    def head_number(self) -> int:
        with self._rpc("eth_blockNumber"):
            return int(self._w3.eth.block_number)

    def block_hash(self, number: int) -> bytes | None:
        from web3.exceptions import BlockNotFound

        if number < 0:
            return None
        with self._rpc(f"eth_getBlockByNumber {number}"):
            try:
                return bytes(self._w3.eth.get_block(number)["hash"])
            except BlockNotFound:
                return None

    def blocks(self, numbers: range) -> list[Block]:
        """The blocks `numbers` in one JSON-RPC batch (fewer when the chain is shorter)."""
        if not numbers:
            return []
        with self._rpc(f"eth_getBlockByNumber {numbers.start}..{numbers.stop - 1}"), \
                self._w3.batch_requests() as batch:
            for number in numbers:
                batch.add(self._w3.eth.get_block(number, full_transactions=True))
            answers = batch.execute()
        found = []
        for raw in answers:
            if not isinstance(raw, dict) and not hasattr(raw, "get"):
                break  # past the chain's head
            found.append(self._block(raw))
        return found

    def _block(self, raw: Any) -> Block:
        transactions: list[bytes] = []
        unreadable: list[tuple[bytes, str]] = []
        for tx in raw["transactions"]:
            to = tx.get("to")
            if to is None or to.lower() != self._registry:
                continue
            signed, why = _legacy_bytes(tx)
            if signed is None:
                unreadable.append((bytes(tx["hash"]), why))
            else:
                transactions.append(signed)
        return Block(number=int(raw["number"]), hash=bytes(raw["hash"]), parent_hash=bytes(raw["parentHash"]),
                     timestamp=int(raw["timestamp"]), transactions=tuple(transactions),
                     unreadable=tuple(unreadable))

    def gas_price(self) -> int:
        with self._rpc("eth_gasPrice"):
            return int(self._w3.eth.gas_price)

    def pending_nonce(self, address: str) -> int:
        from web3 import Web3

        with self._rpc("eth_getTransactionCount"):
            return int(self._w3.eth.get_transaction_count(Web3.to_checksum_address(address), "pending"))

    def send_raw(self, raw: bytes) -> bytes:
        from web3.exceptions import Web3RPCError

        try:
            with self._rpc("eth_sendRawTransaction"):
                return bytes(self._w3.eth.send_raw_transaction(raw))
        except ChainUnavailable as exc:
            if isinstance(exc.__context__, Web3RPCError):  # the node answered: it refuses the transaction
                raise ChainRefused(f"the Ethereum node {self.name} refused the transaction: "
                                   f"{_first_line(exc.__context__)}") from None
            raise

    def wait_mined(self, tx_hash: bytes, timeout: float) -> int:
        """The number of the block that includes `tx_hash` (ChainPending if not mined within timeout)."""
        from web3.exceptions import TimeExhausted

        with self._rpc("eth_getTransactionReceipt"):
            try:
                receipt = self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout,
                                                                    poll_latency=0.1)
            except TimeExhausted:
                raise ChainPending(f"transaction 0x{tx_hash.hex()} was not mined within {timeout:g} s"
                                   ) from None
        return int(receipt["blockNumber"])

    def request(self, method: str, params: list[Any]) -> Any:
        """A raw JSON-RPC call (anvil's evm_* methods in tests and examples)."""
        with self._rpc(method):
            response = self._w3.provider.make_request(method, params)
        if "error" in response:
            raise ChainUnavailable(f"{self.name} {method}: {response['error']}")
        return response.get("result")


def _legacy_bytes(tx: Any) -> tuple[bytes | None, str]:
    """The signed bytes of a legacy transaction re-encoded from the node's fields, checked against its
    hash (so they are exactly the bytes that were sent); else None and why."""
    if int(tx.get("type", 0)) != 0:
        return None, (f"a type {int(tx['type'])} transaction; ledger operations are legacy (type 0) "
                      "transactions")
    try:
        signed = ethtx.Transaction(
            nonce=int(tx["nonce"]), gas_price=int(tx["gasPrice"]), gas_limit=int(tx["gas"]),
            to=bytes.fromhex(tx["to"][2:]), value=int(tx["value"]), data=bytes(tx["input"]), v=int(tx["v"]),
            r=int.from_bytes(bytes(tx["r"]), "big"), s=int.from_bytes(bytes(tx["s"]), "big")).encode()
    except (KeyError, ValueError, TypeError, ethtx.TransactionError) as exc:
        return None, f"its fields do not make a legacy transaction: {exc}"
    if keccak(signed) != bytes(tx["hash"]):
        return None, "its fields do not re-encode to the transaction the node hashed"
    return signed, ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@dataclass(frozen=True)
class ChainStatus:
    """`axon ledger status` and the node's view of the chain."""

    node: str
    chain_id: int
    chain_head: int | None  # None: the node is away
    indexed_block: int | None
    confirmations: int
    entries: int
    error: str | None = None

    @property
    def lag_blocks(self) -> int | None:
        """Confirmed blocks not indexed yet."""
        if self.chain_head is None:
            return None
        confirmed = self.chain_head - self.confirmations
        return max(0, confirmed - (self.indexed_block if self.indexed_block is not None else -1))

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "chain_id": self.chain_id, "chain_head": self.chain_head,
                "indexed_block": self.indexed_block, "confirmations": self.confirmations,
                "lag_blocks": self.lag_blocks, "entries": self.entries, "reachable": self.error is None,
                "error": self.error}


class ChainLedger(Ledger):
    """`ChainLedger.connect(url, index_path, confirmations=N)`: the ledger on the Ethereum node at `url`,
    read through the local index at `index_path` (created on first use, with the node's chain id)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.chain: EthereumChain | None = None
        self.confirmations = 0
        self.start_block = 0
        self.gas_price: int | None = None
        self.last_report: FollowReport | None = None

    @classmethod
    def connect(cls, url: str, index_path: str | Path, *, confirmations: int = 0, start_block: int = 0,
                gas_price: int | None = None, timeout: float = DEFAULT_TIMEOUT_S,
                checkpoint_keys: Sequence[PublicKey] = ()) -> ChainLedger:
        """Open (or create) the index. The chain need not be reachable when the index exists: reads then
        answer from what was indexed. gas_price None: ask the node (eth_gasPrice) when sending.
        checkpoint_keys: as for Ledger.open."""
        if confirmations < 0:
            raise LedgerError(f"confirmations must be >= 0, not {confirmations}")
        chain = EthereumChain(url, timeout)
        index_path = Path(index_path)
        if not index_path.exists():
            Ledger.create_chain_index(index_path, chain.chain_id()).close()
        ledger = cls.open(index_path, checkpoint_keys)
        if not ledger.is_chain_index:
            ledger.close()
            raise LedgerStorageError(f"{index_path} is an embedded ledger, not the index of a chain")
        ledger.chain, ledger.confirmations, ledger.start_block, ledger.gas_price = (
            chain, confirmations, start_block, gas_price)
        with contextlib.suppress(ChainUnavailable):  # away: the index answers; follow() will say so
            node_chain = chain.chain_id()
            if node_chain != ledger.chain_id:
                ledger.close()
                raise ChainMismatch(f"{chain.name} is chain id {node_chain}, but {index_path} indexes "
                                    f"chain id {ledger.chain_id}")
        return ledger

    @classmethod
    def connect_followed(cls, url: str, index_path: str | Path, **options: Any) -> ChainLedger:
        """connect(), then follow_to_head(): the index as of the node's confirmed head, for a command that
        decides now. The index is closed again when following fails."""
        ledger = cls.connect(url, index_path, **options)
        try:
            ledger.follow_to_head()
        except BaseException:
            ledger.close()
            raise
        return ledger

    def _node(self) -> EthereumChain:
        if self.chain is None:
            raise LedgerError("a ChainLedger is made with ChainLedger.connect")
        return self.chain

    # --- following ------------------------------------------------------------------------------------

    def follow(self, max_blocks: int | None = None) -> FollowReport:
        """One step: index the confirmed blocks not indexed yet (undoing a reorganisation first)."""
        kwargs = {} if max_blocks is None else {"max_blocks": max_blocks}
        report = follow(self, self._node(), self.confirmations, start_block=self.start_block, **kwargs)
        self.last_report = report
        return report

    def follow_to_head(self) -> FollowReport:
        """Follow until the index holds every confirmed block (the last step's report, totals summed)."""
        total = self.follow()
        while not _done(total, self.confirmations):
            step = self.follow()
            total.admitted += step.admitted
            total.refused += step.refused
            total.chain_head, total.indexed_block = step.chain_head, step.indexed_block
            if step.fork_block is not None:
                total.fork_block = step.fork_block
                total.rewound_entries += step.rewound_entries
        return total

    def status(self) -> ChainStatus:
        blocks = self.indexed_blocks()
        indexed = blocks[0][0] if blocks else None
        try:
            head, error = self._node().head_number(), None
        except ChainUnavailable as exc:
            head, error = None, str(exc)
        return ChainStatus(node=self._node().name, chain_id=self.chain_id, chain_head=head,
                           indexed_block=indexed, confirmations=self.confirmations, entries=self.head_seq,
                           error=error)

    # --- sending --------------------------------------------------------------------------------------

    def send(self, identity: Identity, op: dict[str, Any], now: int) -> tuple[bytes, Entry]:
        """Sign `op` with the sender's next chain nonce, check it against the index (so an operation the
        ledger would refuse is not paid for), send it. Returns its transaction hash and the entry it would
        be on the index as it stands; it counts once mined, confirmed and indexed."""
        chain = self._node()
        nonce = chain.pending_nonce(identity.key.address)
        gas_price = chain.gas_price() if self.gas_price is None else self.gas_price
        raw = operation_transaction(op, nonce, gas_price).sign(identity.key, self.chain_id).encode()
        return self.send_raw(raw, now)

    def send_raw(self, raw: bytes, now: int) -> tuple[bytes, Entry]:
        expected = self.check(raw, now)
        return self._node().send_raw(raw), expected

    def submit(self, raw_tx: bytes, now: int) -> Entry:
        tx_hash, _ = self.send_raw(raw_tx, now)
        return self._indexed(tx_hash)

    def sign_and_submit(self, identity: Identity, op: dict[str, Any], now: int) -> Entry:
        """Send and wait until the operation counts (mined, `confirmations` deep, indexed): its entry."""
        tx_hash, _ = self.send(identity, op, now)
        return self._indexed(tx_hash)

    def _indexed(self, tx_hash: bytes, wait: float = SEND_WAIT_S) -> Entry:
        deadline = time.monotonic() + wait
        block = self._node().wait_mined(tx_hash, wait)
        while True:
            report = self.follow()
            for refusal in report.refused:
                if refusal.tx_hash == tx_hash:
                    raise LedgerError(f"transaction 0x{tx_hash.hex()} was mined in block {block} but the "
                                      f"ledger refused it: {refusal.reason}", code=refusal.code)
            entry = self.entry_of_tx(tx_hash)  # also when another process's follow step indexed it
            if entry is not None:
                return entry
            if report.indexed_block is not None and report.indexed_block >= block:
                raise LedgerError(f"transaction 0x{tx_hash.hex()} was mined in block {block} but the ledger "
                                  "refused it (the node that indexed it logged why)")
            if time.monotonic() > deadline:
                raise ChainPending(f"transaction 0x{tx_hash.hex()} is in block {block}; it counts after "
                                   f"{self.confirmations} confirmations (chain head {report.chain_head})")
            time.sleep(0.2)


def _done(report: FollowReport, confirmations: int) -> bool:
    return report.indexed_block is not None and report.indexed_block >= report.chain_head - confirmations
