"""Stage 6: emit the module. WAT text from the IR, assembled by wasmtime's `wat2wasm`, then the
`sopcos.meta` custom section appended last (docs/abi.md).

Shape of every module:
- imports exactly `sopcos.get_telemetry`, `sopcos.get_context_var`, `sopcos.emit_log`;
- exports exactly `memory` (one page, min = max = 1) and `evaluate(budget i64) -> i32`;
- `evaluate` writes the whole result block on entry (so a trap leaves nothing of an earlier call),
  fetches each input the rules use once, tries the rules, and writes the block again on every exit;
- the rules run in `$rules_K` functions of bounded size, called in order from `evaluate` (and the
  definitions' cache is cleared by `$forget_K` functions of bounded size): wasmtime's code generator
  costs more than linearly in the size of one function, so bounded functions keep compiling and
  loading a module linear in the number of rules (docs/abi.md);
- each definition is a function that computes its body at most once per call and caches it;
- faults (division by zero, NaN) set the globals $fault/$site and branch to the function's
  `$fault` block; evaluate's `$fault` block ends in DENY with the fault code and site;
- gas: every straight-line block starts by paying its cost (from scc/gas.py) out of `$gas_left`,
  inline; when the budget cannot pay, `$charge(n)` writes fault 3 and executes `unreachable`;
- the trace (docs/abi.md, "Trace"): each rule's `when` and each definition's value are written into
  memory as they are computed, on every call (a store costs less than testing whether to store, and
  compiles to less); the host asks for a trace in the request word, and the module then clears the
  trace on entry and marks it as this call's. A policy whose trace would not fit in the one page beside
  its log messages gets none.
There are no loops.
"""

from __future__ import annotations

import math

import rfc8785

from axon import abi
from scc.errors import InternalError, unexpected
from scc.gas import block_cost, entry_cost
from scc.ir import Node, Program, RuleCode, ValType, walk
from scc.operators import OPERATORS, Evaluation, Operator

_SEVERITY = {v.value: v.severity for v in abi.Verdict}


def f64(value: float) -> str:
    """An exact WAT f64 literal: an integer where that is exact, hexadecimal float otherwise."""
    if value == int(value) and abs(value) < 2**53 and math.copysign(1.0, value) > 0:
        return str(int(value))
    return value.hex()


def _comment(text: str) -> str:
    return text.replace("\n", " ")


def _data_string(data: bytes) -> str:
    return "".join(chr(b) if 0x20 <= b < 0x7F and b not in (0x22, 0x5C) else f"\\{b:02x}" for b in data)


def assemble(wat: str, meta_json: bytes, trace: abi.TraceLayout | None = None) -> bytes:
    import wasmtime  # here, not at the top: `scc check` never assembles and starts without it

    try:
        module = bytes(wasmtime.wat2wasm(wat))
    except wasmtime.WasmtimeError as exc:
        raise InternalError(f"the assembler rejected the compiler's output (a bug in scc): {exc}") from None
    if trace is not None:  # before the meta section, which comes last
        module += abi.custom_section(abi.TRACE_SECTION, rfc8785.dumps(trace.document()))
    return module + abi.custom_section(abi.META_SECTION, meta_json)


