"""The typed syntax tree of a SIP-001 policy.

`build` turns a document that passed the structure stage into these nodes; every node keeps `site`, the
JSON Pointer of the source value it came from. The checker then resolves each name (`InputRef.decl`,
`LetRef.definition`) and sets each expression's `type`; lowering accepts only a checked tree.
Nodes compare by identity, so a node can key a dict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from axon.abi import Verdict
from scc.operators import OPERATORS, Evaluation, Kind, Type
from scc.reader import join_pointer


@dataclass(eq=False)
class InputDecl:
    group: str  # "telemetry" or "context"
    name: str
    index: int  # position in its group: the host-call key (docs/abi.md)
    kind: Kind
    site: str
    declaration: dict[str, Any]  # the source object, verbatim
    min: float | None = None
    max: float | None = None
    default: Any = None
    values: tuple[str, ...] = ()

    @property
    def type(self) -> Type:
        return Type(Kind.ENUM, self.values) if self.kind is Kind.ENUM else Type(self.kind)


@dataclass(eq=False)
class Expr:
    site: str
    type: Type | None = field(default=None, init=False)  # set by the checker


@dataclass(eq=False)
class Number(Expr):
    value: float = 0.0


@dataclass(eq=False)
class Boolean(Expr):
    value: bool = False


@dataclass(eq=False)
class Text(Expr):
    value: str = ""


@dataclass(eq=False)
class InputRef(Expr):
    group: str = ""
    name: str = ""
    decl: InputDecl | None = field(default=None, init=False)  # set by the checker


@dataclass(eq=False)
class LetRef(Expr):
    name: str = ""
    definition: LetDef | None = field(default=None, init=False)  # set by the checker


@dataclass(eq=False)
class Call(Expr):
    """Every operator (scc/operators.py). `in` has args (x, literal, literal, ...)."""

    op: str = ""
    args: tuple[Expr, ...] = ()


@dataclass(eq=False)
class LetDef:
    name: str
    index: int
    expr: Expr
    site: str


@dataclass(eq=False)
class Log:
    level: str
    message: str
    site: str


@dataclass(eq=False)
class Rule:
    index: int
    id: str
    when: Expr
    then: Verdict
    log: Log | None
    site: str


@dataclass(eq=False)
class Policy:
    name: str
    version: str
    description: str | None
    authority_level: str | None
    telemetry: tuple[InputDecl, ...]
    context: tuple[InputDecl, ...]
    lets: tuple[LetDef, ...]
    combine: str
    rules: tuple[Rule, ...]
    default: Verdict
    document: dict[str, Any]  # the source document the tree was built from

    def inputs(self) -> tuple[InputDecl, ...]:
        return self.telemetry + self.context


def build(doc: dict[str, Any]) -> Policy:
    """The tree of a document that passed the structure stage (structure is trusted, meaning is not)."""
    inputs = doc.get("inputs", {})
    # Inputs are numbered by name, not by declaration order, so that the module depends only on the
    # RFC 8785 canonical source that meta.source_hash names (names are ASCII: str order = JCS order).
    groups = {
        group: tuple(_input(group, i, name, decl)
                     for i, (name, decl) in enumerate(sorted(inputs.get(group, {}).items())))
        for group in ("telemetry", "context")
    }
    lets = tuple(LetDef(name, i, build_expr(expr, join_pointer("/let", name)), join_pointer("/let", name))
                 for i, (name, expr) in enumerate(doc.get("let", {}).items()))
    rules = tuple(_rule(i, rule) for i, rule in enumerate(doc["rules"]))
    return Policy(
        name=doc["policy"],
        version=doc["version"],
        description=doc.get("description"),
        authority_level=doc.get("authority_level"),
        telemetry=groups["telemetry"],
        context=groups["context"],
        lets=lets,
        combine=doc.get("combine", "first-match"),
        rules=rules,
        default=Verdict[doc.get("default", "DENY")],
        document=doc,
    )


def _input(group: str, index: int, name: str, decl: dict[str, Any]) -> InputDecl:
    return InputDecl(
        group=group, name=name, index=index, kind=Kind(decl["type"]),
        site=join_pointer("/inputs", group, name), declaration=decl,
        min=decl.get("min"), max=decl.get("max"), default=decl.get("default"),
        values=tuple(decl.get("values", ())),
    )


def _rule(index: int, rule: dict[str, Any]) -> Rule:
    site = f"/rules/{index}"
    log = rule.get("log")
    return Rule(
        index=index, id=rule["id"], when=build_expr(rule["when"], site + "/when"), then=Verdict[rule["then"]],
        log=Log(log["level"], log["message"], site + "/log") if log else None, site=site,
    )


def build_expr(value: Any, site: str) -> Expr:
    if isinstance(value, bool):
        return Boolean(site, value=value)
    if isinstance(value, int | float):
        return Number(site, value=float(value))
    if isinstance(value, str):
        return Text(site, value=value)
    ((op, operand),) = value.items()
    at = join_pointer(site, op)
    if op in ("telemetry", "context"):
        return InputRef(site, group=op, name=operand)
    if op == "ref":
        return LetRef(site, name=operand)
    operator = OPERATORS[op]
    if operator.bare:
        return Call(site, op=op, args=(build_expr(operand, at),))
    if operator.evaluation is Evaluation.MEMBER:
        x, values = operand
        literals = tuple(build_expr(v, f"{at}/1/{i}") for i, v in enumerate(values))
        return Call(site, op=op, args=(build_expr(x, at + "/0"), *literals))
    return Call(site, op=op, args=tuple(build_expr(arg, f"{at}/{i}") for i, arg in enumerate(operand)))


def children(expr: Expr) -> tuple[Expr, ...]:
    return expr.args if isinstance(expr, Call) else ()
