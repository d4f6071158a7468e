"""Every module scc emits passes wabt's independent validator (`wasm-validate`).

CI installs wabt (.ci/run); a missing wasm-validate is a failure here, not a skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from scc.compiler import compile_policy
from tests.scc_policies import MODE, SPEC_EXAMPLE, P, V, dumps, policy, rule

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p for p in (ROOT / "policies").glob("*.json") if not p.name.endswith(".test.json"))

EVERY_OPERATOR = [
    rule({"eq": [P, 1]}), rule({"ne": [V, True]}), rule({"eq": [MODE, "AUTO"]}),
    rule({"in": [MODE, ["AUTO", "MANUAL"]]}), rule({"in": [P, [1, 2, 3.5]]}),
    rule({"lt": [P, 1]}), rule({"le": [P, 1]}), rule({"gt": [P, 1]}), rule({"ge": [P, 1]}),
    rule({"between": [P, -1, 1e-300]}), rule({"all": [V, {"not": V}]}), rule({"any": [V, False, True]}),
    rule({"gt": [{"add": [P, 1, 2]}, {"mul": [P, P, 0.1]}]}),
    rule({"gt": [{"sub": [P, 1]}, {"div": [P, 3]}]}),
    rule({"gt": [{"min": [P, 1, 2]}, {"max": [P, -1]}]}), rule({"gt": [{"abs": P}, {"neg": P}]}),
    rule({"if": [V, {"gt": [{"if": [{"ref": "b"}, {"ref": "n"}, 2]}, 1]}, False]}, then="HALT",
         log={"level": "error", "message": "\u00fcber \"quoted\" \\"}),
]
LETS = {"n": {"div": [P, {"sub": [P, 1]}]}, "b": {"gt": [{"ref": "n"}, 0]}}


def _sources():
    yield "spec-example", dumps(SPEC_EXAMPLE)
    for path in EXAMPLES:
        yield path.name, path.read_bytes()
    for combine in ("first-match", "most-severe"):
        yield f"every-operator-{combine}", dumps(policy(*EVERY_OPERATOR, let=LETS, combine=combine))
    yield "no-inputs", dumps(policy(rule(True)))
    deep: object = V
    for _ in range(63):
        deep = {"not": deep}
    yield "deep", dumps(policy(rule(deep)))
    yield "wide", json.dumps(policy(*[rule({"gt": [{"add": [P, i]}, i]}) for i in range(500)])).encode()


SOURCES = list(_sources())


def test_wasm_validate_is_installed():
    assert shutil.which("wasm-validate"), "wasm-validate (wabt) is required; CI installs it"


@pytest.mark.parametrize(("name", "source"), SOURCES, ids=[n for n, _ in SOURCES])
def test_module_passes_wasm_validate(name, source, tmp_path):
    validator = shutil.which("wasm-validate")
    assert validator, "wasm-validate (wabt) is required; CI installs it"
    module = tmp_path / f"{name}.wasm"
    module.write_bytes(compile_policy(source).wasm)
    result = subprocess.run([validator, str(module)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
