"""Stage 3: the semantic checks of SIP-001 (§3 inputs, §4 expressions and limits, §5 rules).

Runs on the tree `scc.ast.build` made from a structurally valid document. It resolves every name,
sets every expression's type, and reports every error it finds (it does not stop at the first).
Only a policy without errors is examined for warnings (scc/findings.py), which never stop
compilation. Diagnostics come back unsorted; the pipeline puts them in document order.
"""

from __future__ import annotations

from scc import findings
from scc.ast import Boolean, Call, Expr, InputDecl, InputRef, LetDef, LetRef, Number, Policy, Text
from scc.errors import Diagnostic, unexpected
from scc.limits import LIMITS, CompilerLimits
from scc.operators import BOOL, NUMBER, OPERATORS, TEXT, Kind, Operands, Type
from scc.reader import join_pointer


def check(policy: Policy, limits: CompilerLimits = LIMITS) -> list[Diagnostic]:
    """Every error in `policy`; if there are none, every warning."""
    checker = _Checker(policy, limits)
    checker.run()
    if any(d.is_error for d in checker.diagnostics):
        return checker.diagnostics
    return findings.warnings(policy)


def format_number(value: float) -> str:
    """A number as the policy author wrote it (2, not 2.0)."""
    if value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"


def describe(expr: Expr, type_: Type) -> str:
    """`valve_open` is a bool input / `add` gives a number / true is a bool."""
    if isinstance(expr, InputRef):
        return f"`{expr.name}` is {_a(str(type_))} {expr.group} input"
    if isinstance(expr, LetRef):
        return f"the definition `{expr.name}` is {_a(str(type_))}"
    if isinstance(expr, Number):
        return f"{format_number(expr.value)} is a number"
    if isinstance(expr, Boolean):
        return f"{'true' if expr.value else 'false'} is a bool"
    if isinstance(expr, Text):
        return f'"{expr.value}" is text'
    if not isinstance(expr, Call):
        raise unexpected(expr, "checker")
    return f"`{expr.op}` gives {_a(str(type_))}"


_WANT = {Kind.NUMBER: "a number", Kind.BOOL: "a bool (true/false)"}


