"""The SIP-001 value types and operators (§4), each operator defined once.

A row says how the operator is written, which operands it takes and what it gives, how it is
evaluated, the WebAssembly it becomes and the faults it can raise. Every stage reads the table: the
tree builder (scc/ast.py), the structure stage (scc/structure.py: the JSON Schema's operator list
is generated from the table, and tests hold scc/schema/sip-001.schema.json to it), the checker, the
warnings' analysis, lowering, the IR, gas and emission. An analysis of what a policy means
reads the same rows: operand and result types, which operands run only sometimes, and what faults.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from axon.abi import Fault


class Kind(enum.Enum):
    NUMBER = "number"
    BOOL = "bool"
    ENUM = "enum"  # an enum input's value: only eq/ne/in may use it (SIP-001 §4)
    TEXT = "text"  # a string literal: only the value side of eq/ne/in


@dataclass(frozen=True)
class Type:
    kind: Kind
    values: tuple[str, ...] = ()  # an enum's declared values; enums are compatible when equal

    def __str__(self) -> str:
        return self.kind.value


NUMBER = Type(Kind.NUMBER)
BOOL = Type(Kind.BOOL)
TEXT = Type(Kind.TEXT)


class Operands(enum.Enum):
    """The type rule for an operator's operands (scc/checker.py)."""

    NUMBERS = "numbers"
    BOOLS = "bools"
    COMPARABLE = "comparable"  # two numbers, two bools, an enum and one of its values, two like enums
    MEMBER = "member"  # a number or an enum, then literals of its type
    BRANCHES = "branches"  # a bool condition, then two branches of one type (number or bool)


class Evaluation(enum.Enum):
    """How the operands run, and so how the operator's WebAssembly is built (scc/emit.py)."""

    APPLY = "apply"  # every operand, then `wasm` once
    FOLD = "fold"  # left to right: `wasm` after each operand from the second on
    MEMBER = "member"  # the operand once, compared with each literal; the results or-ed
    SHORT_CIRCUIT = "short-circuit"  # the first operand, then each next one until one is `decisive`
    BRANCH = "branch"  # the condition, then only the branch it chooses


@dataclass(frozen=True)
class Operator:
    name: str
    operands: Operands
    result: Type | None  # None: the type of its branches
    arity: tuple[int, int]  # fewest and most operands (`in`: literals); (1, 1) is written without [ ]
    evaluation: Evaluation
    # Instructions for the operator itself, its operands already on the stack. "{type}" is the
    # operands' wasm type, "{site}" the fault site; `call $x` uses emit.py's helper $x.
    wasm: tuple[str, ...] = ()
    faults: tuple[Fault, ...] = ()  # what it can raise (docs/abi.md); each use gets a fault site
    decisive: bool | None = None  # SHORT_CIRCUIT: the operand value that decides the result
    names: tuple[str, ...] = ()  # what each operand is, where the position matters
    # How scc/analysis encodes one application for z3: an SMT-LIB function of the FP theory
    # (Float64, round-nearest-even, as WebAssembly's f64), or a core one ("and", "ite", ...).
    # "wasm.min"/"wasm.max" are f64.min/max (fp.min leaves -0 vs +0 open), "eq"/"ne" compare
    # numbers with fp.eq and bools or enum values with =, "between" is (lo <= x) and (x <= hi).
    smt: str = ""

    @property
    def conditional(self) -> bool:
        """Whether operands after the first run only sometimes."""
        return self.evaluation in (Evaluation.SHORT_CIRCUIT, Evaluation.BRANCH)

    @property
    def bare(self) -> bool:
        """Written with its one operand alone, `{"not": e}`, not in a list."""
        return self.arity == (1, 1)


MAX_OPERANDS = 256
_N, _B = Operands.NUMBERS, Operands.BOOLS
_APPLY, _FOLD = Evaluation.APPLY, Evaluation.FOLD
_ONE, _TWO, _THREE, _1_N, _2_N = (1, 1), (2, 2), (3, 3), (1, MAX_OPERANDS), (2, MAX_OPERANDS)
_NAN = (Fault.NAN,)

OPERATORS: dict[str, Operator] = {op.name: op for op in (
    Operator("eq", Operands.COMPARABLE, BOOL, _TWO, _APPLY, ("{type}.eq",), smt="eq"),
    Operator("ne", Operands.COMPARABLE, BOOL, _TWO, _APPLY, ("{type}.ne",), smt="ne"),
    Operator("lt", _N, BOOL, _TWO, _APPLY, ("f64.lt",), smt="fp.lt"),
    Operator("le", _N, BOOL, _TWO, _APPLY, ("f64.le",), smt="fp.leq"),
    Operator("gt", _N, BOOL, _TWO, _APPLY, ("f64.gt",), smt="fp.gt"),
    Operator("ge", _N, BOOL, _TWO, _APPLY, ("f64.ge",), smt="fp.geq"),
    Operator("between", _N, BOOL, _THREE, _APPLY, ("call $between",), names=("x", "lo", "hi"),
             smt="between"),
    Operator("in", Operands.MEMBER, BOOL, _1_N, Evaluation.MEMBER, ("f64.eq", "i32.or"), smt="eq"),
    Operator("all", _B, BOOL, _1_N, Evaluation.SHORT_CIRCUIT, decisive=False, smt="and"),
    Operator("any", _B, BOOL, _1_N, Evaluation.SHORT_CIRCUIT, decisive=True, smt="or"),
    Operator("not", _B, BOOL, _ONE, _APPLY, ("i32.eqz",), smt="not"),
    Operator("add", _N, NUMBER, _2_N, _FOLD, ("f64.add", "i32.const {site}", "call $nan"), _NAN,
             smt="fp.add"),
    Operator("mul", _N, NUMBER, _2_N, _FOLD, ("f64.mul", "i32.const {site}", "call $nan"), _NAN,
             smt="fp.mul"),
    Operator("min", _N, NUMBER, _2_N, _FOLD, ("f64.min",), smt="wasm.min"),
    Operator("max", _N, NUMBER, _2_N, _FOLD, ("f64.max",), smt="wasm.max"),
    Operator("sub", _N, NUMBER, _TWO, _FOLD, ("f64.sub", "i32.const {site}", "call $nan"), _NAN,
             smt="fp.sub"),
    Operator("div", _N, NUMBER, _TWO, _FOLD, ("i32.const {site}", "call $div"),
             (Fault.DIVISION_BY_ZERO, Fault.NAN), smt="fp.div"),
    Operator("abs", _N, NUMBER, _ONE, _APPLY, ("f64.abs",), smt="fp.abs"),
    Operator("neg", _N, NUMBER, _ONE, _APPLY, ("f64.neg",), smt="fp.neg"),
    Operator("if", Operands.BRANCHES, None, _THREE, Evaluation.BRANCH, names=("condition", "then", "else"),
             smt="ite"),
)}
