"""synapse/api/ only translates HTTP: it calls the service's operations and reaches no further.

Read from the source (AST): every use of the service in synapse/api/ is `service.<operation>` where
the operation is a method of PolicyService (or its read-only `config`), never a collaborator behind it
(`service.registry.x`, `service.log.y`) nor anything private. And the service keeps its collaborators
private, so there is nothing else to reach for.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path

from synapse.service.service import PolicyService

API = Path(__file__).resolve().parents[2] / "synapse" / "api"
DATA = {"config"}  # read-only settings, not a collaborator


def _service_uses(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, name, what follows it) for every `service.name` / `self.service.name`."""
    uses = []
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        root = node.value
        is_service = (isinstance(root, ast.Name) and root.id == "service") or (
            isinstance(root, ast.Attribute) and root.attr == "service")
        if not is_service:
            continue
        parent = parents.get(node)
        then = parent.attr if isinstance(parent, ast.Attribute) and parent.value is node else ""
        uses.append((node.lineno, node.attr, then))
    return uses


def _violations(source: str) -> list[str]:
    found = []
    for line, name, then in sorted(_service_uses(ast.parse(source))):
        if name.startswith("_"):
            found.append(f"{line}: service.{name} is private")
        elif name in DATA:
            continue
        elif not callable(getattr(PolicyService, name, None)):
            found.append(f"{line}: service.{name} is not an operation of PolicyService")
        elif then:
            found.append(f"{line}: service.{name}.{then} reaches behind an operation")
    return found


def test_the_api_calls_only_service_operations() -> None:
    files = sorted(API.glob("*.py"))
    assert any(f.name == "app.py" for f in files)
    found = [f"{f.name}:{v}" for f in files for v in _violations(f.read_text())]
    assert found == []


def test_the_check_sees_what_it_forbids() -> None:
    source = ("def f(service, self):\n"
              "    service.registry.describe(1)\n"
              "    self.service.log.head\n"
              "    service._registry\n"
              "    x = service.registry\n"
              "    service.evaluate('p', {}, {})\n"
              "    service.config.limits.max_batch\n")
    assert _violations(source) == [
        "2: service.registry is not an operation of PolicyService",
        "3: service.log is not an operation of PolicyService",
        "4: service._registry is private",
        "5: service.registry is not an operation of PolicyService",
    ]


def test_the_service_keeps_its_collaborators_private() -> None:
    init = textwrap.dedent(inspect.getsource(PolicyService.__init__))
    targets = [t for node in ast.walk(ast.parse(init)) if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in ast.walk(ast.parse(init)) if isinstance(node, ast.AnnAssign)]
    assigned = {t.attr for t in targets
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"}
    public = {name for name in assigned if not name.startswith("_")}
    assert {"_registry", "_store", "_link", "_log", "_auth", "_limiter", "_node_state"} <= assigned
    assert public <= {"config", "identity", "worker", "state", "metrics"}