class _Checker:
    def __init__(self, policy: Policy, limits: CompilerLimits) -> None:
        self.policy = policy
        self.limits = limits
        self.diagnostics: list[Diagnostic] = []
        self.inputs = {"telemetry": {d.name: d for d in policy.telemetry},
                       "context": {d.name: d for d in policy.context}}
        self.lets = {d.name: d for d in policy.lets}
        self.let_types: dict[str, Type | None] = {}
        self.let_depth: dict[str, int] = {}  # 1 + the deepest definition a definition uses
        self.current_let: LetDef | None = None  # while checking a definition: only those above it exist
        self.nodes = 0
        self.too_deep_reported = False

    def error(self, code: str, pointer: str, message: str) -> None:
        self.diagnostics.append(Diagnostic(code, pointer, message))

    def run(self) -> None:
        for decl in self.policy.inputs():
            self.declaration(decl)
        self.rules()
        for definition in self.policy.lets:
            self.current_let = definition
            self.too_deep_reported = False
            self.let_depth[definition.name] = 1
            self.let_types[definition.name] = self.value(definition.expr, 1)
        self.current_let = None
        for rule in self.policy.rules:
            self.too_deep_reported = False
            self.expect(rule.when, BOOL, 1)

    # -- declarations (SIP-001 §3) ------------------------------------------------------------

    def declaration(self, decl: InputDecl) -> None:
        name, site = decl.name, decl.site
        if decl.kind is Kind.NUMBER:
            low, high = decl.min, decl.max
            if low is not None and high is not None and low > high:
                self.error("SCC-E034", site + "/min",
                           f"input `{name}` has min {format_number(low)} greater than its max "
                           f"{format_number(high)}")
                return
            default = decl.default
            below = low is not None and default is not None and default < low
            above = high is not None and default is not None and default > high
            if below or above:
                span = (f"[{format_number(low) if low is not None else '-inf'}, "
                        f"{format_number(high) if high is not None else 'inf'}]")
                self.error("SCC-E035", site + "/default",
                           f"the default {format_number(default)} of input `{name}` lies outside its "
                           f"range {span}")
        elif decl.kind is Kind.ENUM:
            first_at: dict[str, int] = {}
            for i, value in enumerate(decl.values):
                if value in first_at:
                    self.error("SCC-E037", f"{site}/values/{i}",
                               f'"{value}" is listed twice in the values of input `{name}` '
                               f"(first as item {first_at[value]}); enum values must be distinct")
                else:
                    first_at[value] = i
            if decl.default is not None and decl.default not in first_at:
                listed = ", ".join(f'"{v}"' for v in first_at)
                self.error("SCC-E036", site + "/default",
                           f'the default "{decl.default}" of input `{name}` is not one of its values '
                           f"({listed})")

    # -- rules (SIP-001 §5) and whole-policy limits -------------------------------------------

    def rules(self) -> None:
        rules = self.policy.rules
        if len(rules) > self.limits.max_rules:
            self.error("SCC-E040", "/rules",
                       f"the policy has {len(rules):,} rules; the limit is {self.limits.max_rules:,}")
        first_at: dict[str, int] = {}
        log_data: set[str] = set()
        log_bytes = 0
        for rule in rules:
            if rule.id in first_at:
                self.error("SCC-E033", rule.site + "/id",
                           f"rule id `{rule.id}` is already used by rule /rules/{first_at[rule.id]}; "
                           "rule ids must be unique")
            else:
                first_at[rule.id] = rule.index
            if rule.log is None:
                continue
            size = len(rule.log.message.encode("utf-8"))
            if size > self.limits.max_log_bytes:
                self.error("SCC-E038", rule.log.site + "/message",
                           f"the log message is {size:,} bytes of UTF-8; the limit is "
                           f"{self.limits.max_log_bytes:,} bytes")
            elif rule.log.message not in log_data:
                log_data.add(rule.log.message)
                log_bytes += size
                if log_bytes > self.limits.max_log_data_bytes:
                    self.error("SCC-E043", rule.log.site + "/message",
                               f"the distinct log messages up to here add up to {log_bytes:,} bytes, more "
                               f"than the {self.limits.max_log_data_bytes:,} bytes a policy module holds; "
                               "shorten or reuse messages")
                    log_bytes = -(1 << 62)  # say it once

    # -- expressions (SIP-001 §4) -------------------------------------------------------------

    def expect(self, expr: Expr, want: Type, depth: int) -> None:
        """`expr` must have type `want` (number or bool)."""
        got = self.infer(expr, depth)
        if got is None or got == want:
            return
        if got.kind is Kind.ENUM:
            self.enum_misused(expr)
        elif got.kind is Kind.TEXT:
            self.text_misused(expr)
        else:
            self.error("SCC-E020", expr.site,
                       f"expected {_WANT[want.kind]} here, but {describe(expr, got)}")

    def value(self, expr: Expr, depth: int) -> Type | None:
        """`expr` must be a number or a bool (a definition, a branch of `if`); returns which."""
        got = self.infer(expr, depth)
        if got is None or got in (NUMBER, BOOL):
            return got
        if got.kind is Kind.ENUM:
            self.enum_misused(expr)
        else:
            self.text_misused(expr)
        return None

    def enum_misused(self, expr: Expr) -> None:
        if not isinstance(expr, InputRef):
            raise unexpected(expr, "checker")
        example = f'{{"eq": [{{"{expr.group}": "{expr.name}"}}, "{expr.type.values[0]}"]}}'
        self.error("SCC-E021", expr.site,
                   f"`{expr.name}` is an enum input: it can only be compared, with eq, ne or in "
                   f"(for example {example})")

    def text_misused(self, expr: Expr) -> None:
        if not isinstance(expr, Text):
            raise unexpected(expr, "checker")
        self.error("SCC-E022", expr.site,
                   f'the text "{expr.value}" is not an expression; text is only allowed as the value an '
                   "enum input is compared with (in eq, ne or in)")

    def infer(self, expr: Expr, depth: int) -> Type | None:
        """The type of `expr`, or None after reporting why it has none."""
        self.nodes += 1
        if self.nodes == self.limits.max_nodes + 1:
            self.error("SCC-E042", expr.site,
                       f"the policy has more than {self.limits.max_nodes:,} expression nodes (the limit is "
                       "reached here); simplify it or split it into several policies")
        if depth > self.limits.max_depth:
            if not self.too_deep_reported:
                self.too_deep_reported = True
                self.error("SCC-E041", expr.site,
                           f"this expression is nested {depth} levels deep; the limit is "
                           f"{self.limits.max_depth}; move parts of it into `let` definitions")
            return None
        type_ = self._infer(expr, depth)
        expr.type = type_
        return type_

    def _infer(self, expr: Expr, depth: int) -> Type | None:
        if isinstance(expr, Number):
            return NUMBER
        if isinstance(expr, Boolean):
            return BOOL
        if isinstance(expr, Text):
            return TEXT
        if isinstance(expr, InputRef):
            return self.input(expr)
        if isinstance(expr, LetRef):
            return self.reference(expr)
        if not isinstance(expr, Call):
            raise unexpected(expr, "checker")
        operator, inner = OPERATORS[expr.op], depth + 1
        rule = operator.operands
        if rule is Operands.COMPARABLE:
            self.equality(expr, inner)
        elif rule is Operands.MEMBER:
            self.membership(expr, inner)
        elif rule is Operands.BRANCHES:
            return self.branches(expr, inner)
        else:
            want = NUMBER if rule is Operands.NUMBERS else BOOL
            for arg in expr.args:
                self.expect(arg, want, inner)
        return operator.result

    def branches(self, expr: Call, depth: int) -> Type | None:
        condition, then, otherwise = expr.args
        self.expect(condition, BOOL, depth)
        then_type = self.value(then, depth)
        else_type = self.value(otherwise, depth)
        if then_type is not None and else_type is not None and then_type != else_type:
            self.error("SCC-E024", otherwise.site,
                       f"both branches of `if` must have one type, but {describe(then, then_type)} and "
                       f"{describe(otherwise, else_type)}")
        return then_type or else_type

    def input(self, expr: InputRef) -> Type | None:
        decl = self.inputs[expr.group].get(expr.name)
        if decl is None:
            other = "context" if expr.group == "telemetry" else "telemetry"
            hint = ""
            if expr.name in self.inputs[other]:
                hint = (f"; `{expr.name}` is declared as a {other} input, so write "
                        f'{{"{other}": "{expr.name}"}}')
            elif self.inputs[expr.group]:
                hint = f" (declared: {', '.join(f'`{n}`' for n in self.inputs[expr.group])})"
            self.error("SCC-E030", join_pointer(expr.site, expr.group),
                       f"no {expr.group} input named `{expr.name}` is declared under "
                       f"/inputs/{expr.group}{hint}")
            return None
        expr.decl = decl
        return decl.type

    def reference(self, expr: LetRef) -> Type | None:
        definition = self.lets.get(expr.name)
        site = join_pointer(expr.site, "ref")
        if definition is None:
            known = f" (defined: {', '.join(f'`{n}`' for n in self.lets)})" if self.lets else ""
            self.error("SCC-E031", site, f"no `let` definition named `{expr.name}`{known}")
            return None
        current = self.current_let
        if current is not None and definition.index >= current.index:
            why = "itself" if definition is current else f"`{expr.name}`, which is defined below it"
            self.error("SCC-E032", site,
                       f"definition `{current.name}` uses {why}; a definition may only use definitions "
                       "written above it")
            return None
        expr.definition = definition
        if current is not None:
            depth = self.let_depth[definition.name] + 1
            limit = self.limits.max_let_depth
            if depth == limit + 1 and self.let_depth[current.name] <= limit:  # where the chain crosses
                self.error("SCC-E044", site,
                           f"definition `{current.name}` uses `{expr.name}`, which already builds on "
                           f"{depth - 2} other definitions; definitions may build on each other at most "
                           f"{limit} levels deep (each level is a nested call when the module runs)")
            self.let_depth[current.name] = max(self.let_depth[current.name], depth)
        return self.let_types.get(expr.name)

    def equality(self, expr: Call, depth: int) -> None:
        left, right = expr.args
        left_type, right_type = self.infer(left, depth), self.infer(right, depth)
        if left_type is None or right_type is None:
            return
        kinds = {left_type.kind, right_type.kind}
        if left_type == right_type and kinds <= {Kind.NUMBER, Kind.BOOL, Kind.ENUM}:
            return  # two numbers, two bools, or two enums declared with the same values
        if kinds == {Kind.ENUM, Kind.TEXT}:
            enum_side, text = (left, right) if left_type.kind is Kind.ENUM else (right, left)
            self.enum_value(enum_side, text)
            return
        if kinds == {Kind.TEXT}:
            self.error("SCC-E022", expr.site,
                       f"`{expr.op}` compares two text values; one side must be an enum input")
            return
        if Kind.TEXT in kinds:
            text, other = (left, right) if left_type.kind is Kind.TEXT else (right, left)
            self.error("SCC-E022", text.site,
                       f'the text "{text.value}" can only be compared with an enum input, but '
                       f"{describe(other, other.type)}")
            return
        if kinds == {Kind.ENUM}:
            self.error("SCC-E023", expr.site,
                       f"`{expr.op}` compares enum inputs `{left.name}` and `{right.name}`, which are "
                       "declared with different lists of values")
            return
        self.error("SCC-E023", expr.site,
                   f"`{expr.op}` cannot compare these: {describe(left, left_type)} and "
                   f"{describe(right, right_type)}")

    def enum_value(self, enum_side: Expr, text: Expr) -> None:
        if not isinstance(enum_side, InputRef):
            raise unexpected(enum_side, "checker")
        values = enum_side.type.values
        value = text.value if isinstance(text, Text) else None
        if value not in values:
            listed = ", ".join(f'"{v}"' for v in values)
            shown = f'"{value}"' if isinstance(text, Text) else describe(text, text.type).split(" is ")[0]
            self.error("SCC-E022", text.site,
                       f"{shown} is not a value of enum input `{enum_side.name}` (its values: {listed})")

    def membership(self, expr: Call, depth: int) -> None:
        x, *literals = expr.args
        for literal in literals:
            self.infer(literal, depth)
        x_type = self.infer(x, depth)
        if x_type is None:
            return
        if x_type.kind is Kind.ENUM:
            for literal in literals:
                self.enum_value(x, literal)
        elif x_type.kind is Kind.NUMBER:
            for literal in literals:
                if isinstance(literal, Text):
                    self.error("SCC-E022", literal.site,
                               f'the text "{literal.value}" cannot be in a list compared with a number; '
                               f"{describe(x, x_type)}")
        elif x_type.kind is Kind.TEXT:
            self.text_misused(x)
        else:
            self.error("SCC-E020", x.site,
                       f"`in` checks a number or an enum input against a list, but {describe(x, x_type)}")
