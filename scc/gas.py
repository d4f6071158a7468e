"""Stage 5: gas. The static cost of each straight-line block, and the worst case over all paths.

Costs (docs/abi.md): 1 per expression node evaluated, 1 per rule tried, 5 per host call. A node
and its unconditional operands are charged together when their block starts; each short-circuited
operand of all/any and each branch of `if` is a block of its own. Inputs are fetched at entry.

A definition's body is computed at most once per evaluation (later uses read the cache), so the
worst case is bounded two ways, both sound, and `gas_max` is the smaller: (A) charge the body at
every use; (B) charge each reachable body once, plus 1 per use. Without definitions both are exact.
"""

from __future__ import annotations

from axon.abi import GAS_PER_HOST_CALL, GAS_PER_RULE
from scc.ir import Node, Program, walk


def block_cost(node: Node) -> int:
    """What the block that starts with `node` charges: the node and its unconditional operands."""
    total = 0
    stack = [node]
    while stack:
        current = stack.pop()
        total += current.gas
        stack.extend(current.unconditional)
    return total


def worst(node: Node, let_cost: list[int]) -> int:
    """Worst-case gas of evaluating `node`, where a use of definition i costs 1 + let_cost[i]."""
    # Post-order over the tree without recursion (expressions may nest deeply).
    memo: dict[int, int] = {}
    for current in reversed(list(walk(node))):
        cost = current.gas + sum(memo[id(a)] for a in current.unconditional)
        if current.branches:
            cost += max(memo[id(current.args[1])], memo[id(current.args[2])])
        else:
            cost += sum(memo[id(a)] for a in current.conditional)
        if current.op == "let":
            cost += let_cost[current.value]
        memo[id(current)] = cost
    return memo[id(node)]


def entry_cost(program: Program) -> int:
    """Charged once on entry: fetching every input the rules use."""
    return GAS_PER_HOST_CALL * len(program.inputs)


def log_cost(rule) -> int:
    return GAS_PER_HOST_CALL if rule.log is not None else 0


def gas_max(program: Program) -> int:
    """The most gas one evaluation of `program` can use, over every input."""
    # (A) every use pays for the body: let_cost[i] is the worst case of body i, itself with (A).
    each_use: list[int] = []
    for let in program.lets:
        each_use.append(worst(let.body, each_use))
    if not program.lets:
        return _rules_worst(program, each_use)
    # (B) uses cost 1; every reachable body is paid at most once.
    once = [0] * len(program.lets)
    bodies_once = sum(worst(let.body, once) for let in program.lets)
    return min(_rules_worst(program, each_use), _rules_worst(program, once) + bodies_once)


def _rules_worst(program: Program, let_cost: list[int]) -> int:
    tried = [GAS_PER_RULE + worst(rule.when, let_cost) for rule in program.rules]
    if program.combine == "most-severe":
        return entry_cost(program) + sum(tried) + sum(log_cost(r) for r in program.rules)
    # first-match: either no rule holds (all tried), or rule k holds after trying 0..k.
    best = running = 0
    for rule, cost in zip(program.rules, tried, strict=True):
        running += cost
        best = max(best, running + log_cost(rule))
    return entry_cost(program) + max(best, running)
