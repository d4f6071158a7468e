"""Stage 4: lower a checked policy to the IR (scc/ir.py).

Only what some rule reaches is lowered: unused definitions get no code and unused inputs are not
fetched. Input values cross the ABI as f64 (docs/abi.md); bool inputs become i32 on entry, enum
inputs stay f64 indices and enum literals become their index. Faultable operations get a site, in
the order they are lowered (definitions first, then rules).
"""

from __future__ import annotations

from axon.abi import GAS_PER_NODE, LOG_LEVELS, RESULT_SIZE
from scc.ast import Boolean, Call, Expr, InputRef, LetDef, LetRef, Number, Policy, Text, children
from scc.errors import unexpected
from scc.findings import used_names
from scc.ir import InputSlot, LetCode, LogCode, Node, Program, RuleCode, ValType
from scc.operators import OPERATORS, Kind

DATA_OFFSET = RESULT_SIZE  # log messages follow the result block


def lower(policy: Policy) -> Program:
    used_lets, used_inputs = used_names(policy)
    inputs = tuple(
        InputSlot(d.group, d.index, d.name, ValType.I32 if d.kind is Kind.BOOL else ValType.F64)
        for d in policy.inputs() if (d.group, d.name) in used_inputs
    )
    used = _canonical_order([d for d in policy.lets if d.name in used_lets])
    lowering = _Lowering(
        {(s.group, s.name): i for i, s in enumerate(inputs)},
        {d.name: i for i, d in enumerate(used)},
    )
    lets = tuple(LetCode(d.name, lowering.expr(d.expr), d.site) for d in used)

    data = bytearray()
    placed: dict[str, LogCode] = {}
    rules = []
    for rule in policy.rules:
        log = None
        if rule.log is not None:
            message = rule.log.message
            if message not in placed:  # one copy of each distinct message
                encoded = message.encode("utf-8")
                placed[message] = LogCode(0, DATA_OFFSET + len(data), len(encoded))
                data += encoded
            log = LogCode(LOG_LEVELS.index(rule.log.level), placed[message].offset, placed[message].length)
        rules.append(RuleCode(rule.index, rule.id, int(rule.then), lowering.expr(rule.when), log, rule.site))
    return Program(
        combine=policy.combine,
        default=int(policy.default),
        inputs=inputs,
        lets=lets,
        rules=tuple(rules),
        sites=tuple(lowering.sites),
        data=bytes(data),
        data_offset=DATA_OFFSET,
    )


def _canonical_order(lets: list[LetDef]) -> list[LetDef]:
    """Definitions in dependency order, ties broken by name: like inputs (scc/ast.py), the layout then
    depends only on the canonical source, never on the order the author wrote the keys in."""
    deps = {d.name: _refs(d.expr) for d in lets}
    pending = {d.name: d for d in lets}
    ordered: list[LetDef] = []
    while pending:
        name = min(n for n in pending if not deps[n] & pending.keys())
        ordered.append(pending.pop(name))
    return ordered


def _refs(expr: Expr) -> set[str]:
    if isinstance(expr, LetRef):
        return {expr.name}
    return set().union(*(_refs(child) for child in children(expr)))


class _Lowering:
    def __init__(self, inputs: dict[tuple[str, str], int], lets: dict[str, int]) -> None:
        self.inputs = inputs
        self.lets = lets
        self.sites: list[str] = []

    def expr(self, expr: Expr, enum_values: tuple[str, ...] = ()) -> Node:
        """`enum_values`: for a text literal, the values of the enum it is compared with."""
        if isinstance(expr, Number):
            return Node("const", ValType.F64, value=expr.value, gas=GAS_PER_NODE, pointer=expr.site)
        if isinstance(expr, Boolean):
            return Node("const", ValType.I32, value=int(expr.value), gas=GAS_PER_NODE, pointer=expr.site)
        if isinstance(expr, Text):
            index = float(enum_values.index(expr.value))
            return Node("const", ValType.F64, value=index, gas=GAS_PER_NODE, pointer=expr.site,
                        note=f'"{expr.value}"')
        if isinstance(expr, InputRef):
            slot = self.inputs[(expr.group, expr.name)]
            return Node("input", _valtype(expr), value=slot, gas=GAS_PER_NODE, pointer=expr.site)
        if isinstance(expr, LetRef):
            index = self.lets[expr.name]
            return Node("let", _valtype(expr), value=index, gas=GAS_PER_NODE, pointer=expr.site)
        if not isinstance(expr, Call):
            raise unexpected(expr, "lower")
        enum_values = next((a.type.values for a in expr.args if a.type.kind is Kind.ENUM), ())
        args = tuple(self.expr(arg, enum_values) for arg in expr.args)
        site = None
        if OPERATORS[expr.op].faults:
            site = len(self.sites)
            self.sites.append(expr.site)
        return Node(expr.op, _valtype(expr), args, site=site, gas=GAS_PER_NODE, pointer=expr.site)


def _valtype(expr: Expr) -> ValType:
    """The wasm type of a checked expression's value (an `if` has its branches' type)."""
    return ValType.I32 if expr.type.kind is Kind.BOOL else ValType.F64
