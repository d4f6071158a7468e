"""The intermediate representation between the checked tree and WebAssembly.

A `Program` is the whole policy as the module will run it: the inputs fetched at entry, the `let`
definitions some rule reaches (each compiled once and cached per evaluation), the rules in order,
and `sites`, the JSON Pointers of the operations that can fault. Each expression is a tree of
`Node`s with a wasm value type (f64 for numbers and enum indices, i32 for bools), its own gas, and
for operations that can fault (scc/operators.py: `faults`) the index of its site.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from scc.operators import OPERATORS, Evaluation


class ValType(enum.StrEnum):
    F64 = "f64"
    I32 = "i32"  # bools: 0 or 1


@dataclass(frozen=True, eq=False)
class Node:
    # "const" (value: the constant, a float for f64, 0/1 for i32), "input" (value: index into
    # Program.inputs), "let" (value: index into Program.lets), or an operator of scc/operators.py
    # with its operands as args (`in`: x, then f64 constants).
    op: str
    type: ValType
    args: tuple[Node, ...] = ()
    value: float | int | None = None
    site: int | None = None  # index into Program.sites (faultable ops only)
    gas: int = 1
    pointer: str = ""  # the source expression, for comments in the WAT
    note: str = ""  # for comments too: an enum literal's text

    @property
    def unconditional(self) -> tuple[Node, ...]:
        """Operands that always run when this node runs (charged with it, in one block)."""
        return self.args[:1] if self.op in _CONDITIONAL else self.args

    @property
    def conditional(self) -> tuple[Node, ...]:
        """Operands that run only sometimes; each is charged in a block of its own.
        all/any: operands after the first (short-circuit); if: the two branches (one runs)."""
        return self.args[1:] if self.op in _CONDITIONAL else ()

    @property
    def branches(self) -> bool:
        """Whether exactly one of the conditional operands runs (`if`), not any number of them."""
        return self.op in _BRANCHING


_CONDITIONAL = frozenset(name for name, op in OPERATORS.items() if op.conditional)
_BRANCHING = frozenset(name for name, op in OPERATORS.items() if op.evaluation is Evaluation.BRANCH)


@dataclass(frozen=True)
class InputSlot:
    group: str  # "telemetry" or "context"
    key: int  # the host-call key: the input's position in its group (docs/abi.md)
    name: str
    type: ValType  # I32 for bool inputs (converted from the host's 0.0/1.0), F64 otherwise


@dataclass(frozen=True)
class LetCode:
    name: str
    body: Node
    pointer: str


@dataclass(frozen=True)
class LogCode:
    level: int  # docs/abi.md: 0 info, 1 warn, 2 error
    offset: int  # of the UTF-8 message in memory
    length: int


@dataclass(frozen=True)
class RuleCode:
    index: int
    id: str
    verdict: int
    when: Node
    log: LogCode | None
    pointer: str


@dataclass(frozen=True)
class Program:
    combine: str  # "first-match" or "most-severe"
    default: int
    inputs: tuple[InputSlot, ...]
    lets: tuple[LetCode, ...]
    rules: tuple[RuleCode, ...]
    sites: tuple[str, ...]
    data: bytes  # log messages, placed at DATA_OFFSET
    data_offset: int


def walk(node: Node):
    """Every node of a tree, parents first (iterative: trees may be deep)."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.args))
