"""No two public classes of axon, synapse and scc share a name (issue 14 item 5).

A name such as `Envelope` or `Limits` in two packages makes every import and every traceback
ambiguous; each class is named for what it is (`ArtifactEnvelope` / `MessageEnvelope`,
`CompilerLimits` / `synapse.sandbox.Limits`). A class counts when a module defines it at top level
with a `class` statement or builds it with a factory given its own name
(`BadArtifactSignature = _error("BadArtifactSignature", ...)`, `type(...)`, `namedtuple(...)`).
Names starting with an underscore are module-private and may repeat.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("axon", "synapse", "scc")


def _top_level(body: list[ast.stmt]) -> list[ast.stmt]:
    """The module's statements, including those under a top-level if/try/with."""
    found = []
    for node in body:
        found.append(node)
        if isinstance(node, ast.If | ast.With):
            found += _top_level(node.body) + _top_level(getattr(node, "orelse", []))
        elif isinstance(node, ast.Try):
            found += _top_level(node.body) + _top_level(node.orelse) + _top_level(node.finalbody)
            for handler in node.handlers:
                found += _top_level(handler.body)
    return found


def public_classes(source: str) -> list[str]:
    """The public classes a module defines at top level, by a class statement or a named factory call."""
    names = []
    for node in _top_level(ast.parse(source).body):
        if isinstance(node, ast.ClassDef):
            names.append(node.name)
        elif (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and node.value.args
              and isinstance(node.value.args[0], ast.Constant)):
            names += [target.id for target in node.targets
                      if isinstance(target, ast.Name) and target.id == node.value.args[0].value]
    return [name for name in names if not name.startswith("_")]


def clashes(modules: dict[str, str]) -> dict[str, list[str]]:
    """Class name -> the modules defining it, for every name defined by more than one module."""
    where: dict[str, list[str]] = defaultdict(list)
    for module, source in modules.items():
        for name in public_classes(source):
            where[name].append(module)
    return {name: found for name, found in where.items() if len(found) > 1}


def production_modules() -> dict[str, str]:
    return {str(path.relative_to(REPO)): path.read_text(encoding="utf-8")
            for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))}


def test_no_two_public_classes_share_a_name():
    modules = production_modules()
    assert len(modules) > 50 and "axon/verify.py" in modules  # the walk found the packages
    assert clashes(modules) == {}


def test_a_class_statement_in_two_packages_is_caught():
    found = clashes({"axon/a.py": "class Envelope:\n    pass\n",
                     "axon/messaging/b.py": "from x import y\n\nclass Envelope(Base):\n    x = 1\n"})
    assert found == {"Envelope": ["axon/a.py", "axon/messaging/b.py"]}


def test_a_class_built_by_a_factory_is_caught():
    found = clashes({"axon/verify.py": 'TooLarge = _error("TooLarge", "AXON-VERIFY-SIZE", "size", "doc")\n',
                     "axon/messaging/errors.py": "class TooLarge(MessagingError):\n    code = 'MSG'\n",
                     "scc/x.py": 'Point = namedtuple("Point", "x y")\n',
                     "synapse/y.py": 'Point = type("Point", (), {})\n'})
    assert found == {"TooLarge": ["axon/verify.py", "axon/messaging/errors.py"],
                     "Point": ["scc/x.py", "synapse/y.py"]}


def test_a_class_under_a_top_level_if_or_try_counts():
    source = "try:\n    import z\nexcept ImportError:\n    class Limits:\n        pass\n"
    assert public_classes(source) == ["Limits"]
    assert public_classes("if True:\n    class Limits:\n        pass\n") == ["Limits"]


def test_private_nested_and_unrelated_names_are_not_classes_here():
    source = ("class _Direction:\n    class Inner:\n        pass\n"
              "def f():\n    class Local:\n        pass\n"
              "LIMITS = CompilerLimits()\n"
              'log = logging.getLogger("axon")\n'
              '_T = TypeVar("_T")\n')
    assert public_classes(source) == []
    assert clashes({"a.py": source, "b.py": source}) == {}