def trace_layout(program: Program) -> abi.TraceLayout | None:
    """Where the module writes its trace: after the log messages, 8-aligned; None when it would not fit
    in the module's one page (the module then has no trace, and says so by having no trace section)."""
    at = -(-(program.data_offset + len(program.data)) // 8) * 8
    lets = tuple((let.name, "bool" if let.body.type is ValType.I32 else "number") for let in program.lets)
    layout = abi.TraceLayout(at, lets, len(program.rules))
    return layout if at + layout.size <= abi.MEMORY_PAGES * _PAGE_BYTES else None


_PAGE_BYTES = 65536


# Identifiers: globals $t_NAME / $c_NAME (inputs), $let_NAME (a definition's cached value) and
# $ok_NAME (whether it is cached); functions $let_NAME. Source names match [a-z_][a-z0-9_]*, and the
# fixed names ($gas_budget, $fault, $best_rule, $rules_K, $forget_K, ...) start with none of these
# prefixes, so nothing collides.


def _input_global(program: Program, index: int) -> str:
    slot = program.inputs[index]
    return f"${slot.group[0]}_{slot.name}"


class _Function:
    """Writes the body of one wasm function as indented, commented, flat WAT instructions."""

    def __init__(self, program: Program, faulting: list[bool], indent: int = 2) -> None:
        self.program = program
        self.faulting = faulting
        self.lines: list[str] = []
        self.depth = indent
        self.labels = 0
        self.uses_scratch = False
        self.helpers: set[str] = set()

    def __call__(self, instruction: str, comment: str = "") -> None:
        suffix = f"  ;; {_comment(comment)}" if comment else ""
        self.lines.append("  " * self.depth + instruction + suffix)

    def open(self, instruction: str, comment: str = "") -> None:
        self(instruction, comment)
        self.depth += 1

    def close(self, instruction: str = "end") -> None:
        self.depth -= 1
        self(instruction)

    def label(self) -> str:
        self.labels += 1
        return f"$b{self.labels}"

    def charge(self, cost: int, comment: str = "") -> None:
        """Pay for the block, inline (a call per block was a fifth of a 1,000-rule evaluation's
        instructions); only when the budget cannot pay does `$charge` run, to write fault 3 and trap."""
        if cost:
            self("global.get $gas_left", comment or "gas for this block")
            self(f"i64.const {cost}")
            self("i64.lt_s")
            self.open("if", "out of gas")
            self(f"i64.const {cost}")
            self("call $charge")
            self.close()
            self("global.get $gas_left")
            self(f"i64.const {cost}")
            self("i64.sub")
            self("global.set $gas_left")

    def fault_check(self) -> None:
        self("global.get $fault")
        self("br_if $fault")

    def expr(self, node: Node) -> None:
        """Code that leaves the value of `node` on the stack (its block was charged already)."""
        op = node.op
        if op == "const":
            if node.type is ValType.I32:
                self(f"i32.const {node.value}", "true" if node.value else "false")
            else:
                literal = f64(node.value)
                self(f"f64.const {literal}", node.note or (repr(node.value) if "p" in literal else ""))
        elif op == "input":
            self(f"global.get {_input_global(self.program, node.value)}", node.note)
        elif op == "let":
            let = self.program.lets[node.value]
            self(f"call $let_{let.name}", let.pointer)
            if self.faulting[node.value]:
                self.fault_check()
        else:
            self.operation(node, OPERATORS[op])

    def operation(self, node: Node, operator: Operator) -> None:
        args, evaluation = node.args, operator.evaluation
        if evaluation is Evaluation.APPLY:
            for arg in args:
                self.expr(arg)
            self.instructions(node, operator)
        elif evaluation is Evaluation.FOLD:
            self.expr(args[0])
            for arg in args[1:]:
                self.expr(arg)
                self.instructions(node, operator)
        elif evaluation is Evaluation.MEMBER:
            self.membership(node, operator)
        elif evaluation is Evaluation.SHORT_CIRCUIT:
            self.short_circuit(node, operator)
        elif evaluation is Evaluation.BRANCH:
            self.branch(node)
        else:
            raise unexpected(evaluation, "emit")

    def instructions(self, node: Node, operator: Operator) -> None:
        """The operator's own instructions (scc/operators.py), its operands on the stack; the first
        names the source expression."""
        for i, template in enumerate(operator.wasm):
            instruction = template.format(type=node.args[0].type, site=node.site)
            if instruction.startswith("call $"):
                helper = instruction.removeprefix("call $")
                self.helpers.update((helper, *_HELPER_CALLS.get(helper, ())))
            self(instruction, "" if i else node.pointer)
        if operator.faults:
            self.fault_check()

    def membership(self, node: Node, operator: Operator) -> None:
        """`in`: x is computed once and compared with each constant; the results are combined."""
        compare, combine = operator.wasm
        self.uses_scratch = True
        self.expr(node.args[0])
        self("local.set $scratch", node.pointer)
        for i, literal in enumerate(node.args[1:]):
            self("local.get $scratch")
            self(f"f64.const {f64(literal.value)}", literal.note)
            self(compare)
            if i:
                self(combine)

    def branch(self, node: Node) -> None:
        """`if`: the condition, then one branch, each branch charged in a block of its own."""
        condition, then, otherwise = node.args
        self.expr(condition)
        self.open(f"if (result {node.type})", node.pointer)
        self.charge(block_cost(then), "gas for the `then` branch")
        self.expr(then)
        self.depth -= 1
        self("else")
        self.depth += 1
        self.charge(block_cost(otherwise), "gas for the `else` branch")
        self.expr(otherwise)
        self.close()

    def short_circuit(self, node: Node, operator: Operator) -> None:
        """Leave the decisive value (all: false, any: true) at the first operand that has it."""
        decided = int(operator.decisive)
        label = self.label()
        self.open(f"block {label} (result i32)", f"{node.op} {node.pointer}")
        last = len(node.args) - 1
        for i, arg in enumerate(node.args):
            if i:
                self.charge(block_cost(arg), f"gas for operand {i}")
            if i == last:
                self.expr(arg)
                break
            self(f"i32.const {decided}")
            self.expr(arg)
            if not decided:
                self("i32.eqz")
            self(f"br_if {label}")
            self("drop")
        self.close()


def faulting_lets(program: Program) -> list[bool]:
    """For each definition, whether computing it can fault (itself or through definitions it uses).
    Definitions only use those above them, so one pass in order sees every answer it needs."""
    out: list[bool] = []
    for let in program.lets:
        out.append(any(n.site is not None or (n.op == "let" and out[n.value]) for n in walk(let.body)))
    return out


def _let_function(program: Program, faulting: list[bool], index: int, trace: abi.TraceLayout | None,
                  helpers: set[str]) -> list[str]:
    let = program.lets[index]
    ty = let.body.type
    fn = _Function(program, faulting)
    fn(f"global.get $ok_{let.name}")
    fn.open("if", "computed earlier in this call: the same value (SIP-001 §4)")
    fn(f"global.get $let_{let.name}")
    fn("return")
    fn.close()
    if trace is not None:
        _trace_byte(fn, trace.let_state_at(index), abi.LET_UNFINISHED, "trace: started (a fault ends it so)")
    fn.open("block $fault")
    fn.charge(block_cost(let.body))
    fn.expr(let.body)
    fn(f"global.set $let_{let.name}")
    fn("i32.const 1")
    fn(f"global.set $ok_{let.name}")
    if trace is not None:
        fn("i32.const 0")
        fn(f"global.get $let_{let.name}", "trace: the value, and computed")
        if ty is ValType.I32:
            fn("f64.convert_i32_u", "a bool as 0.0 or 1.0")
        fn(f"f64.store offset={trace.let_value_at(index)}")
        _trace_byte(fn, trace.let_state_at(index), abi.LET_COMPUTED)
    fn(f"global.get $let_{let.name}")
    fn("return")
    fn.close()
    fn(f"{ty}.const 0", "a fault: $fault is set and the caller stops")
    helpers |= fn.helpers
    locals_ = "\n    (local $scratch f64)" if fn.uses_scratch else ""
    return [f"  ;; let `{let.name}` ({let.pointer})",
            f"  (func $let_{let.name} (result {ty}){locals_}", *fn.lines, "  )"]


def _trace_byte(fn: _Function, address: int, value: int, comment: str = "") -> None:
    fn("i32.const 0", comment)
    fn(f"i32.const {value}")
    fn(f"i32.store8 offset={address}")


def _rule(fn: _Function, program: Program, rule: RuleCode, trace: abi.TraceLayout | None) -> None:
    verdict = abi.Verdict(rule.verdict).name
    fn(f";; rule {rule.index} `{rule.id}` ({rule.pointer}) -> {verdict}")
    fn(f"i32.const {rule.index}")
    fn("global.set $rule", "a fault or running out of gas reports the rule it happened in")
    fn.charge(abi.GAS_PER_RULE + block_cost(rule.when), "gas: rule tried + its condition's first block")
    fn.expr(rule.when)
    if trace is not None:
        fn("local.tee $held")
        fn("i32.const 0", "trace: the rule's `when`")
        fn("local.get $held")
        fn(f"i32.const {abi.RULE_FALSE}")
        fn("i32.add", "false -> 1, held -> 2")
        fn(f"i32.store8 offset={trace.rule_state_at(rule.index)}")
    fn.open("if", f"rule `{rule.id}` holds")
    if rule.log is not None:
        fn.charge(abi.GAS_PER_HOST_CALL, "gas for emit_log")
        fn(f"i32.const {rule.log.level}", abi.LOG_LEVELS[rule.log.level])
        fn(f"i32.const {rule.log.offset}")
        fn(f"i32.const {rule.log.length}")
        fn("call $emit_log")
    if program.combine == "first-match":
        fn(f"i32.const {rule.verdict}", verdict)
        fn(f"i32.const {rule.index}")
        fn("i32.const 0")
        fn("i32.const -1")
        fn("call $finish")
        fn("return")
    else:
        # most-severe: keep the first rule of the highest severity seen so far.
        fn(f"i32.const {_SEVERITY[rule.verdict]}", f"severity of {verdict}")
        fn("global.get $best_severity")
        fn("i32.gt_s")
        fn.open("if", "more severe than any rule that held before")
        fn(f"i32.const {_SEVERITY[rule.verdict]}")
        fn("global.set $best_severity")
        fn(f"i32.const {rule.verdict}", verdict)
        fn("global.set $best_verdict")
        fn(f"i32.const {rule.index}")
        fn("global.set $best_rule")
        fn.close()
    fn.close()


# A function of rules (or of cache resets) is closed once its body has this many WAT lines or more.
# Any bound keeps the code generator's cost per rule constant; this one keeps the number of calls
# per evaluation small (one per ~40 rules of the benchmark policies) and each function quick to compile.
FUNCTION_LINES = 1500

# What a `$rules_K` function returns: -1 when no rule in it decided and nothing faulted (the next one
# runs), -2 after a fault ($fault is set), and otherwise the verdict a first-match rule decided (the
# result block is written already).
_GO_ON = -1
_FAULTED = -2


def _rule_functions(program: Program, faulting: list[bool], trace: abi.TraceLayout | None,
                    helpers: set[str]) -> list[_Function]:
    """The rules, in order, split into functions of about FUNCTION_LINES lines (at least one rule
    each; a function holds only whole rules)."""
    functions: list[_Function] = []
    fn = None
    for rule in program.rules:
        if fn is None or len(fn.lines) >= FUNCTION_LINES:
            fn = _Function(program, faulting, indent=3)
            functions.append(fn)
        _rule(fn, program, rule, trace)
    for fn in functions:
        helpers |= fn.helpers
    return functions


def _rules_function(index: int, fn: _Function, traced: bool) -> list[str]:
    locals_ = ["(local $scratch f64)"] if fn.uses_scratch else []
    if traced:
        locals_ += ["(local $held i32)"]
    locals_ = ["    " + " ".join(locals_)] if locals_ else []
    return [f"  (func $rules_{index} (result i32)", *locals_,
            "    block $fault", *fn.lines,
            f"      i32.const {_GO_ON}", "      return",
            "    end",
            f"    i32.const {_FAULTED}  ;; a fault: $fault is set, evaluate ends in DENY",
            "  )"]


def _forget_functions(program: Program) -> list[list[str]]:
    """Clearing every definition's cache at the start of a call, in functions of bounded size."""
    per_function = max(1, FUNCTION_LINES // 2)
    out = []
    for start in range(0, len(program.lets), per_function):
        body = []
        for let in program.lets[start:start + per_function]:
            forget = f"forget `{let.name}` from an earlier call"
            body += ["    i32.const 0", f"    global.set $ok_{let.name}  ;; {forget}"]
        out.append([f"  (func $forget_{len(out)}", *body, "  )"])
    return out


def _evaluate(program: Program, rule_functions: int, forget_functions: int,
              trace: abi.TraceLayout | None) -> list[str]:
    fn = _Function(program, [])
    fn(";; the budget; a negative one counts as 0")
    fn("local.get $budget")
    fn("i64.const 0")
    fn("local.get $budget")
    fn("i64.const 0")
    fn("i64.gt_s")
    fn("select")
    fn("global.set $gas_budget")
    fn("global.get $gas_budget")
    fn("global.set $gas_left")
    fn("i32.const 0")
    fn("global.set $fault")
    fn("i32.const -1")
    fn("global.set $site")
    fn("i32.const -1")
    fn("global.set $rule", "no rule tried yet in this call")
    fn(";; write the whole result block now: a trap (in a host function, say) leaves nothing of an")
    fn(";; earlier call behind")
    _finish_call(fn, "i32.const 0", "i32.const -1")
    fn("drop")
    if trace is not None:
        _start_trace(fn, trace)
    for index in range(forget_functions):
        fn(f"call $forget_{index}")
    if program.combine == "most-severe":
        fn("i32.const -1")
        fn("global.set $best_severity")
        fn(f"i32.const {program.default}", f"default {abi.Verdict(program.default).name}")
        fn("global.set $best_verdict")
        fn("i32.const -1")
        fn("global.set $best_rule")
    fn.open("block $fault")
    if program.inputs:
        fn.charge(entry_cost(program), "gas: one host call per input the rules use")
    for i, slot in enumerate(program.inputs):
        getter = "$get_telemetry" if slot.group == "telemetry" else "$get_context_var"
        fn(f"i32.const {slot.key}", f"{slot.group} `{slot.name}`")
        fn(f"call {getter}")
        if slot.type is ValType.I32:
            fn("f64.const 0")
            fn("f64.ne", "bool: 1.0 is true, 0.0 is false")
        fn(f"global.set {_input_global(program, i)}")
    for index in range(rule_functions):
        fn(f"call $rules_{index}")
        fn("local.tee $decided")
        fn(f"i32.const {_GO_ON}")
        fn("i32.ne")
        fn.open("if", "a rule decided (first-match) or a fault")
        fn("global.get $fault")
        fn("br_if $fault")
        fn("local.get $decided")
        fn("return")
        fn.close()
    if program.combine == "first-match":
        fn(f"i32.const {program.default}", f"no rule held: default {abi.Verdict(program.default).name}")
        fn("i32.const -1")
    else:
        fn("global.get $best_verdict", "the most severe verdict, or the default")
        fn("global.get $best_rule")
    fn("i32.const 0")
    fn("i32.const -1")
    fn("call $finish")
    fn("return")
    fn.close()
    fn(";; a fault ended the evaluation: DENY, the rule being tried, the fault and its site")
    _finish_call(fn, "global.get $fault", "global.get $site", rule="global.get $rule")
    return ['  (func $evaluate (export "evaluate") (param $budget i64) (result i32)',
            "    (local $decided i32)", *fn.lines, "  )"]


def _start_trace(fn: _Function, trace: abi.TraceLayout) -> None:
    """When the request word asks: clear it and the trace, and say that the trace is this call's."""
    fn("i32.const 0")
    fn(f"i32.load offset={trace.at + abi.TRACE_REQUEST}", "the trace's request word (written by the host)")
    fn(f"i32.const {abi.TRACE_ASKED}")
    fn("i32.eq")
    fn.open("if", "asked: the trace below is this call's")
    fn("i32.const 0")
    fn("i32.const 0")
    fn(f"i32.store offset={trace.at + abi.TRACE_REQUEST}", "asked for this call only")
    fn(f"i32.const {trace.at + abi.TRACE_HEADER}")
    fn("i32.const 0")
    fn(f"i32.const {trace.size - abi.TRACE_HEADER}")
    fn("memory.fill", "nothing of an earlier call")
    fn("i32.const 0")
    fn(f"i32.const {abi.TRACE_ASKED}")
    fn(f"i32.store offset={trace.at + abi.TRACE_WRITTEN}", "the trace below is this call's")
    fn.close()


def _finish_call(fn: _Function, fault: str, site: str, rule: str = "i32.const -1") -> None:
    fn("i32.const 0")
    fn(rule)
    fn(fault)
    fn(site)
    fn("call $finish")


# Helpers the operators call (scc/operators.py: `call $name`), and the helpers each one calls.
_HELPER_CALLS = {"div": ("nan",)}
_HELPERS = {
    "nan": f"""\
  ;; a NaN result is a fault (code 2) at `site`; the caller branches on $fault
  (func $nan (param $value f64) (param $site i32) (result f64)
    local.get $value
    local.get $value
    f64.ne
    if
      i32.const {int(abi.Fault.NAN)}
      global.set $fault
      local.get $site
      global.set $site
    end
    local.get $value
  )""",
    "div": f"""\
  ;; division by zero is a fault (code 1) at `site`; so is a NaN quotient (code 2)
  (func $div (param $a f64) (param $b f64) (param $site i32) (result f64)
    local.get $b
    f64.const 0
    f64.eq
    if
      i32.const {int(abi.Fault.DIVISION_BY_ZERO)}
      global.set $fault
      local.get $site
      global.set $site
      f64.const 0
      return
    end
    local.get $a
    local.get $b
    f64.div
    local.get $site
    call $nan
  )""",
    "between": """\
  (func $between (param $x f64) (param $lo f64) (param $hi f64) (result i32)
    local.get $lo
    local.get $x
    f64.le
    local.get $x
    local.get $hi
    f64.le
    i32.and
  )""",
}


def emit_wat(program: Program, header: str, trace: abi.TraceLayout | None = None) -> str:
    """The module as WAT text. `header` is a one-line description for the top comment; `trace`, from
    `trace_layout`, where the module writes its trace (None: it writes none)."""
    helpers: set[str] = set()
    faulting = faulting_lets(program)
    functions: list[str] = []
    for index in range(len(program.lets)):
        functions += _let_function(program, faulting, index, trace, helpers)
    forget = _forget_functions(program)
    for lines in forget:
        functions += lines
    rules = _rule_functions(program, faulting, trace, helpers)
    for index, fn in enumerate(rules):
        functions += _rules_function(index, fn, trace is not None)
    functions += _evaluate(program, len(rules), len(forget), trace)

    r = abi
    out = [
        f";; {_comment(header)}",
        "(module",
        f'  (import "{r.IMPORT_MODULE}" "get_telemetry" (func $get_telemetry (param i32) (result f64)))',
        f'  (import "{r.IMPORT_MODULE}" "get_context_var" (func $get_context_var (param i32) (result f64)))',
        f'  (import "{r.IMPORT_MODULE}" "emit_log" (func $emit_log (param i32 i32 i32)))',
        f'  (memory (export "{r.EXPORT_MEMORY}") {r.MEMORY_PAGES} {r.MEMORY_PAGES})',
        "  (global $gas_budget (mut i64) (i64.const 0))",
        "  (global $gas_left (mut i64) (i64.const 0))",
        "  (global $fault (mut i32) (i32.const 0))",
        "  (global $site (mut i32) (i32.const -1))",
        "  (global $rule (mut i32) (i32.const -1))  ;; the rule being tried, reported with a fault",
    ]
    if program.combine == "most-severe":
        out += ["  ;; most-severe: the first rule of the highest severity that held so far, and its verdict",
                "  (global $best_severity (mut i32) (i32.const -1))",
                "  (global $best_verdict (mut i32) (i32.const 0))",
                "  (global $best_rule (mut i32) (i32.const -1))"]
    for i, slot in enumerate(program.inputs):
        out.append(f"  (global {_input_global(program, i)} (mut {slot.type}) ({slot.type}.const 0))"
                   f"  ;; {slot.group} input {slot.key}")
    for let in program.lets:
        ty = let.body.type
        out.append(f"  (global $let_{let.name} (mut {ty}) ({ty}.const 0))")
        out.append(f"  (global $ok_{let.name} (mut i32) (i32.const 0))")
    if program.data:
        data = _data_string(program.data)
        out.append(f'  (data (i32.const {program.data_offset}) "{data}")  ;; log messages')
    if program.sites:
        out.append("  ;; fault sites: " + ", ".join(f"{i}={p}" for i, p in enumerate(program.sites)))
    out += [
        "  ;; write the result block (docs/abi.md) and return the verdict",
        "  (func $finish (param $verdict i32) (param $rule i32) (param $fault i32) (param $site i32)",
        "    (result i32)",
        f"    i32.const {r.RESULT_VERDICT}",
        "    local.get $verdict",
        "    i32.store",
        f"    i32.const {r.RESULT_RULE}",
        "    local.get $rule",
        "    i32.store",
        f"    i32.const {r.RESULT_FAULT}",
        "    local.get $fault",
        "    i32.store",
        f"    i32.const {r.RESULT_SITE}",
        "    local.get $site",
        "    i32.store",
        f"    i32.const {r.RESULT_GAS}",
        "    global.get $gas_budget",
        "    global.get $gas_left",
        "    i64.sub",
        "    i64.store",
        "    local.get $verdict",
        "  )",
        "  ;; pay for the next block, or write fault 3 (out of gas) and trap",
        "  (func $charge (param $cost i64)",
        "    global.get $gas_left",
        "    local.get $cost",
        "    i64.lt_s",
        "    if",
        "      i32.const 0",
        "      global.get $rule",
        f"      i32.const {int(r.Fault.OUT_OF_GAS)}",
        "      i32.const -1",
        "      call $finish",
        "      drop",
        "      unreachable",
        "    end",
        "    global.get $gas_left",
        "    local.get $cost",
        "    i64.sub",
        "    global.set $gas_left",
        "  )",
    ]
    out += [_HELPERS[name] for name in ("nan", "div", "between") if name in helpers]
    out += functions
    out.append(")")
    return "\n".join(out) + "\n"
