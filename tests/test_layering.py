"""The layering of the three packages holds at import time and at run time (README, "Layout"):

    axon (trust)  <-  synapse (runtime)  <-  scc (compiler and authors' CLI)

A package uses only those to its left: axon neither synapse nor scc, synapse not scc. Run time
counts too: no production module starts a program (subprocess, os.exec*/spawn*/system, asyncio's
subprocesses, sys.executable), so no package can reach another's CLI through a child process, and
none names a higher package's module in a string (importlib.import_module, __import__, runpy, a
command list). `multiprocessing` is not banned: it runs a function of the module that starts it,
which the import rule already covers (synapse's service spawns its own workers that way).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LAYERS = ("axon", "synapse", "scc")  # each may use only the ones before it
STARTS_A_PROGRAM = {
    "subprocess": None,  # any use of the module
    "os": {"system", "popen", "posix_spawn", "posix_spawnp", "fork", "forkpty", "execv", "execve", "execl",
           "execle", "execlp", "execlpe", "execvp", "execvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe",
           "spawnv", "spawnve", "spawnvp", "spawnvpe"},
    "asyncio": {"create_subprocess_exec", "create_subprocess_shell"},
    "pty": {"spawn", "fork"},
    "sys": {"executable"},
}
_STARTER_NAMES = {f"{module}.{name}" for module, names in STARTS_A_PROGRAM.items() if names for name in names}


def forbidden_for(package: str) -> tuple[str, ...]:
    return LAYERS[LAYERS.index(package) + 1:]


def _top(dotted: str) -> str:
    return dotted.split(".", 1)[0]


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def violations(source: str, package: str) -> list[str]:
    """Every place in `source` (a module of `package`) that breaks the layering, one line each."""
    above = forbidden_for(package)
    found = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", 0)
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in imported:
            if _top(name) in above:
                found.append(f"line {line}: imports {name} ({package} may not use {_top(name)})")
            if _top(name) == "subprocess" or name in _STARTER_NAMES:
                found.append(f"line {line}: imports {name} (starts a program)")
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is not None:
                module, _, attribute = dotted.rpartition(".")
                if module in STARTS_A_PROGRAM and (STARTS_A_PROGRAM[module] is None
                                                   or attribute in STARTS_A_PROGRAM[module]):
                    found.append(f"line {line}: uses {dotted} (starts a program)")
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            text = node.value
            if _top(text) in above and all(part.isidentifier() for part in text.split(".")):
                found.append(f"line {line}: names module {text!r} ({package} may not use {_top(text)})")
    return found


def production_modules() -> list[tuple[str, Path]]:
    return [(package, path) for package in LAYERS for path in sorted((REPO / package).rglob("*.py"))]


@pytest.mark.parametrize(("package", "path"), production_modules(),
                         ids=lambda value: value if isinstance(value, str) else str(value.relative_to(REPO)))
def test_each_module_uses_only_the_layers_below_it(package, path):
    assert violations(path.read_text(encoding="utf-8"), package) == []


def test_every_package_was_scanned():
    counts = {package: sum(1 for p, _ in production_modules() if p == package) for package in LAYERS}
    assert all(count >= 5 for count in counts.values()), counts


@pytest.mark.parametrize(("package", "source", "expected"), [
    ("axon", "from synapse.evaluate import Evaluator", "imports synapse.evaluate"),
    ("axon", "def f():\n    import scc.compiler\n", "imports scc.compiler"),
    ("synapse", "from scc import compiler", "imports scc"),
    ("synapse", "import subprocess\n", "imports subprocess (starts a program)"),
    ("scc", "import subprocess as sp\nsp.run(['x'])\n", "imports subprocess"),
    ("scc", "import sys\ncmd = [sys.executable, '-m', 'synapse', 'eval']\n", "uses sys.executable"),
    ("axon", "import os\nos.execv('/usr/bin/scc', ['scc'])\n", "uses os.execv"),
    ("axon", "from os import posix_spawn\n", "imports os.posix_spawn"),
    ("synapse", "import asyncio\nasyncio.create_subprocess_exec('scc')\n",
     "uses asyncio.create_subprocess_exec"),
    ("axon", "COMMANDS = ['axon.commands.verify', 'synapse.commands.eval']\n",
     "names module 'synapse.commands.eval'"),
    ("synapse", "import importlib\nimportlib.import_module('scc.compiler')\n", "names module 'scc.compiler'"),
])
def test_the_check_catches_each_kind_of_breach(package, source, expected):
    found = violations(source, package)
    assert any(expected in line for line in found), found


@pytest.mark.parametrize(("package", "source"), [
    ("scc", "from synapse.evaluate import Evaluator\nfrom axon import strictjson\n"),
    ("synapse", "from axon.verify import Verifier\nimport multiprocessing\n"),
    ("axon", "import os\nos.environ.get('X')\nlog = 'synapse'\n"),
])
def test_what_the_layering_allows_passes(package, source):
    assert violations(source, package) == []
