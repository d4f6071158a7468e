"""The test tree's own rules (issue 14 item 8): a test module imports shared helpers from the support
modules (tests/*_support.py, *_fixtures.py, ...), never from another test module, and never a private
(`_name`) helper from anywhere in tests/. Otherwise moving or deleting one test breaks another."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = next(folder for folder in Path(__file__).resolve().parents if (folder / "pyproject.toml").is_file())
TEST_ROOTS = ("tests", "policies")


def tree_sources() -> list[Path]:
    return sorted(p for root in TEST_ROOTS for p in (REPO / root).rglob("*.py"))


def is_test_module(dotted: str) -> bool:
    return dotted.rsplit(".", 1)[-1].startswith("test_")


def import_violations(source: str) -> list[str]:
    """What `source` (a module under tests/ or policies/) imports against the rules, one line each."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name} (a test module)" for a in node.names
                      if is_test_module(a.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            where = "." * node.level + module
            from_tests = node.level > 0 or module == "tests" or module.startswith("tests.")
            if is_test_module(module):
                found.append(f"line {node.lineno}: from {where} import ... (a test module)")
            elif from_tests:
                found += [f"line {node.lineno}: from {where} import {a.name} "
                          f"({'a test module' if is_test_module(a.name) else 'a private name'})"
                          for a in node.names if is_test_module(a.name) or a.name.startswith("_")]
    return found


@pytest.mark.parametrize("source, expected", [
    ("from tests.test_verify import tamper_cases",
     ["line 1: from tests.test_verify import ... (a test module)"]),
    ("from .test_verify import x", ["line 1: from .test_verify import ... (a test module)"]),
    ("import tests.test_verify", ["line 1: import tests.test_verify (a test module)"]),
    ("from tests import test_verify", ["line 1: from tests import test_verify (a test module)"]),
    ("from tests.service_support import _stop_leftovers",
     ["line 1: from tests.service_support import _stop_leftovers (a private name)"]),
    ("from tests.service_support import Plant\nfrom axon.verify import _private\nimport json", []),
], ids=["from-test-module", "relative", "import-test-module", "test-module-as-name", "private-name",
        "allowed"])
def test_the_import_rule_sees_each_form(source, expected):
    assert import_violations(source) == expected


def test_no_module_in_the_test_tree_imports_another_test_module_or_a_private_helper():
    sources = tree_sources()
    assert Path(__file__) in sources and len(sources) > 50
    found = {str(p.relative_to(REPO)): v for p in sources if (v := import_violations(p.read_text()))}
    assert found == {}, "move shared helpers into a support module (tests/*_support.py, *_fixtures.py) " \
                        "under a public name"
